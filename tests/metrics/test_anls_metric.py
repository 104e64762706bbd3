"""ANLS against lmms-eval 0.7.3 and VLMEvalKit (commit e8e78f05) on edge cases."""

import json
from pathlib import Path

import pytest

from vlmtune.metrics import score
from vlmtune.metrics.anls import anls_score, levenshtein

REF = json.loads((Path(__file__).parent / "reference_values.json").read_text())


@pytest.mark.parametrize("case", REF["anls"], ids=lambda c: repr(c["prediction"]))
def test_anls_matches_references(case):
    got = anls_score(case["prediction"], case["answers"])
    assert got == pytest.approx(case["lmms_eval"], abs=1e-12)
    assert got == pytest.approx(case["vlmevalkit"], abs=1e-12)


def test_threshold_keeps_exactly_half_and_zeroes_below():
    assert anls_score("ab", ["ax"]) == 0.5          # distance 1 / length 2
    assert anls_score("abc", ["axy"]) == 0.0        # 1/3 similarity < 0.5


def test_levenshtein_basics():
    assert levenshtein("", "abc") == 3
    assert levenshtein("flaw", "lawn") == 2
    assert levenshtein("same", "same") == 0


def test_score_summary_is_mean_over_records():
    recs = [{"id": 1, "prediction": "hello", "answers": ["hello"]},
            {"id": 2, "prediction": "", "answers": ["x"]}]
    summary, per = score(recs, ["anls"])
    assert summary == {"anls": 0.5}
    assert per == [{"anls": 1.0}, {"anls": 0.0}]
