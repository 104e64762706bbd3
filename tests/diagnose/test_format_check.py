"""Format check: the mc_text -> mc drift is an error; identical formats give nothing."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from vlmtune.data.format_check import answer_type, check_format, warn_format_mismatch


@pytest.fixture(scope="module")
def mc_data(tmp_path_factory):
    from vlmtune.data.synth import synth

    root = tmp_path_factory.mktemp("mc")
    synth(root, tasks=("mc", "mc_text", "grounding"), n=12, seed=0, image_size=48)
    return root


def test_option_text_vs_letter_is_an_error_with_examples(mc_data):
    findings = check_format(mc_data / "train_mc_text.jsonl", mc_data / "test_mc.jsonl")
    first = findings[0]
    assert first.severity == "error" and first.aspect == "answer_type"
    assert "train answers are option text in 100%" in first.message and "eval expects letter in 100%" in first.message
    assert {e["side"] for e in first.examples} == {"train", "eval"} and all(e["id"] for e in first.examples)
    assert any(f.aspect == "instruction" and "option's letter" in f.message for f in findings)


def test_same_format_has_no_mismatch(mc_data):
    assert [f for f in check_format(mc_data / "train_mc.jsonl", mc_data / "test_mc.jsonl")
            if f.severity != "info"] == []


def test_answer_types(mc_data):
    from vlmtune.data.schema import load_samples

    types = {s.task: answer_type(s) for s in load_samples(mc_data / "train.jsonl")}
    assert types == {"mc": "letter", "mc_text": "option text", "grounding": "box"}


def test_resolution_and_length_mismatch(tmp_path, mc_data):
    from PIL import Image

    lines = []
    for k, line in enumerate((mc_data / "test_mc.jsonl").read_text().splitlines()):
        obj = json.loads(line)
        Image.new("RGB", (256, 256)).save(tmp_path / f"big{k}.png")
        obj["images"] = [f"big{k}.png"]
        lines.append(json.dumps(obj))
    (tmp_path / "big.jsonl").write_text("\n".join(lines) + "\n")
    findings = check_format(mc_data / "train_mc.jsonl", tmp_path / "big.jsonl")
    assert [f.aspect for f in findings] == ["resolution"] and "48x48" in findings[0].message


def test_template_comparison_with_a_model(mc_data, tiny_factory):
    findings = check_format(mc_data / "train_mc.jsonl", mc_data / "test_mc.jsonl",
                            model=str(tiny_factory("qwen2_vl", hidden=64, kv_heads=2)))
    template = [f for f in findings if f.aspect == "template"]
    assert template and template[0].severity == "info" and "<|im_start|>" in template[0].examples[0]["text"]


def test_model_check_reports_aligned_prompts(mc_data, tiny_factory, tmp_path):
    """A LLaVA checkpoint whose generation prompt ends "ASSISTANT: " (the tokenizer glues
    the space to the answer): data check --model says prompts are aligned, and that every
    training sample's served prompt is its training prefix."""
    import shutil

    from vlmtune.testing.templates import LLAVA_TRAILING_SPACE

    model = tmp_path / "llava-trailing-space"
    shutil.copytree(tiny_factory("llava"), model)
    (model / "chat_template.jinja").write_text(LLAVA_TRAILING_SPACE)
    findings = check_format(mc_data / "train_mc.jsonl", mc_data / "test_mc.jsonl", model=str(model))
    prompt = [f.message for f in findings if f.aspect == "prompt"]
    assert any("prompts are aligned to training" in m and "joins ' '" in m for m in prompt), prompt
    assert any(m.startswith("served prompt == training tokens before the answer (") for m in prompt), prompt
    assert not [f for f in findings if f.severity == "error"]
    assert any("writes nothing after an answer" in m for m in prompt)  # this template has no end-of-turn


def _data(train) -> SimpleNamespace:
    return SimpleNamespace(train=str(train), val=None, root=None, allow_outside_root=False)


def test_warn_hook_prints_and_never_raises(mc_data):
    printed: list[str] = []
    cfg = SimpleNamespace(data=_data(mc_data / "train_mc_text.jsonl"),
                          eval=SimpleNamespace(test=str(mc_data / "test_mc.jsonl")))
    assert warn_format_mismatch(cfg, print_fn=printed.append)
    assert "option text" in printed[0]
    broken = SimpleNamespace(data=_data("/nonexistent.jsonl"),
                             eval=SimpleNamespace(test=str(mc_data / "test_mc.jsonl")))
    printed.clear()
    assert warn_format_mismatch(broken, print_fn=printed.append) == []
    assert printed == []  # a bad training file: loading it stops the run with the same error, said once
    broken_test = SimpleNamespace(data=_data(mc_data / "train_mc_text.jsonl"),
                                  eval=SimpleNamespace(test="/nonexistent.jsonl"))
    assert warn_format_mismatch(broken_test, print_fn=printed.append) == []
    assert printed[0].startswith("note: format check skipped")  # training goes on: say why there is no check
    printed.clear()
    broken_val = SimpleNamespace(data=SimpleNamespace(**{**vars(_data(mc_data / "train_mc_text.jsonl")),
                                                         "val": "/nonexistent.jsonl"}),
                                 eval=SimpleNamespace(test=None))
    assert warn_format_mismatch(broken_val, print_fn=printed.append) == [] and printed == []  # training loads val


def test_cli_data_check_json(mc_data):
    from vlmtune.cli import app

    result = CliRunner().invoke(app, ["data", "check", "--train", str(mc_data / "train_mc_text.jsonl"),
                                      "--eval", str(mc_data / "test_mc.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["severity"] == "error"


def test_unreadable_image_header_does_not_stop_the_check(tmp_path, mc_data):
    """PIL raises ValueError (not OSError) on some corrupt headers: the image is left out of the
    resolution statistics; the other findings stay (training reports the bad image itself)."""
    (tmp_path / "bad.png").write_bytes(b"P6 garbage")
    lines = []
    for line in (mc_data / "train_mc_text.jsonl").read_text().splitlines():
        obj = json.loads(line)
        obj["images"] = [str(tmp_path / "bad.png")]
        lines.append(json.dumps(obj))
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    findings = check_format(tmp_path / "train.jsonl", mc_data / "test_mc.jsonl")
    assert findings[0].severity == "error" and findings[0].aspect == "answer_type"


def test_warn_hook_reads_data_like_training(tmp_path, mc_data):
    """Images outside the JSONL's folder, allowed by data.allow_outside_root, are checked, not
    skipped: the hook loads the data with the run's data settings, as training does."""
    (tmp_path / "images").symlink_to(mc_data / "images")
    (tmp_path / "sub").mkdir()
    lines = []
    for line in (mc_data / "train_mc_text.jsonl").read_text().splitlines():
        obj = json.loads(line)
        obj["images"] = [f"../{p}" for p in obj["images"]]
        lines.append(json.dumps(obj))
    (tmp_path / "sub" / "train.jsonl").write_text("\n".join(lines) + "\n")
    printed: list[str] = []
    cfg = SimpleNamespace(data=SimpleNamespace(train=str(tmp_path / "sub" / "train.jsonl"), val=None, root=None,
                                               allow_outside_root=True),
                          eval=SimpleNamespace(test=str(mc_data / "test_mc.jsonl")))
    assert warn_format_mismatch(cfg, print_fn=printed.append)
    assert "option text" in printed[0]


def test_cli_data_check_reads_images_outside_the_jsonl_folder_when_allowed(tmp_path, mc_data):
    from vlmtune.cli import app

    (tmp_path / "images").symlink_to(mc_data / "images")
    (tmp_path / "sub").mkdir()
    rows = [json.loads(line) for line in (mc_data / "train_mc_text.jsonl").read_text().splitlines()]
    (tmp_path / "sub" / "train.jsonl").write_text(
        "".join(json.dumps({**r, "images": [f"../{p}" for p in r["images"]]}) + "\n" for r in rows))
    args = ["data", "check", "--train", str(tmp_path / "sub" / "train.jsonl"), "--eval", str(mc_data / "test_mc.jsonl"),
            "--json"]
    from vlmtune.errors import DataError

    refused = CliRunner().invoke(app, args)  # (vlmtune.cli.main turns this into one line and exit 2)
    assert isinstance(refused.exception, DataError) and "allow_outside_root" in str(refused.exception)
    allowed = CliRunner().invoke(app, [*args, "--allow-outside-root"])
    assert allowed.exit_code == 0, allowed.output
    assert json.loads(allowed.stdout)[0]["severity"] == "error"
