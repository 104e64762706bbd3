"""Batched greedy generation with left padding and the KV cache.

Why left padding: every row's prompt must end at the same position so that new tokens are
appended after real text, not after pads; the attention mask hides the pads. Greedy
decoding is deterministic, so a batch gives the same answers as one prompt at a time
(tested), only faster. The text every row of a batch starts with (system turn, opening of the
user turn) is prefilled once and its KV cache shared (:mod:`vlmtune.evaluate.prefix`), for
the families where that is exact (``Family.prefix_share``).

Example:
    >>> gen = Generator(model, processor, family, max_new_tokens=16)  # doctest: +SKIP
    >>> gen([messages], [[image]])[0].text
    'red'
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from vlmtune.data.encode import Rendered, call_processor, prompt_text
from vlmtune.evaluate.prefix import plan_shared_prefix, prefix_cache, reset_position_state
from vlmtune.families.base import Family
from vlmtune.model.load import cast_floats

# Fewer shared tokens than this are not worth the extra forward at batch 1.
MIN_SHARED_TOKENS = 4


@dataclass
class Generation:
    prompt: str
    text: str
    latency_s: float
    new_tokens: int


class Generator:
    def __init__(self, model: Any, processor: Any, family: Family, *, max_new_tokens: int = 32,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                 share_prefix: bool = True):
        self.model, self.processor, self.family = model, processor, family
        self.share_prefix = share_prefix and family.prefix_share
        self.placeholder_ids = _placeholder_ids(model.config)
        self.kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample}
        if do_sample:
            self.kwargs.update(temperature=temperature, top_p=top_p)
        tok = processor.tokenizer
        self.kwargs["pad_token_id"] = tok.pad_token_id
        stop = {i for i in _as_list(getattr(model.generation_config, "eos_token_id", None))}
        stop |= {i for i in _as_list(tok.eos_token_id)}
        end_of_turn = _end_of_turn_id(processor, family)
        if end_of_turn is not None:
            stop.add(end_of_turn)
        self.kwargs["eos_token_id"] = sorted(stop) or None

    @torch.no_grad()
    def __call__(self, conversations: list[list[dict]], images: list[list[Any]],
                 videos: list[list[Any]] | None = None) -> list[Generation]:
        prompts, batch = prompt_inputs(self.processor, self.family, conversations, images, videos)
        tok = self.processor.tokenizer
        device = next(self.model.parameters()).device
        inputs = cast_floats({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()},
                             self.model.dtype)
        start = time.perf_counter()
        out = self._generate(inputs)
        elapsed = time.perf_counter() - start
        new = out[:, inputs["input_ids"].shape[1]:]
        texts = tok.batch_decode(new, skip_special_tokens=True)
        per = elapsed / len(prompts)
        pad = tok.pad_token_id
        return [Generation(p, t.strip(), per, int((row != pad).sum())) for p, t, row in zip(prompts, texts, new)]


    def _generate(self, inputs: dict) -> torch.Tensor:
        """``model.generate``, with the rows' common leading text prefilled once (see
        :mod:`vlmtune.evaluate.prefix`) when the family allows it and the rows share enough."""
        plan = None
        if self.share_prefix:
            plan = plan_shared_prefix(inputs, self.placeholder_ids, MIN_SHARED_TOKENS)
        if plan is None:
            return self.model.generate(**inputs, **self.kwargs)
        reset_position_state(self.model)
        cache = prefix_cache(self.model, plan.prefix, inputs["input_ids"].shape[0])
        reset_position_state(self.model)
        return self.model.generate(**plan.inputs, cache=cache, **self.kwargs)


def prompt_inputs(processor: Any, family: Family, conversations: list[list[dict]],
                  images: list[list[Any]], videos: list[list[Any]] | None = None) -> tuple[list[str], Any]:
    """Prompt texts and the left-padded processor batch the model generates from; each row's
    ids are the training sequence's ids before its answer (see ``prompt_text``)."""
    prompts = [prompt_text(processor, family, c) for c in conversations]
    tok = processor.tokenizer
    side, tok.padding_side = tok.padding_side, "left"
    try:
        batch = call_processor(processor, [Rendered(p) for p in prompts], images, videos, padding=True)
    finally:
        tok.padding_side = side
    return prompts, batch


def _placeholder_ids(config: Any) -> set[int]:
    """Token ids the processor expands into image/video features (``image_token_id`` and kin,
    on the config or its text config): a shared prefix stops before them."""
    ids: set[int] = set()
    for cfg in (config, getattr(config, "text_config", None)):
        for name, value in (vars(cfg).items() if cfg is not None else ()):
            if ("image" in name or "video" in name) and name.endswith(("token_id", "token_index")):
                ids |= set(_as_list(value))
    return ids


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [int(value)]


def _end_of_turn_id(processor: Any, family: Family) -> int | None:
    """The token that closes an assistant turn in the chat template (e.g. ``<|im_end|>``):
    the first special token of the end-of-turn text training labels, so generation stops
    where training taught the model to stop."""
    from vlmtune.data.chat_template import TemplateRefused, template_info

    if family.prompt is not None or not getattr(processor, "chat_template", None):
        return None
    try:
        tail = template_info(processor).end_of_turn
    except TemplateRefused:
        return None
    tok = processor.tokenizer
    special = set(tok.all_special_ids) | {i for i, t in tok.added_tokens_decoder.items() if t.special}
    for token_id in tok(tail, add_special_tokens=False)["input_ids"]:
        if token_id in special:
            return int(token_id)
    return None
