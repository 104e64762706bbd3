"""Mixing general-ability data into task training: the forgetting control.

Fine-tuning on one task erodes what the model could do before; replaying a share of
general data during training is the usual remedy. ``data.mix_general: 0.2`` makes 20% of
the training samples general ones (drawn from ``data.general`` with a fixed seed; with
replacement only when the general set is too small), so the report's forgetting delta can
be read across a sweep of ratios.

Example:
    >>> mixed = mix_general(task, general, 0.2, seed=0)  # doctest: +SKIP
    >>> len(mixed) - len(task)   # 20% of the result is general data
    25
"""

from __future__ import annotations

import random

from vlmtune.data.schema import Sample


def n_general(n_task: int, ratio: float) -> int:
    """General samples to add so that they make up ``ratio`` of the mix."""
    return round(ratio * n_task / (1.0 - ratio)) if ratio > 0 else 0


def mix_general(task: list[Sample], general: list[Sample], ratio: float, *, seed: int) -> list[Sample]:
    k = n_general(len(task), ratio)
    if k == 0 or not general:
        return list(task)
    rng = random.Random(f"mix:{seed}")
    picked = rng.sample(general, k) if k <= len(general) else [rng.choice(general) for _ in range(k)]
    taken = {s.id for s in task}
    out = list(task)
    for i, sample in enumerate(picked):
        if sample.id in taken:  # ids key predictions and must stay unique
            sample = Sample(**{**sample.__dict__, "id": f"{sample.id}#general{i}"})
        taken.add(sample.id)
        out.append(sample)
    return out
