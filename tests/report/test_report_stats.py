"""The noise definition: standard errors of means and of paired/unpaired differences."""

from __future__ import annotations

import math

from vlmtune.report.stats import Estimate, beyond_noise, difference, mean_se


def test_binary_scores_give_the_binomial_standard_error():
    values = [1.0] * 30 + [0.0] * 70
    est = mean_se(values)
    assert est.value == 0.3 and est.n == 100
    assert math.isclose(est.se, math.sqrt(0.3 * 0.7 / 99))


def test_single_item_has_unknown_error_and_is_never_beyond_noise():
    assert mean_se([0.5]).se is None
    assert not beyond_noise(difference({"a": 1.0}, {"a": 0.0}))
    assert not beyond_noise(Estimate(float("nan"), 0.1, 3))


def test_paired_difference_removes_shared_item_difficulty():
    a = {f"i{k}": k / 10 + 0.05 for k in range(10)}
    b = {f"i{k}": k / 10 for k in range(10)}
    paired = difference(a, b)
    assert math.isclose(paired.value, 0.05) and paired.se < 1e-12 and beyond_noise(paired)
    unpaired = difference(a, {f"j{k}": v for k, v in enumerate(b.values())})
    assert math.isclose(unpaired.value, 0.05) and unpaired.se > 0.1 and not beyond_noise(unpaired)


def test_reported_values_override_the_per_sample_mean():
    d = difference({"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 0.0}, a_value=0.7, b_value=0.2)
    assert math.isclose(d.value, 0.5) and d.se is not None
