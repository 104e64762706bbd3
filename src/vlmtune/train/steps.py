"""Which samples each optimizer step sees: a pure function of (seed, epoch, step).

Because the order is recomputed rather than iterated, resuming at step ``k`` sees exactly
the batches an uninterrupted run would have seen, and several processes each take their
slice of the same global batch. With ``lengths`` (``train.group_by_length``) samples of
similar length share micro-batches, to cut padding; the order is still deterministic.

Example:
    >>> plan = StepPlan(n=10, batch_size=2, grad_accum=2, epochs=1.0, max_steps=None, seed=0)
    >>> plan.total_steps, len(plan.micro_batches(0))
    (3, 2)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import torch

GROUP_WINDOW = 50  # global batches sorted together by group_by_length (as Hugging Face's megabatches)


@dataclass(frozen=True)
class StepPlan:
    n: int
    batch_size: int  # per process
    grad_accum: int
    epochs: float
    max_steps: int | None
    seed: int
    world: int = 1
    rank: int = 0
    lengths: tuple[int, ...] | None = None  # token length per sample: group_by_length

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.n / self.global_batch)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.batches_per_epoch / self.grad_accum)

    @property
    def total_steps(self) -> int:
        if self.max_steps is not None:
            return self.max_steps
        return max(1, math.ceil(self.epochs * self.steps_per_epoch))

    def epoch_of(self, step: int) -> float:
        return step / self.steps_per_epoch

    @lru_cache(maxsize=4)
    def _order(self, epoch: int) -> list[int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.n, generator=gen).tolist()
        return order if self.lengths is None else self._grouped(order, gen)

    def _grouped(self, order: list[int], gen: torch.Generator) -> list[int]:
        """Length grouping: within windows of ``GROUP_WINDOW`` global batches of the shuffled
        order, sort by length (longest first), then shuffle the order of the full batches
        (the last, partial batch stays last). Padding shrinks, every sample is still seen
        once per epoch, and the order stays a pure function of (seed, epoch)."""
        window = self.global_batch * GROUP_WINDOW
        lengths = self.lengths
        grouped: list[int] = []
        for start in range(0, len(order), window):
            grouped += sorted(order[start:start + window], key=lambda i: -lengths[i])
        full = len(grouped) // self.global_batch
        batches = [grouped[b * self.global_batch:(b + 1) * self.global_batch] for b in range(full)]
        shuffled = [batches[i] for i in torch.randperm(full, generator=gen).tolist()]
        return [i for batch in shuffled for i in batch] + grouped[full * self.global_batch:]

    def micro_batches(self, step: int) -> list[list[int]]:
        """This process's sample indices for each micro-batch of optimizer step ``step``."""
        epoch, k = divmod(step, self.steps_per_epoch)
        order = self._order(epoch)
        out = []
        for b in range(k * self.grad_accum, min((k + 1) * self.grad_accum, self.batches_per_epoch)):
            global_idx = order[b * self.global_batch:(b + 1) * self.global_batch]
            mine = global_idx[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
            if mine:
                out.append(mine)
        return out

    def padding(self, step: int) -> list[list[int]]:
        """Micro-batches this process runs with every label masked, so that it runs as many
        forward/backward passes as process 0 (FSDP gathers weights in each pass: every
        process must take part). They are process 0's samples and add nothing to the loss."""
        first = replace(self, rank=0).micro_batches(step)
        return first[len(self.micro_batches(step)):]
