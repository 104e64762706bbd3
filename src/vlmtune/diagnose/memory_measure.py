"""Measure what training adds to a CPU process's memory, to check the memory plan.

Why: ``vlmtune train`` records the process's peak RSS, which includes the interpreter,
torch's code pages and the loaded model; the plan predicts what training *adds*. Here:

1. load the model as ``vlmtune.methods.prepare`` does and collate one real batch;
2. warm up with one forward + backward (loads backward kernels, oneDNN code and the
   allocator's arenas, a fixed cost of tens of MiB that is not training state), then
   drop the gradients and return freed memory to the OS (``malloc_trim``);
3. record the baseline RSS and reset the kernel's peak (``/proc/self/clear_refs`` = 5,
   Linux >= 4.0), then run ``steps`` full steps (forward, backward, clip, AdamW step,
   ``zero_grad(set_to_none=True)``) exactly like ``vlmtune.train``;
4. delta = peak RSS (``VmHWM``) - baseline.

The matching prediction is the plan's peak minus its weights (already in the baseline).

Example:
    >>> out = measure_training_delta(cfg, steps=2)  # doctest: +SKIP
    >>> out["delta"] > 0                             # doctest: +SKIP
    True
"""

from __future__ import annotations

import ctypes
import gc
import json
import random
import re
from pathlib import Path
from typing import Any

import torch

from vlmtune.config import RunConfig

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
    from vlmtune.train import n_target_tokens, token_loss_sum

    n = n_target_tokens(batch)
    loss = token_loss_sum(model, dict(batch)) / max(n, 1)
    loss.backward()


def measure_training_delta(cfg: RunConfig, steps: int = 3) -> dict[str, Any]:
    """Peak RSS added by ``steps`` training steps on the first ``cfg.train.batch_size``
    samples of ``cfg.data.train``, plus the batch geometry the plan needs."""
    from vlmtune.data.collate import Collator
    from vlmtune.methods import prepare
    from vlmtune.train import load_split

    torch.manual_seed(cfg.train.seed)
    model, processor, family = prepare(cfg, device=torch.device("cpu"))
    data = load_split(cfg, cfg.data.train, processor, family, model.config)
    batch = Collator(processor, cfg.data.max_length)([data[i] for i in range(min(cfg.train.batch_size, len(data)))])
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    _step(model, batch)  # warm-up: kernels and arenas, not training state
    model.zero_grad(set_to_none=True)
    release_freed_memory()
    reset = reset_peak_rss()
    baseline = _current_rss()
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    for _ in range(steps):
        _step(model, batch)
        if cfg.train.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, cfg.train.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    peak = peak_rss()
    return {"baseline": baseline, "peak": peak, "delta": peak - baseline, "peak_was_reset": reset,
            "batch": int(batch["input_ids"].shape[0]),
            "seq": int(batch["input_ids"].shape[1]),
            **dict(zip(("images", "image_side"), _image_geometry(batch, _patch_size(model))))}


def _patch_size(model: Any) -> int:
    vision = getattr(model.config, "vision_config", None)
    return int(getattr(vision, "patch_size", 14) or 14)


def _current_rss() -> int:
    from vlmtune.measure import current_rss

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


def predicted_vs_measured(cfg: RunConfig, steps: int = 3) -> dict[str, Any]:
    """Measure (above) and predict the same step with the plan; ``error`` = predicted /
    measured - 1. The plan's weights are subtracted: they are in the baseline."""
    from vlmtune.diagnose.memory_plan import Workload, model_shapes, plan_method

    measured = measure_training_delta(cfg, steps)
    shapes = model_shapes(cfg.model.path)
    m = cfg.method
    method = {"qlora": f"qlora{m.bits}"}.get(m.kind, m.kind)
    images, side = measured["images"], measured["image_side"]
    w = Workload(seq=measured["seq"], batch=measured["batch"], images=images, image_size=side,
                 weight_bytes=4, lora_r=m.r, lora_dropout=m.dropout, double_quant=m.double_quant,
                 gradient_checkpointing=cfg.train.gradient_checkpointing, device="cpu")
    plan = plan_method(shapes, w, "lora" if m.kind == "dora" else method)
    predicted = plan.peak - plan.weights
    return {**measured, "method": method, "predicted": predicted, "plan": plan.to_dict(),
            "error": predicted / max(measured["delta"], 1) - 1}
