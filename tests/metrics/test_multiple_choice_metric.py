"""mc_accuracy and letter extraction against VLMEvalKit's can_infer / eval_vanilla."""

import json
from pathlib import Path

import pytest

from vlmtune.errors import InputError
from vlmtune.metrics import score
from vlmtune.metrics.multiple_choice import extract_letter, mc_outcome

REF = json.loads((Path(__file__).parent / "reference_values.json").read_text())


@pytest.mark.parametrize("case", REF["mc_accuracy"], ids=lambda c: repr(c["prediction"]))
def test_extraction_and_hit_match_vlmevalkit(case):
    expected = None if case["can_infer"] in (None, "Z") else case["can_infer"]
    assert extract_letter(case["prediction"], case["options"]) == expected
    hit, no_letter = mc_outcome(case)
    assert hit == case["hit"]
    assert no_letter == (1.0 if expected is None else 0.0)


def test_summary_counts_answers_without_a_letter():
    opts = ["cat", "dog", "cow", "pig"]
    recs = [{"id": i, "prediction": p, "answers": ["B"], "options": opts}
            for i, p in enumerate(["(B)", "b", "B or C", "dog", "A"])]
    summary, per = score(recs, ["mc_accuracy"])
    assert summary == {"mc_accuracy": 0.4, "mc_no_letter": 2}
    assert [r["mc_no_letter"] for r in per] == [0.0, 1.0, 1.0, 0.0, 0.0]


def test_gold_may_be_option_text_or_lowercase_letter():
    opts = ["cat", "dog"]
    assert mc_outcome({"prediction": "B", "answers": ["dog"], "options": opts})[0] == 1.0
    assert mc_outcome({"prediction": "B", "answers": ["b"], "options": opts})[0] == 1.0
    with pytest.raises(InputError, match="neither an option letter"):
        mc_outcome({"id": "q7", "prediction": "B", "answers": ["horse"], "options": opts})


def test_without_options_letters_run_to_d_or_the_gold_letter():
    assert mc_outcome({"prediction": "The answer is D", "answers": ["D"]}) == (1.0, 0.0)
    assert mc_outcome({"prediction": "F", "answers": ["F"]}) == (1.0, 0.0)
    assert mc_outcome({"prediction": "dog", "answers": ["B"]}) == (0.0, 1.0)
