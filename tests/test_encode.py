"""Labels cover assistant answers only, in every family; truncation never cuts an image
or a whole answer (such samples are skipped and counted)."""

from __future__ import annotations

import pytest
from transformers import AutoConfig, AutoProcessor

from vlmtune.data.collate import Collator
from vlmtune.data.dataset import EncodedDataset
from vlmtune.data.encode import IGNORE, encode_sample, image_token_ids
from vlmtune.data.schema import Sample, load_samples
from vlmtune.families import get_family
from vlmtune.testing.tiny import TINY_FAMILIES


def _load(path):
    processor = AutoProcessor.from_pretrained(path)
    config = AutoConfig.from_pretrained(path)
    return processor, config, get_family(config.model_type)


def _labelled_text(processor, encoded):
    return processor.tokenizer.decode([t for t in encoded.labels if t != IGNORE])


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_only_assistant_tokens_carry_labels(family, tiny_factory, shapes_data):
    processor, config, fam = _load(tiny_factory(family))
    sample = load_samples(shapes_data / "train_vqa.jsonl")[0]
    enc = encode_sample(processor, fam, sample, sample.load_images(), image_token_ids(processor, config))
    answer = sample.answers[0]
    labelled = _labelled_text(processor, enc)
    assert labelled.strip().startswith(answer), labelled
    assert "shape" not in labelled and "colour" not in labelled  # no question text
    tail = labelled.strip()[len(answer):]
    assert tail and processor.tokenizer.decode(processor.tokenizer(tail, add_special_tokens=False)["input_ids"],
                                               skip_special_tokens=True).strip() == ""  # end-of-turn token(s)
    assert len(enc.labels) == len(enc.input_ids)


def test_multi_turn_labels_every_answer(tiny_factory, shapes_data):
    processor, config, fam = _load(tiny_factory("qwen2_vl"))
    base = load_samples(shapes_data / "train_vqa.jsonl")[0]
    messages = base.messages + [{"role": "user", "content": [{"type": "text", "text": "And the size?"}]},
                                {"role": "assistant", "content": [{"type": "text", "text": "small"}]}]
    sample = Sample("mt", base.images, messages, answers=["small"])
    enc = encode_sample(processor, fam, sample, sample.load_images(), image_token_ids(processor, config))
    labelled = _labelled_text(processor, enc)
    assert base.answers[0] in labelled and "small" in labelled and "size" not in labelled


def test_truncation_skips_cut_images_and_lost_answers(tiny_factory, shapes_data):
    processor, config, fam = _load(tiny_factory("qwen2_vl"))
    samples = load_samples(shapes_data / "train_mixed.jsonl")
    ids = image_token_ids(processor, config)
    full = EncodedDataset(samples, processor, fam, ids, max_length=4096)
    lengths = {e.sample.id: e.length for e in full.examples}
    image_end = max(e.encoded.min_keep for e in full.examples)
    tight = EncodedDataset(samples, processor, fam, ids, max_length=image_end - 1)
    assert tight.skipped["image tokens cut by max_length"] >= 1
    assert "text-only" in [e.sample.id for e in tight.examples]  # no image: only its length matters
    first_answer = min(next(i for i, t in enumerate(e.encoded.labels) if t != IGNORE) for e in full.examples
                       if e.sample.id == "text-only")
    cut = EncodedDataset([s for s in samples if s.id == "text-only"], processor, fam, ids, max_length=first_answer)
    assert cut.skipped == {"whole answer cut by max_length": 1} and len(cut) == 0
    assert tight.skipped_where and ":" in tight.skipped_where[0]
    assert sum(tight.skipped.values()) + len(tight) == len(samples) == len(lengths)


def test_collator_pads_right_and_cuts_to_max_length(tiny_factory, shapes_data):
    processor, config, fam = _load(tiny_factory("llava"))
    samples = load_samples(shapes_data / "train_mixed.jsonl")
    data = EncodedDataset(samples, processor, fam, image_token_ids(processor, config), max_length=4096)
    batch = Collator(processor, max_length=4096)([data[i] for i in range(len(data))])
    assert batch["input_ids"].shape == batch["labels"].shape
    for row, example in enumerate(data.examples):
        assert batch["attention_mask"][row, : example.length].all()
        assert batch["labels"][row].tolist()[: example.length] == example.encoded.labels
