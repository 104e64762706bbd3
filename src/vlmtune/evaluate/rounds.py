"""Greedy batched generation in rounds that drop finished rows.

Why: ``model.generate`` keeps every row of a batch until the longest answer ends, decoding
pads for rows that already stopped; a batch mixing one-word answers with captions pays
caption-many steps at full batch width. Here ``generate`` runs a few tokens at a time
(rounds of 2, 4, 8, ... new tokens); after each round the rows that emitted a stop token
leave the batch and the KV cache (``Cache.batch_select_indices``), and the others continue
from the cache. A continuation is the same computation as an uninterrupted ``generate``:
the cache holds every token but the last, positions are counted from the attention mask
(Qwen-VL's M-RoPE offsets, kept on the model as ``rope_deltas``, are cut to the kept rows),
and greedy logits processors see the whole sequence so far. Greedy outputs equal one-by-one
generation (tested per family).

Example:
    >>> new = generate_in_rounds(model, inputs, kwargs)  # doctest: +SKIP
    >>> new.shape  # (rows, longest answer), pads after each row's end
    torch.Size([16, 24])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from vlmtune.evaluate.prefix import reset_position_state

FIRST_ROUND = 2  # new tokens in the first round; each later round doubles it

# Generation settings whose effect depends on where generation started: a continuation
# would apply them again, so rounds are not used when the model's generation config sets them.
START_DEPENDENT = ("min_length", "min_new_tokens", "begin_suppress_tokens", "exponential_decay_length_penalty",
                   "forced_bos_token_id", "sequence_bias", "watermarking_config")


def rounds_apply(model: Any, kwargs: dict) -> bool:
    """Rounds keep outputs equal only for greedy decoding with stop tokens and no
    start-dependent setting (see :data:`START_DEPENDENT`)."""
    if kwargs.get("do_sample") or not kwargs.get("eos_token_id"):
        return False
    config = getattr(model, "generation_config", None)
    return not any(getattr(config, name, None) for name in START_DEPENDENT)


@dataclass
class Part:
    """Rows of the batch that start generating together (one ``generate`` call): their
    indices in the batch, their inputs, an optional pre-filled cache and the column after
    their shared prefix (where pad columns go when parts merge)."""
    rows: list[int]
    inputs: dict
    cache: Any = None
    prefix: int = 0


def generate_in_rounds(model: Any, parts: list[Part], kwargs: dict) -> torch.Tensor:
    """The new tokens of every row (``rows x longest``), right-padded with the pad id, as
    ``model.generate`` would give them. The first round runs per part (rows of similar
    prompt length, so little padding is prefilled); the rows still running then merge into
    one batch, and finished rows leave between rounds."""
    stop = torch.tensor(sorted(_as_list(kwargs["eos_token_id"])))
    total = int(kwargs["max_new_tokens"])
    pieces: dict[int, list[torch.Tensor]] = {r: [] for p in parts for r in p.rows}
    live: list[tuple[Part, dict]] = []
    n = min(FIRST_ROUND, total)
    for part in parts:
        reset_position_state(model)
        after = _round(model, part, n, kwargs, stop, pieces)
        if after is not None:
            live.append((after, _position_state(model)))
    if live and n < total:
        if all(mergeable(p.cache) for p, _ in live):
            live = [(_merge(model, live, kwargs["pad_token_id"]), {})]
        for part, state in live:
            if state:
                _set_position_state(model, [state])
            done, length = n, FIRST_ROUND * 2
            while part is not None and done < total:
                step = min(length, total - done)
                part = _round(model, part, step, kwargs, stop, pieces)
                done, length = done + step, length * 2
    return _right_padded([torch.cat(pieces[r]) for r in sorted(pieces)], kwargs["pad_token_id"])


def _round(model: Any, part: Part, n: int, kwargs: dict, stop: torch.Tensor,
           pieces: dict[int, list[torch.Tensor]]) -> Part | None:
    """Generate ``n`` tokens for ``part``; the part of its rows that have not stopped, with
    their cache, ids and positions cut to them (None when all stopped)."""
    start = part.inputs["input_ids"].shape[1]
    extra = {} if part.cache is None else {"cache": part.cache}
    out = model.generate(**part.inputs, **extra, **dict(kwargs, max_new_tokens=n, return_dict_in_generate=True))
    new = out.sequences[:, start:]
    finished = torch.isin(new, stop).any(dim=1) | (new.shape[1] < n)
    for row, tokens in zip(part.rows, new):
        pieces[row].append(tokens)
    if bool(finished.all()):
        return None
    keep = torch.nonzero(~finished).flatten()
    out.cache.batch_select_indices(keep)
    _select_position_state(model, keep, len(part.rows))
    mask = torch.cat([part.inputs["attention_mask"], torch.ones_like(new)], dim=1)
    inputs = {"input_ids": out.sequences[keep], "attention_mask": mask[keep]}
    return Part([part.rows[i] for i in keep.tolist()], inputs, out.cache, part.prefix)


def _merge(model: Any, live: list[tuple[Part, dict]], pad: int) -> Part:
    """One part of all running parts: each part's ids, mask and cache get pad columns after
    its prefix (masked, so no row attends to them) up to the widest part, then are stacked."""
    if len(live) == 1:
        part, state = live[0]
        _set_position_state(model, [state])
        return part
    width = max(p.inputs["input_ids"].shape[1] for p, _ in live)
    ids, masks, layers = [], [], None
    for part, _ in live:
        extra = width - part.inputs["input_ids"].shape[1]
        ids.append(_insert(part.inputs["input_ids"], part.prefix, extra, 1, pad))
        masks.append(_insert(part.inputs["attention_mask"], part.prefix, extra, 1))
        kv = [(_insert(layer.keys, part.prefix, extra, 2), _insert(layer.values, part.prefix, extra, 2))
              for layer in part.cache.layers]
        layers = [a + [b] for a, b in zip(layers, kv)] if layers else [[x] for x in kv]
    cache = live[0][0].cache
    for layer, stacked in zip(cache.layers, layers):
        layer.keys = torch.cat([k for k, _ in stacked])
        layer.values = torch.cat([v for _, v in stacked])
    _set_position_state(model, [state for _, state in live])
    rows = [r for p, _ in live for r in p.rows]
    return Part(rows, {"input_ids": torch.cat(ids), "attention_mask": torch.cat(masks)}, cache, 0)


def mergeable(cache: Any) -> bool:
    """Parts can merge only when every cache layer is a plain growing key/value pair."""
    return cache is not None and all(type(layer).__name__ == "DynamicLayer" for layer in cache.layers)


def _insert(t: torch.Tensor, at: int, extra: int, dim: int, fill: int = 0) -> torch.Tensor:
    """``t`` with ``extra`` columns of ``fill`` inserted at index ``at`` of dimension ``dim``
    (ids get the pad id; the mask is 0 there, so keys and values there are never used)."""
    if extra == 0:
        return t
    shape = list(t.shape)
    shape[dim] = extra
    head, tail = t.narrow(dim, 0, at), t.narrow(dim, at, t.shape[dim] - at)
    return torch.cat([head, t.new_full(shape, fill), tail], dim=dim)


def _position_state(model: Any) -> dict:
    return {name: m.rope_deltas for name, m in model.named_modules()
            if isinstance(getattr(m, "rope_deltas", None), torch.Tensor)}


def _set_position_state(model: Any, states: list[dict]) -> None:
    for name, module in model.named_modules():
        if all(name in s for s in states) and states and states[0]:
            module.rope_deltas = torch.cat([s[name] for s in states])


def _select_position_state(model: Any, keep: torch.Tensor, rows: int) -> None:
    """Keep the M-RoPE offsets (``rope_deltas``, one per row) of the rows that continue."""
    for module in model.modules():
        deltas = getattr(module, "rope_deltas", None)
        if isinstance(deltas, torch.Tensor) and deltas.shape[0] == rows:
            module.rope_deltas = deltas[keep.to(deltas.device)]


def _right_padded(rows: list[torch.Tensor], pad: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad, dtype=rows[0].dtype)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def _as_list(value: Any) -> list[int]:
    return list(value) if isinstance(value, (list, tuple)) else [int(value)]
