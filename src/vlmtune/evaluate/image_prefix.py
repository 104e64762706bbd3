"""Shared-prefix prefill through the images: rows that ask about the same image(s) share the
image tokens too, and the vision tower runs once per image instead of once per row.

Why: eval sets often ask several questions about one image (caption, VQA, multiple choice,
grounding), and a one-image prompt is mostly the system turn and the image tokens. When
every row has the same ids up to and including its image placeholders (same template, same
image sizes) and no row has an image after that point, the batch is laid out as
``[prefix][pads][rest]`` as in :mod:`vlmtune.evaluate.prefix`; the prefix is run once per
distinct image group (the processor's own pixel tensors of one representative row per
group) and each row's cache rows are copied from its group's. ``generate`` then sees no
pixels: its rest holds text only. Positions still come from the whole ids (Qwen-VL's M-RoPE
is recomputed from ``image_grid_thw``, which is kept), so greedy outputs equal one-by-one
generation (tested per family).

Example:
    >>> plan = plan_image_prefix(batch, groups=[0, 0, 1, 1], stop_ids={151655}, min_tokens=4)  # doctest: +SKIP
    >>> plan.length, plan.representatives
    (37, [0, 2])
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any

import torch

from vlmtune.evaluate.prefix import SharedPrefix, common_prefix_length, per_token_keys, relaid


@dataclass
class ImagePrefix:
    shared: SharedPrefix         # the re-laid-out batch (pixels dropped) and its prefix length
    representatives: list[int]   # one row per image group, in group order
    group_of_row: torch.Tensor   # each row's group index: which prefix cache row it copies


def image_groups(images: list[list[Any]]) -> list[tuple | None]:
    """A key per row naming its images by content (mode, size, pixel bytes); None for a row
    without images (it shares none)."""
    return [tuple(_digest(im) for im in row) if row else None for row in images]


def _digest(image: Any) -> str:
    data = image.tobytes() if hasattr(image, "tobytes") else bytes(memoryview(image))
    return f"{getattr(image, 'mode', '')}:{getattr(image, 'size', '')}:{hashlib.sha1(data).hexdigest()}"


def plan_image_prefix(batch: dict, groups: list[tuple | None] | None, stop_ids: set[int],
                      min_tokens: int) -> ImagePrefix | None:
    """The plan when it applies: the rows' common leading ids contain image placeholders,
    end after a complete image block, leave no placeholder in any row's rest, and at most
    half as many image groups as rows: the prefix forward costs one row per group, so with
    fewer sharers it costs more than it saves (measured: 7 groups in 8 rows was slower than
    the text prefix); otherwise None."""
    ids, mask = batch["input_ids"], batch.get("attention_mask")
    if groups is None or None in groups or mask is None or 2 * len(set(groups)) > ids.shape[0]:
        return None
    pads = (mask == 0).sum(dim=1)
    if not bool((mask[:, pads.max():] == 1).all()):
        return None
    rows = [ids[i, int(p):] for i, p in enumerate(pads)]
    n = common_prefix_length(rows, set())
    while n > 0 and any(int(r[n]) in stop_ids for r in rows):
        n -= 1  # never end inside an image block
    prefix_ids = set(rows[0][:n].tolist())
    if n < min_tokens or not prefix_ids & stop_ids or any(set(r[n:].tolist()) & stop_ids for r in rows):
        return None
    keep = set(per_token_keys(batch)) | {k for k in batch if "pixel" not in k}
    inputs = relaid({k: v for k, v in batch.items() if k in keep}, pads, n)
    order = list(dict.fromkeys(groups))
    representatives = [groups.index(g) for g in order]
    group_of_row = torch.tensor([order.index(g) for g in groups])
    return ImagePrefix(SharedPrefix(n, inputs, {}), representatives, group_of_row)


def image_prefix_cache(model: Any, plan: ImagePrefix, rep_batch: dict) -> Any:
    """The KV cache of the prefix, one row per image group, run on the representatives' own
    processor batch (its pixels). None if the representatives' prefix ids are not the
    batch's (then the caller shares only the text before the images)."""
    n = plan.shared.length
    pads = (rep_batch["attention_mask"] == 0).sum(dim=1)
    laid = relaid(rep_batch, pads, n)
    keys = per_token_keys(rep_batch)
    prefix = {k: (laid[k][:, :n] if k in keys else v) for k, v in laid.items()}
    expected = plan.shared.inputs["input_ids"][plan.representatives, :n]
    if not torch.equal(prefix["input_ids"], expected) or not bool((prefix["attention_mask"] == 1).all()):
        return None
    out = model(**prefix, use_cache=True)
    return getattr(out, "cache", None) or getattr(out, "past_key_values", None)


def rows_of(cache: Any, groups: torch.Tensor) -> Any:
    """A copy of the group cache with one row per entry of ``groups`` (its group's row)."""
    rows = copy.deepcopy(cache)
    rows.batch_select_indices(groups)
    return rows


def after_prefix(batch: dict, plan: ImagePrefix) -> dict | None:
    """Another batch of the same rows' kind (a subset of them, processed again) laid out
    after the plan's prefix without its pixels; None if its rows do not start with the
    plan's prefix ids or still hold an image after it."""
    n = plan.shared.length
    pads = (batch["attention_mask"] == 0).sum(dim=1)
    if not bool((batch["attention_mask"][:, pads.max():] == 1).all()):
        return None
    keep = set(per_token_keys(batch)) | {k for k in batch if "pixel" not in k}
    laid = relaid({k: v for k, v in batch.items() if k in keep}, pads, n)
    expected = plan.shared.inputs["input_ids"][:1, :n]
    if not bool((laid["input_ids"][:, :n] == expected).all()):
        return None
    return laid
