"""Batch examples into the dict ``model(**batch)`` takes, with answer-only labels.

The processor does the family-specific batching (pixel tensors, grids, cross-attention
masks); we re-run it on the batch with right padding, check each row matches the ids the
pre-pass encoded, place the pre-computed labels, and cut every sequence-shaped tensor to
``max_length``.

Re-running the processor loads and preprocesses every image at every step. With
``cache_bytes`` the collator keeps each example's processed one-row batch and builds later
batches by padding and concatenating rows; the first batches built that way are compared
with the processor's own, and a model whose processor batches differently (or a batch
whose rows do not stack) goes through the processor as before.

Example:
    >>> batch = Collator(processor, max_length=512)([data[0], data[1]])  # doctest: +SKIP
    >>> sorted(k for k in batch if k in ("input_ids", "labels"))
    ['input_ids', 'labels']
"""

from __future__ import annotations

from typing import Any

import torch

from vlmtune.data.dataset import Example
from vlmtune.data.encode import IGNORE, call_processor


# Batches built from cached rows that are also built by the processor and compared, before
# the cache is trusted for a run.
VERIFY_BATCHES = 2


class Collator:
    """``cache_bytes`` > 0 keeps each example's processed row (ids, labels, pixel tensors) so
    later epochs skip image loading and preprocessing; see :class:`RowCache`."""

    def __init__(self, processor: Any, max_length: int, cache_bytes: int = 0):
        self.processor = processor
        self.max_length = max_length
        self.rows = RowCache(cache_bytes) if cache_bytes else None

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        if self.rows is not None:
            batch = self._from_rows(examples)
            if batch is not None:
                return batch
        return self._process(examples)

    def _from_rows(self, examples: list[Example]) -> dict[str, torch.Tensor] | None:
        rows = [self.rows.get(e, lambda e=e: self._process([e])) for e in examples]
        batch = stack_rows(rows, pad_id=self.processor.tokenizer.pad_token_id or 0)
        if batch is None or self.rows.verified >= VERIFY_BATCHES:
            return batch
        expected = self._process(examples)
        if not same_batch(batch, expected):
            print("note: cached rows do not batch like the processor for this model; preprocessing every batch")
            self.rows = None
            return expected
        self.rows.verified += 1
        return batch

    def _process(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        images = [e.sample.load_images() for e in examples]
        videos = [e.sample.load_videos() for e in examples]
        tok = self.processor.tokenizer
        side, tok.padding_side = tok.padding_side, "right"
        try:
            batch = dict(call_processor(self.processor, [e.rendered for e in examples], images, videos,
                                        padding=True))
        finally:
            tok.padding_side = side
        batch.pop("labels", None)
        ids = batch["input_ids"]
        labels = torch.full_like(ids, IGNORE)
        for row, example in enumerate(examples):
            start = _row_start(batch["attention_mask"][row], example.length)
            expected = torch.tensor(example.encoded.input_ids)
            if not torch.equal(ids[row, start:start + example.length], expected):
                raise RuntimeError(f"{example.sample.where}: batched processing changed the token ids")
            labels[row, start:start + example.length] = torch.tensor(example.encoded.labels)
        batch["labels"] = labels
        return cut_to_length(batch, self.max_length)


def _row_start(mask: torch.Tensor, length: int) -> int:
    """Offset of a row's tokens in the padded batch (0 unless the processor padded left)."""
    return int(mask.argmax()) if mask[0] == 0 else 0


def cut_to_length(batch: dict[str, Any], max_length: int) -> dict[str, Any]:
    """Slice dim 1 of every tensor shaped like ``input_ids`` (batch, seq, ...)."""
    batch_size, seq = batch["input_ids"].shape[:2]
    if seq <= max_length:
        return batch
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[:2] == (batch_size, seq):
            value = value[:, :max_length]
        out[key] = value
    return out


class RowCache:
    """Each example's one-row collated batch, kept until ``max_bytes`` (then computed each
    time). Keyed by the example object, which lives as long as its dataset."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.verified = 0
        self._rows: dict[int, tuple[Example, dict[str, Any]]] = {}

    def get(self, example: Example, compute: Any) -> dict[str, Any]:
        hit = self._rows.get(id(example))
        if hit is not None and hit[0] is example:
            return hit[1]
        row = compute()
        size = sum(v.numel() * v.element_size() for v in row.values() if isinstance(v, torch.Tensor))
        if self.bytes + size <= self.max_bytes:
            self._rows[id(example)] = (example, row)
            self.bytes += size
        return row


def stack_rows(rows: list[dict[str, Any]], pad_id: int) -> dict[str, Any] | None:
    """Right-pad one-row batches into one batch: sequence-shaped tensors (``(1, len, ...)``)
    are padded (ids with ``pad_id``, labels with IGNORE, masks and types with 0), image
    tensors are concatenated along dim 0. None when the rows do not share keys and image
    tensor shapes (e.g. a different number of images per sample where the processor pads
    the image axis): the processor must batch those itself."""
    keys = rows[0].keys()
    if any(r.keys() != keys for r in rows):
        return None
    lengths = [r["input_ids"].shape[1] for r in rows]
    longest = max(lengths)
    out: dict[str, Any] = {}
    for key in keys:
        values = [r[key] for r in rows]
        if not all(isinstance(v, torch.Tensor) for v in values):
            return None
        if all(v.dim() >= 2 and v.shape[:2] == (1, n) for v, n in zip(values, lengths)):
            fill = pad_id if key == "input_ids" else IGNORE if key == "labels" else 0
            padded = [torch.nn.functional.pad(v, _right(v, longest), value=fill) for v in values]
            out[key] = torch.cat(padded, dim=0)
        elif len({tuple(v.shape[1:]) for v in values}) == 1:
            out[key] = torch.cat(values, dim=0)
        else:
            return None
    return out


def _right(value: torch.Tensor, longest: int) -> tuple[int, ...]:
    """``F.pad`` widths that pad dim 1 on the right (pad lists start from the last dim)."""
    return (0, 0) * (value.dim() - 2) + (0, longest - value.shape[1])


def same_batch(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    return all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a)
