"""How much of a training step the vision tower costs: wall time, saved activations, parameters.

Why: "is the vision encoder the bottleneck?" has a cost side. Training the vision tower
(LoRA on it, or fully) makes every step run its backward and keep its activations; with
many image tokens the tower can dominate a step. The training loop measures this on a
few early steps only (:data:`WINDOW`, 0-based steps 1-4 = steps 2-5: step 1 pays one-off
warm-up costs), so the hooks cost nothing on the other steps: they are attached in
:meth:`VisionShare.begin` and removed in :meth:`VisionShare.end`.

What is measured, on the module(s) at the family's vision prefix (``model.visual``,
``model.vision_tower``...; for Qwen-VL this module contains the projector, the merger):

* forward: a forward pre-hook and a forward hook (``time.perf_counter``);
* backward, when any of its parameters trains: from the moment the gradient reaches the
  tower's output (a tensor hook) to the last gradient accumulated into one of its
  trainable parameters (``register_post_accumulate_grad_hook``);
* activations: bytes the tower saves for backward (``saved_tensors_hooks`` around its
  forward, weights excluded), against the bytes the whole model's forward saves (the
  largest micro-batch of the step; the loss outside the model is not counted); a frozen
  tower saves none, which is the point of freezing it; with gradient checkpointing only
  what the checkpointed blocks keep is seen;
* ``time_fraction`` = (tower forward + backward) / step wall time, averaged over the
  measured steps; ``param_fraction`` = the tower's parameters / all parameters.

Example:
    >>> share = VisionShare(model, family, total_steps=20)   # doctest: +SKIP
    >>> share.begin(step); ...; share.end(step)              # doctest: +SKIP
    >>> share.result()["time_fraction"]                     # doctest: +SKIP
    0.31
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

WINDOW = range(1, 5)  # 0-based training steps measured (steps 2-5)


def base_model(model: nn.Module) -> nn.Module:
    """The transformers model under PEFT / DDP wrappers (their module names differ)."""
    model = getattr(model, "module", model)  # DDP
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def vision_modules(model: nn.Module, family: Any) -> list[nn.Module]:
    """The modules at the family's vision prefixes (outermost ones only)."""
    root = base_model(model)
    found = []
    for prefix in sorted(family.prefixes("vision"), key=len):
        if any(prefix.startswith(p + ".") for p in family.prefixes("vision") if p != prefix):
            continue
        try:
            found.append(root.get_submodule(prefix))
        except AttributeError:
            continue
    return found


def _params(modules: list[nn.Module]) -> list[nn.Parameter]:
    """Unique parameters, skipping PEFT's frozen ``original_module`` duplicates."""
    seen, out = set(), []
    for module in modules:
        for name, p in module.named_parameters():
            if ".original_module." in f".{name}" or id(p) in seen:
                continue
            seen.add(id(p))
            out.append(p)
    return out


def _tensors(value: Any) -> list[torch.Tensor]:
    """Tensors inside a module output (tensor, tuple, dict or ModelOutput)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


class VisionShare:
    """Per-step hooks on the vision tower; :meth:`result` is what ``resources.json`` records."""

    def __init__(self, model: nn.Module, family: Any, total_steps: int, window: range = WINDOW) -> None:
        self.model = model
        self.modules = vision_modules(model, family)
        self.window = window if total_steps > window.start else range(0, 1)
        self._vision_params = _params(self.modules)
        all_params = _params([base_model(model)])
        self._weights = {p.data_ptr() for p in all_params}
        self.param_fraction = (sum(p.numel() for p in self._vision_params)
                               / max(sum(p.numel() for p in all_params), 1))
        self.trains = any(p.requires_grad for p in self._vision_params)
        self.steps: list[dict[str, float]] = []
        self._handles: list[Any] = []
        self._contexts: list[Any] = []

    # ---- step boundaries (called by the training loop) ----------------------------------
    def begin(self, step: int) -> None:
        """Attach the hooks if ``step`` (0-based) is measured."""
        if step not in self.window or not self.modules:
            return
        self._cur = {"forward_s": 0.0, "backward_s": 0.0, "vision_bytes": 0, "total_bytes": 0}
        self._bw: list[float] | None = None
        self._fwd = {"vision_bytes": 0, "total_bytes": 0}
        self._seen: set[int] = set()
        self._t0 = time.perf_counter()
        root = getattr(self.model, "module", self.model)
        self._handles.append(root.register_forward_pre_hook(self._model_pre))
        self._handles.append(root.register_forward_hook(self._model_post))
        for module in self.modules:
            self._handles.append(module.register_forward_pre_hook(self._vision_pre))
            self._handles.append(module.register_forward_hook(self._vision_post))
        for p in self._vision_params:
            if p.requires_grad:
                self._handles.append(p.register_post_accumulate_grad_hook(self._grad_done))

    def end(self, step: int) -> None:
        """Detach the hooks and keep the step's numbers."""
        if not self._handles:
            return
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        while self._contexts:
            self._pop()
        self._close_backward()
        self._cur["step_s"] = time.perf_counter() - self._t0
        self._cur["step"] = step + 1
        self.steps.append(self._cur)

    def result(self) -> dict[str, Any] | None:
        """Averages over the measured steps (None when no step was measured, e.g. a resume
        that started after the window)."""
        if not self.steps:
            return None
        n = len(self.steps)
        mean = {k: sum(s[k] for s in self.steps) / n
                for k in ("forward_s", "backward_s", "step_s", "vision_bytes", "total_bytes")}
        return {"time_fraction": round((mean["forward_s"] + mean["backward_s"]) / max(mean["step_s"], 1e-12), 4),
                "activation_bytes": int(mean["vision_bytes"]),
                "activation_fraction": round(mean["vision_bytes"] / mean["total_bytes"], 4)
                if mean["total_bytes"] else 0.0,
                "param_fraction": round(self.param_fraction, 4), "trains": self.trains,
                "forward_s": round(mean["forward_s"], 6), "backward_s": round(mean["backward_s"], 6),
                "step_s": round(mean["step_s"], 6), "steps": [s["step"] for s in self.steps]}

    # ---- hooks -------------------------------------------------------------------------
    def _model_pre(self, *_: Any) -> None:
        """A micro-batch's forward starts: its saved activations are counted afresh."""
        self._fwd = {"vision_bytes": 0, "total_bytes": 0}
        self._seen = set()
        self._push(vision=False)

    def _model_post(self, *_: Any) -> None:
        """Micro-batches run one after another: the step keeps the largest one's bytes."""
        self._pop()
        for key, value in self._fwd.items():
            self._cur[key] = max(self._cur[key], value)

    def _push(self, vision: bool) -> None:
        ctx = torch.autograd.graph.saved_tensors_hooks(lambda t: self._pack(t, vision), lambda t: t)
        ctx.__enter__()
        self._contexts.append(ctx)

    def _pop(self) -> None:
        if self._contexts:
            self._contexts.pop().__exit__(None, None, None)

    def _pack(self, tensor: torch.Tensor, vision: bool) -> torch.Tensor:
        """Count a tensor saved for backward once (weights and repeats excluded)."""
        try:
            ptr = tensor.untyped_storage().data_ptr()
        except (RuntimeError, NotImplementedError):  # tensor subclasses without storage
            return tensor
        if ptr not in self._weights and ptr not in self._seen:
            self._seen.add(ptr)
            size = tensor.untyped_storage().nbytes()
            self._fwd["total_bytes"] += size
            if vision:
                self._fwd["vision_bytes"] += size
        return tensor

    def _vision_pre(self, module: nn.Module, args: Any) -> None:
        self._close_backward()  # a new micro-batch: the previous backward is over
        self._push(vision=True)
        self._f0 = time.perf_counter()

    def _vision_post(self, module: nn.Module, args: Any, output: Any) -> None:
        self._cur["forward_s"] += time.perf_counter() - self._f0
        self._pop()
        for t in _tensors(output):
            if t.requires_grad:
                t.register_hook(self._grad_arrives)

    def _grad_arrives(self, grad: torch.Tensor) -> None:
        now = time.perf_counter()
        if self._bw is None:
            self._bw = [now, now]
        self._bw[0] = min(self._bw[0], now)

    def _grad_done(self, param: torch.Tensor) -> None:
        if self._bw is not None:
            self._bw[1] = time.perf_counter()

    def _close_backward(self) -> None:
        if getattr(self, "_bw", None) is not None:
            self._cur["backward_s"] += max(self._bw[1] - self._bw[0], 0.0)
            self._bw = None
