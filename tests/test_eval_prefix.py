"""Shared-prefix prefill in batched generation: the re-laid-out batch keeps every row's
tokens in order, the prefix stops before image placeholders, and generating from the shared
cache gives the same logits as plain ``generate`` (families with 1-D and 3-D positions)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from vlmtune.data.schema import load_samples
from vlmtune.evaluate import prefix as P
from vlmtune.evaluate.generate import MIN_SHARED_TOKENS, Generator, prompt_inputs
from vlmtune.evaluate.run import build_prompt
from vlmtune.families import get_family

SYSTEM = {"role": "system", "content": [{"type": "text", "text": "You answer questions about pictures of shapes."}]}


def test_plan_moves_pads_after_the_prefix_and_stops_at_placeholders():
    ids = torch.tensor([[0, 0, 5, 6, 7, 9, 1, 2],
                        [5, 6, 7, 9, 3, 4, 4, 2]])
    mask = (torch.arange(8) >= torch.tensor([[2], [0]])).long()
    plan = P.plan_shared_prefix({"input_ids": ids, "attention_mask": mask, "pixel_values": torch.zeros(2, 8)},
                                stop_ids={9}, min_tokens=2)
    assert plan.length == 3  # 5 6 7, cut before placeholder 9
    assert plan.inputs["input_ids"].tolist() == [[5, 6, 7, 0, 0, 9, 1, 2], [5, 6, 7, 9, 3, 4, 4, 2]]
    assert plan.inputs["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 1, 1, 1], [1] * 8]
    assert plan.prefix["input_ids"].tolist() == [[5, 6, 7]]
    assert plan.inputs["pixel_values"] is not None and "pixel_values" not in plan.prefix
    assert P.plan_shared_prefix({"input_ids": ids, "attention_mask": mask}, stop_ids={9}, min_tokens=4) is None
    assert P.plan_shared_prefix({"input_ids": ids[:1], "attention_mask": mask[:1]}, stop_ids=set(), min_tokens=1) is None


def test_prefix_never_takes_a_whole_row():
    rows = [torch.tensor([1, 2, 3]), torch.tensor([1, 2, 3, 4])]
    assert P.common_prefix_length(rows, set()) == 2


@pytest.mark.parametrize("family", ["qwen2_vl", "llava", "idefics3"])
def test_shared_prefix_generation_has_the_same_logits(family, tiny_factory, shapes_data):
    path = tiny_factory(family)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    fam = get_family(AutoConfig.from_pretrained(path).model_type)
    generator = Generator(model, processor, fam, max_new_tokens=4)
    prompts = [build_prompt(s, []) for s in load_samples(shapes_data / "test.jsonl")[:4]]
    _, batch = prompt_inputs(processor, fam, [[SYSTEM] + m for m, _ in prompts], [im for _, im in prompts])
    plan = P.plan_shared_prefix(batch, generator.placeholder_ids, MIN_SHARED_TOKENS)
    assert plan is not None and plan.length >= 10  # the system turn is shared
    kwargs = dict(generator.kwargs, return_dict_in_generate=True, output_logits=True, min_new_tokens=4)
    with torch.no_grad():
        P.reset_position_state(model)
        plain = model.generate(**batch, **kwargs)
        P.reset_position_state(model)
        cache = P.prefix_cache(model, plan.prefix, len(prompts))
        P.reset_position_state(model)
        shared = model.generate(**plan.inputs, cache=cache, **kwargs)
    assert len(plain.logits) == len(shared.logits) == 4
    for a, b in zip(plain.logits, shared.logits):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert torch.equal(plain.sequences[:, batch["input_ids"].shape[1]:], shared.sequences[:, batch["input_ids"].shape[1]:])


@pytest.mark.parametrize("family", ["gemma3", "mllama"])
def test_families_where_sharing_is_not_exact_do_not_share(family):
    fam = get_family(family)
    assert not fam.prefix_share and fam.prefix_share_why
