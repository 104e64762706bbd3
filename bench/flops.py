"""FLOPs of vlmtune's training steps and the CPU's measured fp32 matmul peak (for MFU).

Why measured, not datasheet: on a shared 2-core VM the vendor peak is unknowable (turbo,
AVX-512 licence, neighbours); the best rate of a large fp32 matmul at the bench's thread
count is the ceiling a training step could reach, so MFU = achieved / that.

FLOPs are counted, not estimated from a formula: ``torch.utils.flop_counter`` records every
matmul, convolution and attention the forward *and* backward of real batches run (for LoRA,
the frozen weights' gradients are skipped, and so are their FLOPs). Counting each of the
run's steps would cost a second training run, so ``count`` measures ``k`` steps and scales
by padded tokens (the FLOPs of these short sequences are linear in them to within a few %).

Under contention from other processes both rates (the step's and the matmul's) slow
down, not necessarily alike; ``mfu_cpu`` in the result divides FLOPs by CPU-seconds
instead of wall seconds on both sides (with one thread, a contention-robust companion).

Example:
    >>> matmul_peak(threads=1)["flops_per_s"] > 1e9  # doctest: +SKIP
    True
"""

from __future__ import annotations

import time
from typing import Any


def matmul_peak(*, n: int = 1024, repeats: int = 20) -> dict[str, Any]:
    """Best rate of an ``n x n`` fp32 matmul over ``repeats`` tries (FLOP/s)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        best, best_cpu = min(best, time.perf_counter() - start), min(best_cpu, time.process_time() - cpu)
    return {"flops_per_s": 2 * n**3 / best, "flops_per_cpu_s": 2 * n**3 / max(best_cpu, 1e-9), "matmul_n": n,
            "repeats": repeats, "threads": torch.get_num_threads()}


def padded_tokens(plan: Any, lengths: list[int], max_length: int) -> int:
    """Tokens (pads included) of every micro-batch the plan runs: rows x longest row."""
    total = 0
    for step in range(plan.total_steps):
        for idx in plan.micro_batches(step):
            total += len(idx) * min(max(lengths[i] for i in idx), max_length)
    return total


def count(cfg: Any, *, k: int = 3) -> dict[str, Any]:
    """FLOPs of a whole vlmtune run of ``cfg``: ``k`` real steps counted, scaled by tokens.

    Uses a fresh model prepared exactly as ``vlmtune.train.loop`` prepares it (same adapters,
    same frozen weights), the run's step plan and collator.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vlmtune.data.collate import Collator
    from vlmtune.model.methods import prepare
    from vlmtune.train.steps import StepPlan
    from vlmtune.train.loop import load_split, token_loss_sum

    torch.manual_seed(cfg.train.seed)
    model, processor, family = prepare(cfg)
    model.train()
    data = load_split(cfg, cfg.data.train, processor, family, model.config)
    collate = Collator(processor, cfg.data.max_length)
    t = cfg.train
    plan = StepPlan(len(data), t.batch_size, t.grad_accum, t.epochs, t.max_steps, t.seed)
    lengths = [e.length for e in data.examples]
    counted_flops, counted_tokens = 0, 0
    steps = [round(i * (plan.total_steps - 1) / max(k - 1, 1)) for i in range(k)]  # spread over the run
    for step in sorted(set(steps)):
        for idx in plan.micro_batches(step):
            batch = collate([data[i] for i in idx])
            counter = FlopCounterMode(display=False)
            with counter:
                token_loss_sum(model, batch).backward()
            model.zero_grad(set_to_none=True)
            counted_flops += counter.get_total_flops()
            counted_tokens += int(batch["input_ids"].numel())
    per_token = counted_flops / max(counted_tokens, 1)
    total_tokens = padded_tokens(plan, lengths, cfg.data.max_length)
    return {"flops_total": per_token * total_tokens, "flops_per_step": per_token * total_tokens / plan.total_steps,
            "flops_per_padded_token": per_token, "padded_tokens": total_tokens,
            "counted_steps": sorted(set(steps)), "method": "FlopCounterMode on counted_steps, scaled by padded tokens"}
