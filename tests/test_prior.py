"""The constant-answer prior (vlmtune.evaluate.prior): the constants, and their scores through the
evaluator, checked against values computed here independently (torchvision's box_iou)."""

from __future__ import annotations

import json
import statistics

import pytest
import torch
from torchvision.ops import box_iou

from vlmtune.data.schema import Sample
from vlmtune.evaluate.prior import constant_answers, rule_of, score_prior


def s(task, answer, i=0):
    return Sample(id=f"{task}-{i}", images=[], messages=[], task=task, answers=[answer])


def test_box_tasks_get_the_median_box_in_the_training_style():
    ints = [s("grounding", b, i) for i, b in enumerate(["[0, 0, 10, 10]", "[2, 2, 20, 12]", "[4, 0, 12, 14]",
                                                        "[6, 1, 30, 9]"])]
    # medians of (0,2,4,6), (0,2,0,1), (10,20,12,30), (10,12,14,9): 3, 0.5, 16, 11 -> rounded
    assert constant_answers(ints) == {"grounding": f"[{round(3.0)}, {round(0.5)}, 16, 11]"}
    floats = [s("detection", "[0.1, 0.2, 0.5, 0.6]", 0), s("detection", "[0.3, 0.2, 0.7, 0.9]", 1),
              s("detection", "(0.2, 0.1), (0.4, 0.5)", 2)]
    assert constant_answers(floats) == {"detection": "[0.2, 0.2, 0.5, 0.6]"}
    assert rule_of("grounding", "[1, 2, 3, 4]") == "the median training box"


def test_other_tasks_get_the_most_frequent_answer_first_seen_on_ties():
    rows = [s("vqa", a, i) for i, a in enumerate(["blue", "red", "red", "blue", "green"])]
    rows += [s("mc", a, 10 + i) for i, a in enumerate(["C", "A", "C"])]
    rows.append(Sample(id="x", images=[], messages=[], task=None, answers=["yes"]))
    assert constant_answers(rows) == {"vqa": "blue", "mc": "C", "default": "yes"}
    assert rule_of("vqa", "blue") == "the most frequent training answer"


def test_scores_use_the_evaluators_metrics():
    from vlmtune.config import build_config

    cfg = build_config({"name": "prior", "model": {"path": "vlmtune/tiny-shapes"},
                        "eval": {"metrics": {"grounding": ["iou"], "vqa": ["exact_match"]}}})
    records = [{"id": "g0", "task": "grounding", "prediction": "x", "answers": ["[0, 0, 10, 10]"], "options": None},
               {"id": "g1", "task": "grounding", "prediction": "x", "answers": ["[20, 20, 30, 40]"], "options": None},
               {"id": "v0", "task": "vqa", "prediction": "x", "answers": ["red"], "options": None},
               {"id": "v1", "task": "vqa", "prediction": "x", "answers": ["blue"], "options": None},
               {"id": "t0", "task": "text", "prediction": "x", "answers": ["cat"], "options": None}]
    prior = score_prior(records, {"grounding": "[2, 0, 12, 12]", "vqa": "red"}, cfg)
    expected = box_iou(torch.tensor([[2.0, 0, 12, 12]]), torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 40]]))[0]
    assert prior["grounding"]["iou"] == pytest.approx(expected.mean().item())
    assert [r["prior_scores"]["iou"] for r in records[:2]] == pytest.approx(expected.tolist())
    assert prior["grounding"]["answer"] == "[2, 0, 12, 12]" and prior["vqa"]["rule"].startswith("the most")
    assert prior["vqa"]["exact_match"] == 0.5 and [r["prior_scores"]["exact_match"] for r in records[2:4]] == [1, 0]
    assert "text" not in prior and "prior_scores" not in records[4]
    assert all(r["prediction"] == "x" for r in records)  # the model's predictions are untouched


def test_evaluate_records_the_prior_of_the_training_set(tiny_factory, run_config, shapes_data, tmp_path):
    from vlmtune.evaluate.run import evaluate

    model = tiny_factory("qwen2_vl")
    cfg = run_config(model, train_file="train_grounding.jsonl",
                     eval={"test": str(shapes_data / "test_grounding.jsonl"), "max_new_tokens": 2})
    result = evaluate(cfg, out=tmp_path / "base")
    train = [json.loads(line)["answers"][0] for line in (shapes_data / "train_grounding.jsonl").open()]
    boxes = [json.loads(a) for a in train]
    median = [round(statistics.median(b[i] for b in boxes)) for i in range(4)]
    assert json.loads(result["prior"]["grounding"]["answer"]) == median
    rows = [json.loads(line) for line in (tmp_path / "base" / "predictions.jsonl").open()]
    gold = torch.tensor([json.loads(r["references"][0]) for r in rows], dtype=torch.float64)
    expected = box_iou(torch.tensor([median], dtype=torch.float64), gold)[0]
    assert result["prior"]["grounding"]["iou"] == pytest.approx(expected.mean().item())
    assert [r["prior_scores"]["iou"] for r in rows] == pytest.approx(expected.tolist())
