"""LoRA's update added inside one matmul: ``addmm(base(x), A(x), Bᵀ, alpha=scaling)``.

PEFT's ``lora.Linear`` computes ``base(x) + B(A(x)) * scaling``: two extra passes over the
``tokens x out_features`` output forward (the scaling multiply, the add) and one backward
(the multiply's gradient). On CPU those passes are memory-bound and, on the bench's
Qwen2-VL, cost about a tenth of a training step (the MLP's 2048-wide gate/up outputs).
``torch.addmm`` folds both into the matmul that produces ``B(A(x))``; its backward scales
only the small ``r``-wide products. Same math; the float results agree to rounding
(scaling multiplies the same products, tested against PEFT's forward and gradients).

Only plain LoRA layers in their usual state are rerouted: one active adapter, not merged,
adapters enabled, no DoRA or other variant, no mixed-adapter batch, base output in the
adapter's dtype, no bias on B (dropout is applied as PEFT does). Anything else (and every call with extra arguments) goes
through PEFT's own ``forward``. Nothing is saved differently: the instances keep their
parameters; only their ``forward`` attribute changes, for this process.

Example:
    >>> fuse_lora(model)  # doctest: +SKIP
    56
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn
# Function-level imports: peft's LoRA layer class loads only when adapters are fused.


def fuse_lora(model: nn.Module) -> int:
    """Reroute every PEFT ``lora.Linear`` in ``model`` through :func:`_fused_forward`;
    returns how many were rerouted (0 without PEFT or LoRA layers)."""
    try:
        from peft.tuners.lora.layer import Linear as LoraLinear
    except ImportError:  # pragma: no cover - PEFT is a dependency
        return 0
    count = 0
    for module in model.modules():
        if type(module) is LoraLinear and isinstance(module.base_layer, nn.Linear):
            module.forward = types.MethodType(_fused_forward, module)
            count += 1
    return count


def _plain(layer: Any) -> str | None:
    """The active adapter when ``layer`` is in the state the fused path covers, else None."""
    if layer.disable_adapters or layer.merged or len(layer.active_adapters) != 1:
        return None
    name = layer.active_adapters[0]
    if name not in layer.lora_A or name in getattr(layer, "lora_variant", {}) or layer.use_dora.get(name, False):
        return None
    if layer.lora_B[name].bias is not None:
        return None
    return name


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    name = _plain(self) if not args and not kwargs else None
    if name is None:
        return type(self).forward(self, x, *args, **kwargs)
    result = self.base_layer(x)
    lora_a, lora_b = self.lora_A[name], self.lora_B[name]
    if result.dtype != lora_b.weight.dtype or x.dtype != lora_a.weight.dtype:
        return type(self).forward(self, x)
    down = lora_a(self.lora_dropout[name](x))
    out = torch.addmm(result.reshape(-1, result.shape[-1]), down.reshape(-1, down.shape[-1]), lora_b.weight.t(),
                      alpha=self.scaling[name])
    return out.view(result.shape)
