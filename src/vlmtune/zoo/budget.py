"""How many steps of the zoo recipe fit a time budget (``vlmtune zoo build --minutes``).

Why its own module: timing steps on this machine is a concern apart from the recipe; it
makes a build depend on the machine's speed, so it is printed and recorded, and the
shipped recipe never uses it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

# The recipe's types stay in vlmtune.zoo.build, which imports this module: ``cfg`` is a stage's
# RunConfig (build.run_config), ``plan`` a build.BuildPlan.


def steps_for_budget(cfg: Any, train_jsonl: Path, batch_size: int, minutes: float) -> int:
    """Optimizer steps (all stages) that fit ``minutes`` of training, from the median of
    5 timed steps of ``cfg``'s model at ``batch_size`` (the first stage's).

    Why: CPUs differ by 10x; a time budget is what a user can reason about. The result
    is printed and recorded, since it makes the build depend on the machine's speed.
    """
    import torch

    from vlmtune.data.collate import Collator
    from vlmtune.model.methods import prepare
    from vlmtune.train.loop import load_split, token_loss_sum

    cfg.data.max_samples = 8 * batch_size
    model, processor, family = prepare(cfg)
    data = load_split(cfg, str(train_jsonl), processor, family, model.config)
    collate = Collator(processor, cfg.data.max_length)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
    times = []
    for k in range(6):
        start = time.perf_counter()
        batch = collate([data[i % len(data)] for i in range(k * batch_size, (k + 1) * batch_size)])
        token_loss_sum(model, batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    per_step = sorted(times[1:])[2]  # median: other processes may share the cores
    return int(minutes * 60 / per_step)


def fit_budget(plan: Any, total_steps: int) -> Any:
    """Shrink every stage in proportion so they add up to at most ``total_steps``.

    Example:
        >>> from vlmtune.zoo.build import BuildPlan, Stage
        >>> fit_budget(BuildPlan(stages=(Stage(100, 1e-3), Stage(300, 1e-4))), 200).stages[1].steps
        150
    """
    scale = min(1.0, total_steps / plan.total_steps)
    return replace(plan, stages=tuple(replace(s, steps=max(1, int(s.steps * scale))) for s in plan.stages))
