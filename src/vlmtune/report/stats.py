"""Noise: how big a difference between two variants must be before the report believes it.

Why: test sets for a quick comparison are small (tens to hundreds of items), so a 0.03
difference in accuracy is often chance. The report never calls one variant better
without checking the difference against its standard error.

Definition (documented in the report itself):

* a variant's score is a mean of per-sample scores; its standard error is
  ``sd / sqrt(n)`` (sample sd, ``ddof=1``); for 0/1 scores (accuracy, format
  compliance) this is the binomial standard error ``sqrt(p (1 - p) / (n - 1))``;
* a difference between two variants evaluated on the same items is *paired*: its
  standard error is that of the per-item differences ``a_i - b_i``, which removes
  the items' shared difficulty; on different items the two errors add in quadrature;
* a difference is *beyond noise* when ``|difference| > 2 standard errors`` (about 95%
  two-sided); with fewer than 2 items the error is unknown and nothing is beyond noise.

Corpus-level metrics without per-sample scores (CIDEr over a corpus) have no error here,
and the report says so rather than guessing.

Example:
    >>> d = difference({"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0}, dict.fromkeys("abcd", 0.0))
    >>> d.value, d.se, beyond_noise(d)
    (0.75, 0.25, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z = 2.0  # standard errors a difference must exceed


@dataclass(frozen=True)
class Estimate:
    """A mean (or a difference of means) with its standard error (``None`` = unknown)."""

    value: float
    se: float | None
    n: int

    @property
    def noise(self) -> float | None:
        """Half-width of the noise band, ``Z * se``."""
        return None if self.se is None else Z * self.se


def mean_se(values: list[float]) -> Estimate:
    """Mean and standard error of per-sample scores."""
    n = len(values)
    if n == 0:
        return Estimate(float("nan"), None, 0)
    mean = sum(values) / n
    if n < 2:
        return Estimate(mean, None, n)
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return Estimate(mean, math.sqrt(var / n), n)


def difference(a: dict[str, float], b: dict[str, float], *, a_value: float | None = None,
               b_value: float | None = None) -> Estimate:
    """``a - b`` from per-sample scores keyed by item id, paired when they cover the same items.

    ``a_value``/``b_value`` (the reported summary scores) set the difference's value when
    given, so the verdict quotes the same numbers as the table; the error always comes from
    the per-sample scores.
    """
    shared = sorted(set(a) & set(b))
    if shared and len(shared) == len(a) == len(b):
        est = mean_se([a[k] - b[k] for k in shared])
    else:
        ea, eb = mean_se(list(a.values())), mean_se(list(b.values()))
        se = None if ea.se is None or eb.se is None else math.hypot(ea.se, eb.se)
        est = Estimate(ea.value - eb.value, se, min(ea.n, eb.n))
    if a_value is not None and b_value is not None:
        est = Estimate(a_value - b_value, est.se, est.n)
    return est


def beyond_noise(d: Estimate) -> bool:
    """Whether a difference exceeds ``Z`` standard errors (never when the error is unknown)."""
    if d.se is None or math.isnan(d.value):
        return False
    return abs(d.value) > Z * d.se
