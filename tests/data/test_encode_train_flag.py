"""A canonical assistant turn with ``"train": false`` (ms-swift ``loss: false``,
LLaMA-Factory v1 ``loss_weight: 0``) stays in the context but carries no labels."""

from __future__ import annotations

from transformers import AutoConfig, AutoProcessor

from vlmtune.data.encode import IGNORE, encode_sample, image_token_ids
from vlmtune.data.schema import Sample, load_samples
from vlmtune.families import get_family


def test_untrained_turn_is_context_only(tiny_factory, shapes_data):
    path = tiny_factory("qwen2_vl")
    processor, config = AutoProcessor.from_pretrained(path), AutoConfig.from_pretrained(path)
    base = load_samples(shapes_data / "train_vqa.jsonl")[0]
    first = dict(base.messages[-1], train=False)
    messages = base.messages[:-1] + [first, {"role": "user", "content": [{"type": "text", "text": "Sure?"}]},
                                     {"role": "assistant", "content": [{"type": "text", "text": "zebra"}]}]
    sample = Sample("ctx", base.images, messages, answers=["zebra"])
    enc = encode_sample(processor, get_family(config.model_type), sample, sample.load_images(),
                        image_token_ids(processor, config))
    labelled = processor.tokenizer.decode([t for t in enc.labels if t != IGNORE])
    everything = processor.tokenizer.decode(enc.input_ids)
    assert "zebra" in labelled and base.answers[0] not in labelled, labelled
    assert base.answers[0] in everything  # still in the context
