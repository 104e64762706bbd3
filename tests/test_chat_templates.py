"""Every real chat template in tests/data/chat-templates works or is refused with a reason.

Each template is set on a tiny build of the family whose image placeholder it writes (a
tiny LLaVA, ``<image>``, for templates that write that or take string content) and must
give, for an image sample, a multi-turn sample (two answers), a system prompt and a
text-only sample: labels that decode to each answer plus the template's end-of-turn
text, and a served prompt equal, token for token, to the training sequence before the
last answer. A new template is one more file in the folder; the tables below only add
hand-checked expectations for the files known today.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
from PIL import Image
from transformers import AutoConfig, AutoProcessor

from vlmtune.data.chat_template import TemplateRefused, template_info
from vlmtune.data.encode import IGNORE, encode_sample, image_token_ids
from vlmtune.data.label_check import labelled_runs
from vlmtune.data.schema import Sample
from vlmtune.errors import DataError
from vlmtune.families import get_family
from vlmtune.evaluate.generate import prompt_inputs
from vlmtune.testing import DEFAULT_IMAGE_SIZE

CORPUS = Path(__file__).parent / "data" / "chat-templates"
TEMPLATES = sorted(p.name for p in CORPUS.glob("*.jinja"))

# Refused at load time, with the reason's words.
REFUSED = {"llama-guard-3-11b-vision.jinja": "wraps the whole conversation"}
# Templates that reject a system turn themselves (raise_exception): a clear per-sample error.
NO_SYSTEM = {"mistral-7b-instruct-v0.1_original.jinja": "roles must alternate"}
# The text each template writes after an answer (hand-checked against the files).
END_OF_TURN = {
    "gemma-3-it.jinja": "<end_of_turn>", "idefics3-8b-llama3.jinja": "<end_of_utterance>",
    "internvl3-hf.jinja": "<|im_end|>", "llama-2-7b-chat-hf.jinja": " </s>",
    "llama-3.2-11b-vision-instruct.jinja": "<|eot_id|>", "llava-1.5-7b-hf.jinja": "",
    "llava-onevision-qwen2-hf.jinja": "<|im_end|>", "llava-v1.6-mistral-7b-hf.jinja": "</s>",
    "llava-v1.6-mistral-7b-hf_old.jinja": "<\\s>", "mistral-7b-instruct-v0.1_current.jinja": "</s>",
    "mistral-7b-instruct-v0.1_original.jinja": "</s>", "phi-3-vision-128k-instruct.jinja": "<|end|>",
    "qwen2-vl-2b-instruct.jinja": "<|im_end|>", "qwen2.5-vl-7b-instruct.jinja": "<|im_end|>",
    "qwen3-vl.jinja": "<|im_end|>", "qwen3.5-4b.jinja": "<|im_end|>",
    "smolvlm-instruct.jinja": "<end_of_utterance>", "smolvlm2-video-default.jinja": "<end_of_utterance>",
    "vicuna-mistralrs.jinja": "</s>",
}


def family_for(name: str, template: str) -> str:
    """The tiny family whose processor expands the image placeholder the template writes."""
    if "<|image_pad|>" in template:
        return "qwen2_5_vl" if name.startswith("qwen2.5") else "qwen3_vl" if name.startswith("qwen3") else "qwen2_vl"
    for marker, family in (("<start_of_image>", "gemma3"), ("<|image|>", "mllama")):
        if marker in template:
            return family
    if "<end_of_utterance>" in template:
        return "idefics3" if "<|begin_of_text|>" in template else "smolvlm"
    if "<|im_start|>" in template and "<image>" in template:
        return "llava_onevision"
    if "[INST]" in template and "<image>" in template:
        return "llava_next"
    return "llava"  # writes "<image>", or takes string content flattened with "<image>"


@pytest.fixture(scope="session")
def tiny_processor(tiny_factory):
    """``get(family) -> (processor, config)``, loaded once per family for the whole corpus."""
    @lru_cache(maxsize=None)
    def get(family: str):
        path = tiny_factory(family)
        return AutoProcessor.from_pretrained(path), AutoConfig.from_pretrained(path)

    return get


def _with_template(tiny_processor, name: str):
    template = (CORPUS / name).read_text()
    family = family_for(name, template)
    processor, config = tiny_processor(family)
    processor.chat_template = template
    processor.tokenizer.chat_template = template
    return processor, config, get_family(config.model_type)


def _user(text: str, image: bool = False) -> dict:
    return {"role": "user", "content": [*([{"type": "image"}] if image else []), {"type": "text", "text": text}]}


def _answer(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


CASES = {
    "image": [_user("What color is the square?", True), _answer("green")],
    "multi-turn": [_user("What color is the square?", True), _answer("green"),
                   _user("Where is the circle?"), _answer("[12, 40, 56, 84]")],
    "system": [{"role": "system", "content": [{"type": "text", "text": "Answer in one word."}]},
               _user("What color is the square?", True), _answer("Green")],
    "text-only": [_user("How many sides has a square?"), _answer("4")],
}


def _squash(text: str) -> str:
    return "".join(text.split())


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_labels_and_prompts(name, tiny_processor):
    processor, config, family = _with_template(tiny_processor, name)
    if name in REFUSED:
        with pytest.raises(TemplateRefused, match=REFUSED[name]):
            template_info(processor)
        return
    info = template_info(processor)
    end_of_turn = END_OF_TURN.get(name, info.end_of_turn)
    assert info.end_of_turn == end_of_turn
    size = DEFAULT_IMAGE_SIZE[config.model_type]
    image = Image.new("RGB", (size, size), "green")
    ids = image_token_ids(processor, config)
    for case, messages in CASES.items():
        sample = Sample(case, [], messages, file=f"{case}.jsonl", line=7)
        images = [image] if any(c["type"] == "image" for m in messages for c in m["content"]) else []
        if case == "system" and name in NO_SYSTEM:
            with pytest.raises(Exception, match=NO_SYSTEM[name]):
                encode_sample(processor, family, sample, images, ids)
            continue
        enc = encode_sample(processor, family, sample, images, ids)
        answers = [c["text"] for m in messages if m["role"] == "assistant" for c in m["content"]]
        runs = labelled_runs(enc.labels)
        got = [_squash(processor.tokenizer.decode(run)) for run in runs]
        assert got == [_squash(a + end_of_turn) for a in answers], (case, got)
        # train prompt == serve prompt: the ids eval/predict feed equal the training ids
        # before the last answer's first labelled token
        last = max(i for i, t in enumerate(enc.labels) if t != IGNORE and (i == 0 or enc.labels[i - 1] == IGNORE))
        _, batch = prompt_inputs(processor, family, [messages[:-1]], [images])
        assert batch["input_ids"][0].tolist() == enc.input_ids[:last], case


def test_refused_template_is_one_line_at_load_time(tiny_factory, tmp_path):
    from vlmtune.config import ModelConfig
    from vlmtune.errors import InputError
    from vlmtune.model.load import load_processor

    cfg = ModelConfig(path=str(tiny_factory("mllama")), chat_template=str(CORPUS / "llama-guard-3-11b-vision.jinja"))
    with pytest.raises(InputError) as err:
        load_processor(cfg.path, cfg, get_family("mllama"))
    message = str(err.value)
    assert message.startswith("model.chat_template: the chat template renders the conversation before an answer")
    assert "\n" not in message


def test_a_rejected_system_turn_names_the_sample(tiny_processor, shapes_data):
    from vlmtune.data.dataset import EncodedDataset

    processor, config, family = _with_template(tiny_processor, "mistral-7b-instruct-v0.1_original.jinja")
    sample = Sample("s", [], CASES["system"][:1] + CASES["text-only"], file="train.jsonl", line=4)
    with pytest.raises(DataError, match=r"^train.jsonl:4: messages: .*roles must alternate"):
        EncodedDataset([sample], processor, family, set(), max_length=512)
