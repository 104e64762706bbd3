"""Batched greedy generation with left padding and the KV cache.

Why left padding: every row's prompt must end at the same position so that new tokens are
appended after real text, not after pads; the attention mask hides the pads. Greedy
decoding is deterministic, so a batch gives the same answers as one prompt at a time
(tested), only faster. For the families where sharing a KV cache is exact
(``Family.prefix_share``), three things cut the work further: the ids every row starts with
are prefilled once (the system turn, :mod:`vlmtune.evaluate.prefix`; through the image tokens
when rows ask about the same images, the vision tower then running once per image,
:mod:`vlmtune.evaluate.image_prefix`); rows of similar prompt length start together, so
little padding is prefilled; and greedy decoding runs in rounds that drop finished rows
(:mod:`vlmtune.evaluate.rounds`) instead of decoding pads until the longest answer ends.

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
from vlmtune.evaluate.image_prefix import (after_prefix, image_groups, image_prefix_cache, plan_image_prefix,
                                           rows_of)
from vlmtune.evaluate.prefix import plan_shared_prefix, prefix_cache, reset_position_state
from vlmtune.evaluate.rounds import Part, generate_in_rounds, rounds_apply
from vlmtune.families.base import Family
from vlmtune.model.load import cast_floats

# Fewer shared tokens than this are not worth the extra forward at batch 1.
MIN_SHARED_TOKENS = 4
# Rows whose prompts are within this ratio of lengths start generating together (rounds):
# at most ~20% of their prefill is padding, and each extra start costs one more generate call.
CHUNK_RATIO = 1.25
# Rounds, length groups and image-by-image batches pay from this many rows on: each extra
# generate call costs about a decode step, and dropping rows of a small batch saves little
# (measured on the bench: at batch 8 they made eval slower, at 16 and 32 faster).
MIN_ROUND_ROWS = 16
MIN_CHUNK_ROWS = 8  # a length group is closed only once it has this many rows


@dataclass
class Generation:
    prompt: str
    text: str
    latency_s: float
    new_tokens: int


class Generator:
    def __init__(self, model: Any, processor: Any, family: Family, *, max_new_tokens: int = 32,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                 share_prefix: bool = True, share_images: bool = True, rounds: bool = True):
        self.model, self.processor, self.family = model, processor, family
        self.share_prefix = share_prefix and family.prefix_share
        self.share_images = share_images
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
        # Continuing generate from a cache is verified exact on the prefix-sharing families.
        self.rounds = rounds and family.prefix_share and rounds_apply(model, self.kwargs)

    @torch.no_grad()
    def __call__(self, conversations: list[list[dict]], images: list[list[Any]],
                 videos: list[list[Any]] | None = None) -> list[Generation]:
        prompts, batch = prompt_inputs(self.processor, self.family, conversations, images, videos)
        tok = self.processor.tokenizer
        device = next(self.model.parameters()).device
        inputs = cast_floats({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()},
                             self.model.dtype)
        start = time.perf_counter()
        groups = image_groups(images) if self.share_images and not any(videos or []) else None
        new = self._generate(inputs, groups, lambda rows: self._inputs(
            [conversations[i] for i in rows], [images[i] for i in rows]))
        elapsed = time.perf_counter() - start
        texts = tok.batch_decode(new, skip_special_tokens=True)
        per = elapsed / len(prompts)
        pad = tok.pad_token_id
        return [Generation(p, t.strip(), per, int((row != pad).sum())) for p, t, row in zip(prompts, texts, new)]


    def _inputs(self, conversations: list[list[dict]], images: list[list[Any]]) -> dict:
        _, batch = prompt_inputs(self.processor, self.family, conversations, images)
        device = next(self.model.parameters()).device
        return cast_floats({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()},
                           self.model.dtype)

    def _generate(self, inputs: dict, groups: list[tuple] | None, sub_inputs: Any) -> torch.Tensor:
        """The new tokens of ``model.generate``. With rounds (:mod:`vlmtune.evaluate.rounds`),
        rows of similar prompt length start together and finished rows leave between rounds;
        each start prefills the rows' common leading ids once when the family allows it
        (through their images when rows share them, :mod:`vlmtune.evaluate.image_prefix`;
        else the text before the first image, :mod:`vlmtune.evaluate.prefix`)."""
        if not self.rounds or inputs["input_ids"].shape[0] < MIN_ROUND_ROWS:
            cache, inputs, _ = self._prefix(inputs, groups, sub_inputs)
            reset_position_state(self.model)
            extra = {} if cache is None else {"cache": cache}
            return self.model.generate(**inputs, **extra, **self.kwargs)[:, inputs["input_ids"].shape[1]:]
        lengths = inputs["attention_mask"].sum(dim=1).tolist()
        # Rows that share their images with another row start apart from those that do not:
        # only the former can prefill their images once.
        shares = [g is not None and groups.count(g) > 1 for g in (groups or [None] * len(lengths))]
        image_rows = [r for r in range(len(lengths)) if shares[r]]
        parts = self._image_parts(inputs, image_rows, groups, lengths, sub_inputs) if image_rows else None
        rows = [r for r in range(len(lengths)) if not shares[r] or parts is None]
        parts = parts or []
        chunks = [[rows[i] for i in c] for c in length_chunks([lengths[r] for r in rows])] if rows else []
        for chunk in chunks:
            part = inputs if len(chunk) == len(lengths) else sub_inputs(chunk)
            cache, part, length = self._prefix(part, None, None)
            parts.append(Part(chunk, part, cache, length))
        return generate_in_rounds(self.model, parts, self.kwargs)

    def _image_parts(self, inputs: dict, rows: list[int], groups: list[tuple], lengths: list[int],
                     sub_inputs: Any) -> list[Part] | None:
        """Starts for the rows that share images: their prefix through the images runs once
        per image group for the whole batch, then each length chunk continues from copies."""
        if not self.share_prefix:
            return None
        sub = inputs if len(rows) == len(lengths) else sub_inputs(rows)
        plan = plan_image_prefix(sub, [groups[r] for r in rows], self.placeholder_ids, MIN_SHARED_TOKENS)
        if plan is None:
            return None
        reset_position_state(self.model)
        cache = image_prefix_cache(self.model, plan, sub_inputs([rows[i] for i in plan.representatives]))
        if cache is None:
            return None
        group_of = dict(zip(rows, plan.group_of_row.tolist()))
        parts = []
        for chunk in length_chunks([lengths[r] - plan.shared.length for r in rows]):  # rest lengths
            chunk = [rows[i] for i in chunk]
            laid = plan.shared.inputs if len(chunk) == len(rows) else after_prefix(sub_inputs(chunk), plan)
            if laid is None:
                return None
            parts.append(Part(chunk, laid, rows_of(cache, torch.tensor([group_of[r] for r in chunk])),
                              plan.shared.length))
        return parts

    def _prefix(self, inputs: dict, groups: list[tuple] | None, rep_inputs: Any) -> tuple[Any, dict, int]:
        """(pre-filled cache or None, the inputs generate continues from, prefix length)."""
        reset_position_state(self.model)
        if not self.share_prefix:
            return None, inputs, 0
        image_plan = plan_image_prefix(inputs, groups, self.placeholder_ids, MIN_SHARED_TOKENS)
        if image_plan is not None:
            cache = image_prefix_cache(self.model, image_plan, rep_inputs(image_plan.representatives))
            if cache is not None:
                cache = rows_of(cache, image_plan.group_of_row)
                return cache, image_plan.shared.inputs, image_plan.shared.length
            reset_position_state(self.model)
        plan = plan_shared_prefix(inputs, self.placeholder_ids, MIN_SHARED_TOKENS)
        if plan is None:
            return None, inputs, 0
        return prefix_cache(self.model, plan.prefix, inputs["input_ids"].shape[0]), plan.inputs, plan.length


def length_chunks(lengths: list[int], ratio: float = CHUNK_RATIO, min_rows: int | None = None) -> list[list[int]]:
    """Row indices split into groups of similar prompt length (longest at most ``ratio`` x
    the shortest, once a group has ``min_rows``), so a group's prefill pads little; groups
    in ascending length, each group's rows in batch order."""
    min_rows = MIN_CHUNK_ROWS if min_rows is None else min_rows
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    chunks: list[list[int]] = []
    for i in order:
        if chunks and (len(chunks[-1]) < min_rows or lengths[i] <= ratio * lengths[chunks[-1][0]]):
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return [sorted(c) for c in chunks]  # rows in batch order within a group


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
