"""Padding-free packing: a micro-batch's samples become one row, attention kept per sample.

A right-padded batch ``(B, L)`` turns into ``(1, T)`` with ``T`` = its real tokens: every
sequence-shaped tensor keeps only its unpadded positions, the attention mask is dropped
and ``position_ids`` restart at 0 for each sample. transformers 5 reads those restarts as
packed sequences (``masking_utils.find_packed_sequence_indices``): sdpa/eager get a
block-diagonal causal mask, flash-attention the per-sample lengths. Image tensors are left
as they are: the model scatters image features into placeholder tokens in row-major
order, which packing preserves.

Qwen-VL families need their 3-D M-RoPE positions: we compute them per sample with the
model's own ``get_rope_index`` on the padded batch and keep the unpadded columns, with the
plain per-sample positions as the extra first row that marks the sample boundaries.

The batch carries ``use_cache=False``: with a KV cache, transformers ignores the restarts.
The first token of each sample gets no label: in the packed row it would be the target of
the previous sample's last token (unpacked, it is never a target either).

Example:
    >>> packed = pack(batch, family, model)  # doctest: +SKIP
    >>> packed["input_ids"].shape[0], "attention_mask" in packed
    (1, False)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vlmtune.data.encode import IGNORE
from vlmtune.errors import ConfigError


def check_packing(enabled: bool, family: Any) -> None:
    if enabled and family.packing is None:
        raise ConfigError(f"train.packing: not supported for {family.name} ({family.packing_why}); "
                          "use train.group_by_length: true to cut padding instead")


def pack(batch: dict[str, Any], family: Any, model: nn.Module) -> dict[str, Any]:
    """One packed row from a right-padded batch (see the module docstring)."""
    mask = batch["attention_mask"].bool()
    batch_size, seq = mask.shape
    lengths = mask.sum(1).tolist()
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if key == "attention_mask":
            continue
        if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[:2] == (batch_size, seq):
            value = value[mask].unsqueeze(0)
        out[key] = value
    starts = torch.tensor([0, *lengths[:-1]]).cumsum(0)
    out["labels"] = out["labels"].clone()
    out["labels"][0, starts] = IGNORE
    text_positions = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
    if family.packing == "mrope":
        rope = _mrope_positions(model, batch)  # (3, B, L)
        out["position_ids"] = torch.cat([text_positions.unsqueeze(0), rope[:, mask].unsqueeze(1)], dim=0)
    else:
        out["position_ids"] = text_positions
    # transformers only reads position restarts as sample boundaries without a KV cache (and
    # the decoder's own config may still ask for one).
    out["use_cache"] = False
    return out


def _mrope_positions(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    inner = _vlm_model(model)
    positions, _ = inner.get_rope_index(
        input_ids=batch["input_ids"], mm_token_type_ids=batch["mm_token_type_ids"],
        image_grid_thw=batch.get("image_grid_thw"), video_grid_thw=batch.get("video_grid_thw"),
        attention_mask=batch["attention_mask"])
    return positions


def _vlm_model(model: nn.Module) -> nn.Module:
    """The ``*Model`` inside ``*ForConditionalGeneration`` (under PEFT / DDP wrappers)."""
    base = getattr(model, "module", model)
    if hasattr(base, "get_base_model"):
        base = base.get_base_model()
    return base.model
