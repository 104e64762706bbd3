"""``train.compile``: compile the non-attention parts of every decoder layer (regional).

Why regional: compiling the whole model recompiles whenever a batch's shape or a packed
row's sample lengths change, and vlmtune's attention (per-sample attention of packed rows,
the vision cache's hook) is Python that does not trace well. A decoder layer's MLP and norms
are the same code in every layer and every step: compiled once with dynamic shapes
(``nn.Module.compile``, in place, so parameter names and checkpoints do not change), they
fuse the element-wise work around the matmuls (RMSNorm, SiLU x up, LoRA's scaling) into
a few loops.

Measured on the bench model (36M-parameter Qwen2-VL, LoRA r=16 on the 7 projections, one
CPU thread, forward + backward of a 600-token row, median CPU seconds): eager 0.818 s,
MLP + norms compiled 0.749 s (x1.09) after a 3.9 s first compile, no recompile for a new
length; the whole language model compiled 0.677 s (x1.21) but 45 s to compile, and more at
every new shape. So this pays from a few hundred steps on; it is off by default.

Same math up to floating-point rounding, unlike the other speed options, which are exact:
fused loops sum in a different order. One step's loss is equal and its gradients agree to
~5e-7 relative (tested); later losses drift further, because Adam scales every update to
about the learning rate whatever the gradient's size (seen on a tiny model at lr 1e-2:
9e-4 relative after 3 steps).

Example:
    >>> compile_decoder_layers(model, family)  # doctest: +SKIP
    24
"""

from __future__ import annotations

from typing import Any

from torch import nn

from vlmtune.families.base import registry_name



def decoder_layers(model: nn.Module, family: Any) -> list[nn.Module]:
    """The language model's decoder layers: children of a ``layers`` ModuleList in the
    language role (cross-attention layers of Mllama included)."""
    out = []
    for name, module in model.named_modules():
        if (isinstance(module, nn.ModuleList) and name.endswith("layers")
                and family.role_of(registry_name(name)) == "language"):
            out.extend(module)
    return out


def compile_decoder_layers(model: nn.Module, family: Any) -> int:
    """Compile, in place and with dynamic shapes, every child of every decoder layer that is
    not attention; returns how many modules were compiled."""
    count = 0
    for layer in decoder_layers(model, family):
        for child in layer.children():
            if "Attention" in type(child).__name__:  # attention and cross-attention stay eager
                continue
            child.compile(dynamic=True)
            count += 1
    return count
