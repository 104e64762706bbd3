"""Exact match (strip + casefold) against VLMEvalKit's strip().lower() accuracy."""

import json
from pathlib import Path

import pytest

from vlmtune.metrics.exact import exact_score

REF = json.loads((Path(__file__).parent / "reference_values.json").read_text())


@pytest.mark.parametrize("case", REF["exact_match"], ids=lambda c: repr(c["prediction"]))
def test_exact_matches_vlmevalkit(case):
    assert exact_score(case["prediction"], case["answers"]) == case["vlmevalkit"]


def test_casefold_is_our_deliberate_difference():
    # VLMEvalKit's lower() keeps "ß"; casefold() makes it "ss".
    assert exact_score("Straße", ["STRASSE"]) == 1.0
    assert exact_score("paris.", ["paris"]) == 0.0  # no punctuation removal
