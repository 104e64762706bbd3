"""Batch examples into the dict ``model(**batch)`` takes, with answer-only labels.

The processor does the family-specific batching (pixel tensors, grids, cross-attention
masks); we re-run it on the batch with right padding, check each row matches the ids the
pre-pass encoded, place the pre-computed labels, and cut every sequence-shaped tensor to
``max_length``.

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


class Collator:
    def __init__(self, processor: Any, max_length: int):
        self.processor = processor
        self.max_length = max_length

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        images = [e.sample.load_images() for e in examples]
        tok = self.processor.tokenizer
        side, tok.padding_side = tok.padding_side, "right"
        try:
            batch = dict(call_processor(self.processor, [e.rendered for e in examples], images, padding=True))
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
