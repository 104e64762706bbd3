"""Divergence is a failure, not a finished run.

Why: a learning rate far too high does not always give a NaN. With clipping, ``lr=1e6``
saturates every weight within two steps; the gradient is then exactly zero, the loss sits
flat at ln(vocab), and the loop would end "done" with a useless adapter. The loop asks
this guard after each step; any of these stops the run with exit status 2:

- the step's loss is not finite;
- the gradient norm is not finite (checked before the optimizer applies it);
- the gradient norm is exactly 0 for ``ZERO_GRAD_STEPS`` steps in a row while the loss has
  not fallen (by more than ``FALL_TOLERANCE``) below where that streak began: nothing can
  learn any more;
- a trainable weight is not finite (checked at each checkpoint and before the final save).

Example:
    >>> guard = DivergenceGuard(lr=1e6)
    >>> guard.after_step(1, loss=6.93, grad_norm=0.0)
    >>> guard.after_step(2, loss=6.93, grad_norm=0.0)
    >>> guard.after_step(3, loss=6.93, grad_norm=0.0)
    Traceback (most recent call last):
    ...
    vlmtune.train.divergence.Diverged: training diverged at step 3: gradient norm exactly 0 for 3 steps while the loss did not fall (6.93 -> 6.93); lower train.lr (now 1e+06)
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch

from vlmtune.errors import VlmtuneError

ZERO_GRAD_STEPS = 3
FALL_TOLERANCE = 1e-3  # relative: a saturated model's loss wobbles in the 7th digit across batches


class Diverged(VlmtuneError):
    """The run diverged at ``step``; ``reason`` is a short tag for ``failed.json``."""

    def __init__(self, step: int, reason: str, message: str):
        self.step, self.reason = step, reason
        super().__init__(message)


class DivergenceGuard:
    def __init__(self, lr: float, zero_grad_steps: int = ZERO_GRAD_STEPS):
        self.lr, self.zero_grad_steps = lr, zero_grad_steps
        self._streak: list[float] = []  # losses of the current run of zero-gradient steps

    def _fail(self, step: int, reason: str, what: str) -> None:
        raise Diverged(step, reason, f"training diverged at step {step}: {what}; lower train.lr "
                                     f"(now {self.lr:g})")

    def check_loss(self, step: int, loss: float) -> None:
        if not math.isfinite(loss):
            self._fail(step, "loss", f"loss is {loss} at step {step}")

    def after_step(self, step: int, *, loss: float, grad_norm: float | None) -> None:
        """``grad_norm`` before clipping (None: not known, e.g. DeepSpeed's first step)."""
        self.check_loss(step, loss)
        if grad_norm is None:
            return
        if not math.isfinite(grad_norm):
            self._fail(step, "grad_norm", f"gradient norm is {grad_norm}")
        if grad_norm != 0.0:
            self._streak = []
            return
        self._streak.append(loss)
        start = self._streak[0]
        fell = min(self._streak) < start - FALL_TOLERANCE * abs(start)
        if len(self._streak) >= self.zero_grad_steps and not fell:
            self._fail(step, "zero_grad", f"gradient norm exactly 0 for {len(self._streak)} steps while the "
                                          f"loss did not fall ({start:.4g} -> {loss:.4g})")

    def check_weights(self, step: int, params: Iterable[torch.Tensor], accelerator: Any = None) -> None:
        """Every trainable weight finite (summed over processes, so all of them stop together)."""
        bad = sum(int(not torch.isfinite(p.detach()).all()) for p in params)
        if accelerator is not None and accelerator.num_processes > 1:
            bad = int(accelerator.reduce(torch.tensor(bad, device=accelerator.device), "sum"))
        if bad:
            self._fail(step, "weights", f"{bad} trainable weight tensor(s) hold NaN or infinity")
