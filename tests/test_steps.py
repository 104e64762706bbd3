"""The step plan: every sample once per epoch, the same order on resume, and with
``group_by_length`` micro-batches of similar length (less padding)."""

from __future__ import annotations

import random

from vlmtune.train.steps import StepPlan


def _lengths(n: int) -> tuple[int, ...]:
    rng = random.Random(0)
    return tuple(rng.randint(20, 400) for _ in range(n))


def _epoch(plan: StepPlan, epoch: int) -> list[list[int]]:
    first = epoch * plan.steps_per_epoch
    return [mb for s in range(first, first + plan.steps_per_epoch) for mb in plan.micro_batches(s)]


def _padding(batches: list[list[int]], lengths: tuple[int, ...]) -> int:
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


def test_grouping_covers_every_sample_and_cuts_padding():
    lengths = _lengths(301)
    plain = StepPlan(301, 4, 2, 2.0, None, seed=3)
    grouped = StepPlan(301, 4, 2, 2.0, None, seed=3, lengths=lengths)
    assert plain.total_steps == grouped.total_steps
    for epoch in (0, 1):
        batches = _epoch(grouped, epoch)
        assert sorted(i for b in batches for i in b) == list(range(301))
        assert _padding(batches, lengths) < 0.2 * _padding(_epoch(plain, epoch), lengths)
    assert _epoch(grouped, 0) != _epoch(grouped, 1)  # still shuffled between epochs


def test_grouped_order_is_a_pure_function_of_seed_and_step():
    lengths = _lengths(50)
    a = StepPlan(50, 2, 1, 3.0, None, seed=1, lengths=lengths)
    b = StepPlan(50, 2, 1, 3.0, None, seed=1, lengths=lengths)  # a resumed process
    assert [a.micro_batches(s) for s in range(a.total_steps)] == \
           [b.micro_batches(s) for s in reversed(range(b.total_steps))][::-1]


def test_grouping_splits_global_batches_across_processes():
    lengths = _lengths(40)
    ranks = [StepPlan(40, 2, 1, 1.0, None, seed=0, world=2, rank=r, lengths=lengths) for r in (0, 1)]
    seen = sorted(i for plan in ranks for s in range(plan.total_steps) for b in plan.micro_batches(s) for i in b)
    assert seen == list(range(40))


def test_resume_with_grouping_packing_and_caches_matches_uninterrupted(tiny_factory, run_config,
                                                                      crash_after_checkpoint):
    from safetensors.torch import load_file

    from vlmtune.train import checkpoint as ckpt
    from vlmtune.train.loop import train

    model = tiny_factory("qwen2_vl")
    common = dict(train_file="train_mixed.jsonl", data={"val": None},
                  train={"max_steps": 6, "checkpoint_every": 2, "grad_accum": 2, "lr": 1e-3,
                         "group_by_length": True, "packing": True, "vision_cache": "memory"})
    straight = train(run_config(model, name="straight", **common))

    cfg = run_config(model, name="interrupted", **common)
    with crash_after_checkpoint(4):
        train(cfg)
    resumed = train(cfg, resume=True)
    a = load_file(str(ckpt.latest_checkpoint(straight / "checkpoints") / "trainable.safetensors"))
    b = load_file(str(ckpt.latest_checkpoint(resumed / "checkpoints") / "trainable.safetensors"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
