"""``model.chat_template``: a user's own template replaces the checkpoint's for training,
labels, the saved run and its evaluation; one that cannot work is refused at load time
with the config file and line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

# An Alpaca-style template no test was written for: "### Response:\n" then the answer and </s>.
ALPACA = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'][0]['text'] + '\\n\\n' }}"
    "{% elif m['role'] == 'user' %}{{ '### Instruction:\\n' }}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<image>\\n' }}{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{{ '\\n\\n' }}{% else %}{{ '### Response:\\n' + m['content'][0]['text'] + eos_token + '\\n\\n' }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '### Response:\\n' }}{% endif %}"
)


@pytest.mark.slow  # a short training run (~7 s on an idle core)
def test_a_new_template_trains_with_correct_labels(tiny_factory, run_config, tmp_path):
    from vlmtune.data.label_check import labelled_runs
    from vlmtune.model.trained import load_trained
    from vlmtune.train import load_split, train

    template = tmp_path / "alpaca.jinja"
    template.write_text(ALPACA)
    cfg = run_config(tiny_factory("llava"), train_file="train_mixed.jsonl", model={"chat_template": str(template)},
                     train={"max_steps": 1, "batch_size": 2, "checkpoint_every": 1},
                     data={"val": None}, eval={"test": None})
    run = train(cfg)
    model, processor, family, saved = load_trained(run)
    assert processor.chat_template == ALPACA  # the run reloads the template it trained with
    data = load_split(saved, saved.data.train, processor, family, model.config)
    for example in data.examples:
        text = example.rendered.text
        assert "### Response:\n" in text
        runs = [processor.tokenizer.decode(r) for r in labelled_runs(example.encoded.labels)]
        assert runs == [example.sample.answers[0] + "</s>"], runs


def test_a_refused_template_names_the_config_line(tiny_factory, tmp_path, shapes_data, corpus_dir):
    from vlmtune.cli import app

    cfg = tmp_path / "cfg.yaml"
    guard = tmp_path / "guard.jinja"
    guard.write_text((corpus_dir / "llama-guard-3-11b-vision.jinja").read_text())
    cfg.write_text(f"name: g\nmodel:\n  path: {tiny_factory('mllama')}\n  chat_template: {guard}\n"
                   f"data: {{train: {shapes_data / 'train_vqa.jsonl'}}}\n")
    result = CliRunner().invoke(app, ["data", "preview", str(cfg)])
    assert str(result.exception).startswith(f"{cfg}:4: model.chat_template: the chat template renders the "
                                            "conversation before an answer differently")
    missing = CliRunner().invoke(app, ["data", "preview", str(cfg), "model.chat_template=nope.jinja"])
    assert str(missing.exception).startswith("command-line override 'model.chat_template=nope.jinja': "
                                             "model.chat_template: cannot read chat template nope.jinja")
