"""VQAv2 accuracy and answer normalisation against lmms-eval 0.7.3 (EvalAIAnswerProcessor)."""

import json
from pathlib import Path

import pytest

from vlmtune.metrics import score
from vlmtune.metrics.vqa import vqa_score
from vlmtune.metrics.vqa_normalize import normalize_answer

REF = json.loads((Path(__file__).parent / "reference_values.json").read_text())
VQA = REF["vqa_accuracy"]


@pytest.mark.parametrize("case", VQA["cases"], ids=lambda c: repr(c["prediction"]))
def test_accuracy_matches_lmms_eval(case):
    assert vqa_score(case["prediction"], case["answers"]) == pytest.approx(
        case["lmms_eval"], abs=1e-12)


@pytest.mark.parametrize("case", VQA["normalize"], ids=lambda c: repr(c["text"]))
def test_normalisation_matches_lmms_eval(case):
    # Covers every key of the reference contraction table.
    assert normalize_answer(case["text"]) == case["lmms_eval"]


def test_vlmevalkit_differs_only_on_a_period_after_a_digit():
    # VLMEvalKit's period regex keeps "2." (its look-behind works); the official one strips it.
    differ = [c["prediction"] for c in VQA["cases"]
              if abs(c["lmms_eval"] - c["vlmevalkit"]) > 1e-12]
    assert differ == ["2."]


def test_partial_credit_steps():
    no = ["no"] * 10
    assert [vqa_score("yes", ["yes"] * k + no[k:]) for k in range(5)] == pytest.approx(
        [0.0, 0.3, 0.6, 0.9, 1.0])


def test_many_periods_are_all_stripped():
    # The reference passes re.UNICODE (32) as re.sub's count: only 32 periods go. Not us.
    assert normalize_answer("a" + "." * 40 + "b") == "ab"


def test_score_uses_vqa_key():
    summary, per = score([{"id": 0, "prediction": "Two", "answers": ["2"] * 10}], ["vqa_accuracy"])
    assert summary == {"vqa_accuracy": 1.0} and per == [{"vqa_accuracy": 1.0}]


def test_a_single_answer_always_scores_zero():
    # Leave-one-out leaves no human to agree with: the official formula's consequence.
    assert vqa_score("paris", ["paris"]) == 0.0
