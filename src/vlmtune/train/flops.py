"""Model FLOPs of a training step, from the model's real layer sizes and the batch's shapes.

Counted: matrix multiplies (linear layers, patch-embedding convolutions, attention scores
and values), the work that dominates and that a matmul peak measures. Not counted:
norms, activations, softmax, the optimizer (a few % at most).

Per linear layer of ``in x out`` seeing ``rows`` tokens: forward ``2·rows·in·out``; the
backward adds ``2·rows·in·out`` for the input gradient when gradients flow through it
and another ``2·rows·in·out`` for the weight gradient when its weight trains. So a
frozen-base LoRA language model costs ~4N per token (plus the small adapter weight
gradients), a full fine-tune ~6N, and a frozen vision tower 2N (0 when its features come
from the vision cache). Attention adds ``4·Lq·Lk·heads·head_dim`` per layer forward
(every score is computed, masked or not, so padding costs; a packed row pays each sample's
own square, as ``vlmtune.train.packing.segment_attention`` computes it) and twice that backward.

Rows per role: every language-model layer sees every input position (padding included),
except the LM head, which runs only where a label follows (``vlmtune.train.loss``; every
position for a model whose forward has no ``logits_to_keep``); vision-tower layers see each
image's patches; projector layers see the image tokens the decoder receives. Mllama's cross-attention layers are counted as linear layers only.

Example:
    >>> counter = FlopCounter(model, family)  # doctest: +SKIP
    >>> counter.of_batch(batch)               # FLOPs of forward + backward on this batch
    1.2e9
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vlmtune.data.encode import IGNORE
from vlmtune.families.base import registry_name
from vlmtune.families.shapes import text_dims, vision_dims
from vlmtune.train.loss import takes_logit_mask


@dataclass
class RoleCost:
    """Sum of ``in·out`` over a role's matmul layers: all, and those whose weights train."""

    weights: int = 0
    trainable: int = 0
    inputs_leaf: int = 0  # layers whose input is data (patch embedding): never an input gradient


def role_costs(model: nn.Module, family: Any) -> dict[str, RoleCost]:
    """``in·out`` per role over Linear layers (LoRA A/B included, a 4-bit weight counted
    at its logical size) and, for the vision role, patch-embedding convolutions."""
    costs = {role: RoleCost() for role in ("vision", "projector", "language")}
    for name, module in model.named_modules():
        if ".original_module" in name:  # PEFT keeps the frozen original beside a trained copy
            continue
        if isinstance(module, nn.Linear):
            size, weight = module.in_features * module.out_features, module.weight
        elif isinstance(module, (nn.Conv2d, nn.Conv3d)):  # one output position per patch
            size, weight = module.weight.numel(), module.weight
        else:
            continue
        cost = costs[family.role_of(registry_name(name)) or "language"]
        cost.weights += size
        if not isinstance(module, nn.Linear):
            cost.inputs_leaf += size
        if weight.requires_grad:
            cost.trainable += size
    return costs


class FlopCounter:
    """FLOPs of one forward + backward pass on a batch (see the module docstring)."""

    def __init__(self, model: nn.Module, family: Any):
        config = getattr(model, "config", None)
        self.costs = role_costs(model, family)
        self.head, self.head_trainable = self._split_head(model)
        self.answer_only = takes_logit_mask(model)
        text = text_dims(config)
        self.text_attn = text["layers"] * text["heads"] * text["head_dim"]
        vision = vision_dims(config)
        self.vision_attn = vision.get("layers", 0) * vision.get("width", 0)
        self.patch = vision.get("patch", 14)
        self.image_id = next((v for a in ("image_token_id", "image_token_index")
                              if isinstance(v := getattr(config, a, None), int)), None)
        grads = {role: any(p.requires_grad for n, p in model.named_parameters()
                           if (family.role_of(registry_name(n)) or "language") == role)
                 for role in self.costs}
        # Input gradients flow through a role when it or anything before it trains.
        self.backprop = {"vision": grads["vision"], "projector": grads["vision"] or grads["projector"],
                         "language": any(grads.values())}

    def _split_head(self, model: nn.Module) -> tuple[int, int]:
        """Take the LM head's ``in·out`` out of the language role (it sees other rows)."""
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if not isinstance(head, nn.Linear):
            return 0, 0
        size = head.in_features * head.out_features
        trainable = size if head.weight.requires_grad else 0
        self.costs["language"].weights -= size
        self.costs["language"].trainable -= trainable
        return size, trainable

    def _head_rows(self, batch: dict[str, Any], rows: int, seq: int) -> int:
        labels = batch.get("labels")
        if not self.answer_only or labels is None:
            return rows * seq
        return max(int((labels[:, 1:] != IGNORE).sum()), 1)  # an all-IGNORE batch still runs one row

    def _pass(self, role: str, rows: int, attn_pairs: int, attn_width: int) -> float:
        cost = self.costs[role]
        forward = 2 * rows * cost.weights + 4 * attn_pairs * attn_width
        backward = 2 * rows * cost.trainable
        if self.backprop[role]:
            backward += 2 * rows * (cost.weights - cost.inputs_leaf) + 8 * attn_pairs * attn_width
        return float(forward + backward)

    def of_batch(self, batch: dict[str, Any], segments: list[int] | None = None) -> float:
        """``segments``: the sample lengths of a packed row (attention runs per sample)."""
        ids = batch["input_ids"]
        rows, seq = ids.shape[:2]
        pairs = sum(n * n for n in segments) if segments else rows * seq * seq
        total = self._pass("language", rows * seq, pairs, self.text_attn)
        head_rows = self._head_rows(batch, rows, seq)
        total += 2 * head_rows * (self.head + self.head_trainable)
        if self.backprop["language"]:
            total += 2 * head_rows * self.head
        if batch.get("pixel_values") is not None:  # served from the vision cache: no vision work
            patches, pairs = self._patches(batch)
            image_tokens = int((ids == self.image_id).sum()) if self.image_id is not None else 0
            total += self._pass("vision", patches, pairs, self.vision_attn)
            total += self._pass("projector", image_tokens, 0, 0)
        return total

    def _patches(self, batch: dict[str, Any]) -> tuple[int, int]:
        """Patches through the vision tower and sum of per-image (patches²) for attention."""
        pixels: torch.Tensor = batch["pixel_values"]
        grid = batch.get("image_grid_thw")
        if grid is not None:  # Qwen: flattened patches, attention within each image
            per_image = grid.prod(-1)
            return int(pixels.shape[0]), int((per_image**2).sum())
        channels, height, width = pixels.shape[-3:]
        crops = pixels.numel() // (channels * height * width)
        per_crop = (height // self.patch) * (width // self.patch)
        return crops * per_crop, crops * per_crop**2
