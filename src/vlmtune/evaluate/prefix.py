"""Shared-prefix prefill for batched generation: the prompt text every row begins with (the
chat template's system turn and the opening of the user turn) is run through the model once
and its KV cache copied to every row, instead of once per row.

Why this is exact: a row's first ``P`` tokens are the same ids at the same positions (left
padding never shifts positions, they are counted from the attention mask), so their keys
and values do not depend on the row. The batch is re-laid out as ``[prefix][pads][rest]``
(pads moved from the left edge to just after the prefix, still masked out), so the cached
columns are identical in every row and ``generate`` prefills only the rest. Image
placeholders never enter the prefix: the vision features of each row are computed in the
rest, as without sharing. Greedy outputs equal one-by-one generation (tested per family).

Example:
    >>> plan = plan_shared_prefix(batch, stop_ids={151655}, min_tokens=4)  # doctest: +SKIP
    >>> plan.length
    21
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class SharedPrefix:
    length: int          # tokens every row starts with (before any image placeholder)
    inputs: dict         # the batch re-laid out as [prefix][pads][rest], for generate
    prefix: dict         # per-token tensors of the prefix alone (batch 1), for the cache forward


def per_token_keys(batch: dict) -> list[str]:
    """Keys of tensors laid out like ``input_ids`` (ids, mask, token types): they move together."""
    ids = batch["input_ids"]
    return [k for k, v in batch.items()
            if isinstance(v, torch.Tensor) and v.shape == ids.shape and not v.is_floating_point()]


def common_prefix_length(rows: list[torch.Tensor], stop_ids: set[int]) -> int:
    """Length of the longest run of ids every row starts with, cut before the first stop id
    (an image placeholder) and one short of the shortest row, so every row keeps a token to
    prefill."""
    limit = min(len(r) for r in rows) - 1
    first = rows[0]
    n = 0
    while n < limit and int(first[n]) not in stop_ids and all(int(r[n]) == int(first[n]) for r in rows[1:]):
        n += 1
    return n


def plan_shared_prefix(batch: dict, stop_ids: set[int], min_tokens: int) -> SharedPrefix | None:
    """The re-laid-out batch and its prefix, or None when the rows share fewer than
    ``min_tokens`` leading ids (then sharing saves less than the extra forward costs)."""
    ids, mask = batch["input_ids"], batch.get("attention_mask")
    if ids.shape[0] < 2 or mask is None:
        return None
    pads = (mask == 0).sum(dim=1)
    if not bool((mask[:, pads.max():] == 1).all()):
        return None  # not a left-padded batch (pads elsewhere): leave it alone
    rows = [ids[i, int(p):] for i, p in enumerate(pads)]
    n = common_prefix_length(rows, stop_ids)
    if n < min_tokens:
        return None
    inputs = relaid(batch, pads, n)
    prefix = {k: inputs[k][:1, :n] for k in per_token_keys(batch)}
    return SharedPrefix(n, inputs, prefix)


def relaid(batch: dict, pads: torch.Tensor, n: int) -> dict:
    """``batch`` with each row's per-token tensors re-laid out as [first n real tokens][pads][rest]."""
    total = batch["input_ids"].shape[1]
    order = torch.stack([_new_column_order(int(p), n, total) for p in pads])
    inputs = dict(batch)
    for k in per_token_keys(batch):
        inputs[k] = torch.gather(batch[k], 1, order.to(batch[k].device))
    return inputs


def _new_column_order(pad: int, n: int, total: int) -> torch.Tensor:
    """Old column of each new column: prefix (after the pads), the pads, then the rest."""
    return torch.cat([torch.arange(pad, pad + n), torch.arange(0, pad), torch.arange(pad + n, total)])


def prefix_cache(model: Any, prefix: dict, rows: int) -> Any:
    """The KV cache of the prefix (one forward at batch 1), repeated for ``rows`` rows."""
    out = model(**prefix, use_cache=True)
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    cache.batch_repeat_interleave(rows)
    return cache


def reset_position_state(model: Any) -> None:
    """Forget M-RoPE offsets kept from the previous batch (Qwen-VL stores ``rope_deltas`` on the
    model): with a pre-filled cache, generate would reuse them instead of computing them for
    this batch's images."""
    for module in model.modules():
        if getattr(module, "rope_deltas", None) is not None:
            module.rope_deltas = None
