"""Padding-free packing: a micro-batch's samples become one row, attention kept per sample.

A right-padded batch ``(B, L)`` turns into ``(1, T)`` with ``T`` = its real tokens: every
sequence-shaped tensor keeps only its unpadded positions, the attention mask is dropped
and ``position_ids`` restart at 0 for each sample. Run the model inside
:func:`packed_attention` (the training loop does, forward and backward): the decoder then
attends within each sample through :func:`segment_attention`, causal SDPA per sample,
without the ``(T, T)`` mask. Outside it, transformers 5 reads the restarts as packed
sequences itself (``masking_utils.find_packed_sequence_indices``) and builds a dense
block-diagonal mask for sdpa/eager: the same losses, more work. Image tensors are left as
they are: the model scatters image features into placeholder tokens in row-major order,
which packing preserves.

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
    >>> with packed_attention(model, family, packed_lengths(packed)):  # doctest: +SKIP
    ...     logits = model(**{k: v for k, v in packed.items() if k != "labels"}).logits
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

import torch
from torch import nn

from vlmtune.data.encode import IGNORE
from vlmtune.errors import ConfigError
# Function-level imports: transformers' attention registry loads only when packing is on.


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


def packed_lengths(batch: dict[str, Any]) -> list[int]:
    """The sample lengths of a packed row, from the position restarts ``pack`` wrote."""
    positions = batch["position_ids"]
    text = positions[0, 0] if positions.dim() == 3 else positions[0]
    starts = (text == 0).nonzero().flatten().tolist() + [text.shape[0]]
    return [b - a for a, b in zip(starts, starts[1:])]


# Attention per sample for packed rows (registered with transformers' AttentionInterface).
SEGMENT_ATTENTION = "vlmtune_segments"
_SEGMENTS: ContextVar[list[int] | None] = ContextVar("vlmtune_segments", default=None)


def segment_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Causal SDPA over each sample of a packed row on its own.

    transformers' own path for a packed row without flash-attention is one dense
    block-diagonal ``(T, T)`` mask: SDPA then computes every sample against every other
    sample (and the mask rules out the math-free kernels), so packing costs more attention
    than the padded batch it replaces. Cut at the sample boundaries, each sample runs
    ``is_causal`` attention over its own keys only: the same numbers, sum(L_i^2) work."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    lengths = _SEGMENTS.get()
    if lengths is None or attention_mask is not None or query.shape[2] != key.shape[2]:
        # not inside packed_attention (or a cached decode step): plain SDPA
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    if query.shape[0] != 1 or sum(lengths) != query.shape[2]:
        raise RuntimeError(f"packed attention: a row of {tuple(query.shape)} does not hold samples of {lengths}")
    window = kwargs.pop("sliding_window", None)
    if window is not None and max(lengths) > window:
        raise ConfigError(f"train.packing: a sample of {max(lengths)} tokens is longer than this decoder's sliding "
                          f"window ({window}); per-sample attention here is full causal: set train.packing: false")
    parts = [sdpa_attention_forward(module, q, k, v, None, dropout=dropout, scaling=scaling, is_causal=True)[0]
             for q, k, v in zip(query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2))]
    return torch.cat(parts, dim=1), None


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(SEGMENT_ATTENTION, segment_attention)


@contextmanager
def packed_attention(model: nn.Module, family: Any, lengths: list[int]) -> Iterator[None]:
    """Within this block the decoder attends within each of the packed row's samples
    (``lengths``, in row order) with :func:`segment_attention`; the vision tower and any
    other forward keep their attention. The decoder's config names no mask function for
    it, so transformers builds no ``(T, T)`` mask either."""
    _register()
    config = language_config(model, family)
    before = config._attn_implementation
    token = _SEGMENTS.set(list(lengths))
    config._attn_implementation = SEGMENT_ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = before
        _SEGMENTS.reset(token)


def language_config(model: nn.Module, family: Any) -> Any:
    """The config the decoder's attention layers read (under PEFT / DDP wrappers)."""
    base = getattr(model, "module", model)
    if hasattr(base, "get_base_model"):
        base = base.get_base_model()
    return base.get_submodule(family.language[0]).config


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
