"""Batched generation with every speed-up on (image tokens prefilled once per image, rows
started in length groups, finished rows dropped between rounds) gives, string by string,
what one-by-one ``model.generate`` gives, on three families (1-D and 3-D positions)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, LogitsProcessor

from vlmtune.data.schema import load_samples
from vlmtune.evaluate import generate as G
from vlmtune.evaluate import rounds as R
from vlmtune.evaluate.generate import Generator, length_chunks, prompt_inputs
from vlmtune.evaluate.image_prefix import image_groups
from vlmtune.evaluate.run import batch_order, build_prompt
from vlmtune.families import get_family

SYSTEM = {"role": "system", "content": [{"type": "text", "text": "You answer questions about pictures of shapes."}]}
NEW = 8


def test_length_chunks_keep_similar_lengths_together():
    assert length_chunks([10, 30, 11, 12, 40, 13], ratio=1.25, min_rows=1) == [[0, 2, 3], [5], [1], [4]]
    assert length_chunks([10, 30, 11, 12, 40, 13], ratio=1.25, min_rows=2) == [[0, 2, 3], [1, 5], [4]]
    assert length_chunks([12, 10, 11], ratio=1.25, min_rows=1) == [[0, 1, 2]]  # batch order inside a group
    assert length_chunks([5], ratio=1.25) == [[0]]
    assert len(length_chunks([10] * 4 + [40] * 4, ratio=1.25)) == 1  # default: groups of >= 8 rows


def test_insert_adds_masked_columns_after_the_prefix():
    t = torch.tensor([[1, 2, 3, 4]])
    assert R._insert(t, 2, 2, 1).tolist() == [[1, 2, 0, 0, 3, 4]]
    assert R._insert(t, 2, 0, 1) is t


def test_rounds_only_for_greedy_with_stop_tokens():
    class Model:
        generation_config = type("C", (), {"min_new_tokens": None})()
    assert R.rounds_apply(Model(), {"do_sample": False, "eos_token_id": [2]})
    assert not R.rounds_apply(Model(), {"do_sample": True, "eos_token_id": [2]})
    assert not R.rounds_apply(Model(), {"do_sample": False, "eos_token_id": None})
    Model.generation_config.min_new_tokens = 3
    assert not R.rounds_apply(Model(), {"do_sample": False, "eos_token_id": [2]})


def test_batch_order_puts_samples_of_one_image_together(shapes_data):
    samples = load_samples(shapes_data / "test.jsonl")[:6]
    order = batch_order(samples, by_image=True)
    images = [samples[i].images for i in order]
    assert images[0] == images[1] and images[2] == images[3] and images[4] == images[5]


class Recorder(LogitsProcessor):
    """The logits each sequence (its ids without pads) was given, first time seen: rows of a
    batch and one-by-one runs are compared by what they had generated so far. Tiny random
    models often answer alike whatever the prompt, so equal strings alone prove little."""

    def __init__(self, pad: int):
        self.pad, self.scores = pad, {}

    def __call__(self, input_ids, scores):
        for ids, row in zip(input_ids, scores):
            self.scores.setdefault(tuple(t for t in ids.tolist() if t != self.pad), row.clone())
        return scores


def _one_by_one(model, processor, fam, convs, images, kwargs) -> list[list[int]]:
    out = []
    with torch.no_grad():
        for conv, ims in zip(convs, images):
            _, batch = prompt_inputs(processor, fam, [conv], [ims])
            seq = model.generate(**batch, **kwargs)[0, batch["input_ids"].shape[1]:].tolist()
            out.append(seq)
    return out


def _stop_token_for_mixed_lengths(model, processor, fam, convs, images, kwargs) -> tuple[dict, list]:
    """Stop tokens that make some rows end early and others run to the limit (tiny random
    models rarely emit their real end-of-turn token): tried from row 0's own output."""
    free = _one_by_one(model, processor, fam, convs, images, kwargs)
    for token in dict.fromkeys(free[0][1:]):
        trial = dict(kwargs, eos_token_id=sorted(set(kwargs["eos_token_id"] or []) | {token}))
        ref = _one_by_one(model, processor, fam, convs, images, trial)
        lengths = [len([t for t in r if t != kwargs["pad_token_id"]]) for r in ref]
        if min(lengths) < NEW and max(lengths) == NEW:
            return trial, ref
    pytest.skip("no output token gives mixed answer lengths")


@pytest.mark.parametrize("rounds", [True, False], ids=["rounds", "one-generate"])
@pytest.mark.parametrize("family", ["qwen2_vl", "llava", "idefics3"])
def test_batched_generation_equals_one_by_one(family, rounds, tiny_factory, shapes_data, monkeypatch):
    path = tiny_factory(family)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    fam = get_family(AutoConfig.from_pretrained(path).model_type)
    mixed = {s.id: s for s in load_samples(shapes_data / "train_mixed.jsonl")}
    # 3 images x 2 questions of different lengths (padded), a two-image and a text-only prompt
    samples = load_samples(shapes_data / "test.jsonl")[:6]
    if rounds:  # one generate call shares images only when every row does: these start apart
        samples += [mixed["two-images"], mixed["text-only"]]
    prompts = [build_prompt(s, []) for s in samples]
    convs, images = [[SYSTEM] + m for m, _ in prompts], [im for _, im in prompts]
    generator = Generator(model, processor, fam, max_new_tokens=NEW)
    assert generator.rounds and generator.share_prefix
    generator.kwargs, reference = _stop_token_for_mixed_lengths(model, processor, fam, convs, images,
                                                                generator.kwargs)
    groups = image_groups(images)
    assert groups[0] == groups[1] and groups[0] != groups[2] and (groups[-1] is None) == rounds

    seen = {"image_prefix": 0, "parts": []}
    real_cache, real_rounds = G.image_prefix_cache, G.generate_in_rounds

    def spy_cache(*args):
        cache = real_cache(*args)
        seen["image_prefix"] += cache is not None
        return cache

    def spy_rounds(model_, parts, kwargs):
        seen["parts"] = [p.rows for p in parts]
        return real_rounds(model_, parts, kwargs)

    real_merge = R._merge

    def spy_merge(model_, live, pad_id):
        seen["merged_widths"] = {p.inputs["input_ids"].shape[1] for p, _ in live}
        return real_merge(model_, live, pad_id)

    monkeypatch.setattr(G, "image_prefix_cache", spy_cache)
    monkeypatch.setattr(G, "generate_in_rounds", spy_rounds)
    monkeypatch.setattr(R, "_merge", spy_merge)
    monkeypatch.setattr(R, "FIRST_ROUND", 1)  # starts merge after one token: merging is exercised
    # rounds and length groups on this small batch, or one generate call (batches < 16 rows)
    monkeypatch.setattr(G, "MIN_ROUND_ROWS", 1 if rounds else 1000)
    monkeypatch.setattr(G, "MIN_CHUNK_ROWS", 1)
    pad = generator.kwargs["pad_token_id"]
    ref_logits, batch_logits = Recorder(pad), Recorder(pad)
    _one_by_one(model, processor, fam, convs, images, dict(generator.kwargs, logits_processor=[ref_logits]))
    generator.kwargs = dict(generator.kwargs, logits_processor=[batch_logits])
    batched = generator(convs, images)
    assert len(ref_logits.scores) == sum(len(r) for r in reference)  # one per generated token
    for key, logits in ref_logits.scores.items():
        torch.testing.assert_close(batch_logits.scores[key], logits, atol=1e-5, rtol=1e-5)
    assert seen["image_prefix"] == 1  # images shared
    if rounds:
        assert len(seen["parts"]) >= 2  # several starts
        assert len(seen["merged_widths"]) >= 2  # parts of different widths merged into one batch
    tok = processor.tokenizer
    expected = [tok.decode(r, skip_special_tokens=True).strip() for r in reference]
    assert [g.text for g in batched] == expected
    assert [g.new_tokens for g in batched] == [len([t for t in r if t != tok.pad_token_id]) for r in reference]
