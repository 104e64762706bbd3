"""Measure what training adds to a CPU process's memory, to check the memory plan.

Why: ``vlmtune train`` records the process's peak RSS, which includes the interpreter,
torch's code pages and the loaded model; the plan predicts what training *adds*. Here:

1. load the model as ``vlmtune.model.methods.prepare`` does and collate one real batch;
2. warm up with one whole step (forward, backward, clipping, an AdamW step with a
   throwaway optimizer): it faults in the code pages of every kernel and Python's lazy
   imports, a fixed cost of the process that is not training state (a warm-up without
   clipping and AdamW left ~1.2 MiB of libtorch code pages in the measured steps), then
   drop gradients and optimizer and return freed memory to the OS (``malloc_trim``);
3. record the baseline RSS and reset the kernel's peak (``/proc/self/clear_refs`` = 5,
   Linux >= 4.0), then run ``steps`` full steps (forward, backward, clip, AdamW step,
   ``zero_grad(set_to_none=True)``) exactly like ``vlmtune.train.loop``;
4. delta = peak RSS (``VmHWM``) - baseline. Run with ``MALLOC_MMAP_THRESHOLD_=4096`` for
   RSS to follow live allocations (scripts/memory_plan_check.py); optionally (``track_in_use``)
   also the peak of malloc's in-use bytes, which needs no allocator setting.

The matching prediction is the plan's peak minus its weights (already in the baseline).

Example:
    >>> out = measure_training_delta(cfg, steps=2)  # doctest: +SKIP
    >>> out["delta"] > 0                             # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import random
import re
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vlmtune.config import RunConfig
# Function-level imports: the measurement needs the training stack; planning does not (CLI start-
# up).

WORDS = ("red", "blue", "green", "circle", "square", "triangle", "left", "right", "above", "below",
         "small", "large", "shape", "image", "one", "two", "three", "yes", "no")


def peak_rss() -> int:
    """The kernel's high-water RSS of this process (bytes), ``VmHWM``."""
    text = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)\s+kB", text).group(1)) * 1024


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def release_freed_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


_mallinfo2: Any = None


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def malloc_in_use() -> int:
    """Bytes malloc has handed out and not got back (glibc >= 2.33 ``mallinfo2``: heap
    chunks in use, ``uordblks``, plus mmapped chunks, ``hblkhd``; all arenas). Unlike RSS it
    does not count freed chunks the allocator keeps. Raises OSError without glibc 2.33."""
    global _mallinfo2
    if _mallinfo2 is None:
        try:
            fn = ctypes.CDLL("libc.so.6").mallinfo2
        except AttributeError as err:
            raise OSError("mallinfo2 needs glibc >= 2.33") from err
        fn.restype = _MallInfo2
        _mallinfo2 = fn
    info = _mallinfo2()
    return int(info.uordblks + info.hblkhd)


class InUsePeak(TorchDispatchMode):
    """Samples :func:`malloc_in_use` after every ATen op (forward and backward: autograd
    runs CPU backward ops on this thread, through this mode) and keeps the maximum.

    A peak inside one kernel (its scratch) is missed; op outputs are not, since the sample
    follows each op before its inputs can be freed."""

    def __init__(self) -> None:
        super().__init__()
        self.peak = 0

    def start(self) -> int:
        self.peak = now = malloc_in_use()
        return now

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, malloc_in_use())
        return out


def write_long_samples(root: Path, n: int, words: int, image_size: int = 64, seed: int = 0) -> Path:
    """A small JSONL set with one image and ``words``-word answers, so activations (not
    allocator noise) dominate what training adds. Returns the JSONL path."""
    from PIL import Image

    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for k in range(n):
        Image.new("RGB", (image_size, image_size), tuple(rng.randrange(256) for _ in range(3))).save(
            root / f"img{k}.png")
        answer = " ".join(rng.choice(WORDS) for _ in range(words))
        lines.append(json.dumps({"id": f"m{k}", "images": [f"img{k}.png"], "task": "caption", "answers": [answer],
                                 "messages": [{"role": "user", "content": [{"type": "image"},
                                                                           {"type": "text", "text": "Describe."}]},
                                              {"role": "assistant", "content": answer}]}))
    path = root / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _step(model: Any, batch: dict[str, torch.Tensor]) -> None:
    from vlmtune.train.loop import n_target_tokens, token_loss_sum

    n = n_target_tokens(batch)
    loss = token_loss_sum(model, dict(batch)) / max(n, 1)
    loss.backward()


def _train_step(model: Any, batch: dict[str, torch.Tensor], params: list, optimizer: Any,
                max_grad_norm: float | None) -> None:
    """One step as ``vlmtune.train.loop`` runs it: forward, backward, clip, AdamW, free gradients."""
    _step(model, batch)
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def measure_training_delta(cfg: RunConfig, steps: int = 3, track_in_use: bool = False) -> dict[str, Any]:
    """Peak RSS added by ``steps`` training steps on the first ``cfg.train.batch_size``
    samples of ``cfg.data.train``, plus the batch geometry the plan needs. With
    ``track_in_use``, also ``in_use_delta``: the peak of malloc's in-use bytes
    (:class:`InUsePeak`) above the baseline, which does not depend on what the allocator
    keeps resident (the sampling itself adds Python objects, so measure RSS without it)."""
    from vlmtune.data.collate import Collator
    from vlmtune.model.methods import prepare
    from vlmtune.train.loop import load_split, n_target_tokens

    torch.manual_seed(cfg.train.seed)
    model, processor, family = prepare(cfg, device=torch.device("cpu"))
    data = load_split(cfg, cfg.data.train, processor, family, model.config)
    batch = Collator(processor, cfg.data.max_length)([data[i] for i in range(min(cfg.train.batch_size, len(data)))])
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    # warm-up: one whole step with a throwaway optimizer, so the code pages of every kernel
    # (forward, backward, clipping, AdamW), Python's lazy imports and oneDNN's primitive cache
    # are in the baseline; they are a fixed cost of the process, not training state
    warm = torch.optim.AdamW(params, lr=1e-5)
    _train_step(model, batch, params, warm, cfg.train.max_grad_norm)
    del warm
    release_freed_memory()
    reset = reset_peak_rss()
    baseline = _current_rss()
    in_use = InUsePeak() if track_in_use else None
    in_use_base = in_use.start() if in_use else 0
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    with in_use if in_use else contextlib.nullcontext():
        for _ in range(steps):
            _train_step(model, batch, params, optimizer, cfg.train.max_grad_norm)
    peak = peak_rss()
    extra = {"in_use_delta": in_use.peak - in_use_base} if in_use else {}
    return {"baseline": baseline, "peak": peak, "delta": peak - baseline, "peak_was_reset": reset, **extra,
            "batch": int(batch["input_ids"].shape[0]),
            "seq": int(batch["input_ids"].shape[1]),
            "answer_tokens": -(-n_target_tokens(batch) // int(batch["input_ids"].shape[0])),
            **dict(zip(("images", "image_side"), _image_geometry(batch, _patch_size(model))))}


def _patch_size(model: Any) -> int:
    vision = getattr(model.config, "vision_config", None)
    return int(getattr(vision, "patch_size", 14) or 14)


def _current_rss() -> int:
    from vlmtune.train.measure import current_rss

    return current_rss()


def _image_geometry(batch: dict[str, torch.Tensor], patch: int) -> tuple[int, int | None]:
    """(images per sample, image side in pixels) of the collated batch: Qwen's
    ``image_grid_thw`` (patches per image), else the side of ``pixel_values``."""
    grid = batch.get("image_grid_thw")
    if grid is not None and len(grid):
        patches = int(grid.prod(dim=-1).float().mean())
        return max(len(grid) // batch["input_ids"].shape[0], 1), int(round(patches ** 0.5)) * patch
    pixels = batch.get("pixel_values")
    if pixels is None or pixels.dim() < 4:
        return 0, None
    images = pixels.shape[1] if pixels.dim() == 5 else max(pixels.shape[0] // batch["input_ids"].shape[0], 1)
    return int(images), int(pixels.shape[-1])


def predicted_vs_measured(cfg: RunConfig, steps: int = 3, track_in_use: bool = False) -> dict[str, Any]:
    """Measure (above) and predict the same step with the plan; ``error`` = predicted /
    measured - 1. The plan's weights are subtracted: they are in the baseline."""
    from vlmtune.diagnose.memory_plan import Workload, model_shapes, plan_method

    measured = measure_training_delta(cfg, steps, track_in_use)
    shapes = model_shapes(cfg.model.path)
    m = cfg.method
    method = {"qlora": f"qlora{m.bits}"}.get(m.kind, m.kind)
    images, side = measured["images"], measured["image_side"]
    w = Workload(seq=measured["seq"], batch=measured["batch"], images=images, image_size=side,
                 answer_tokens=measured["answer_tokens"],
                 weight_bytes=4, lora_r=m.r, lora_dropout=m.dropout, double_quant=m.double_quant,
                 gradient_checkpointing=cfg.train.gradient_checkpointing, device="cpu")
    plan = plan_method(shapes, w, "lora" if m.kind == "dora" else method)
    predicted = plan.peak - plan.weights
    out = {**measured, "method": method, "predicted": predicted, "plan": plan.to_dict(),
           "error": predicted / max(measured["delta"], 1) - 1}
    if "in_use_delta" in measured:
        out["in_use_error"] = predicted / max(measured["in_use_delta"], 1) - 1
    return out
