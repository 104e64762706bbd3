"""The registry and score(): names, errors, grouping and alignment."""

import pytest

from vlmtune.errors import InputError
from vlmtune.metrics import METRICS, get_metric, score

EXPECTED = {"anls", "mc_accuracy", "bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l",
            "cider", "iou", "voxel_iou", "relaxed_accuracy", "vqa_accuracy", "exact_match"}


def test_all_metrics_are_registered():
    assert set(METRICS) == EXPECTED
    assert all(m.name == n for n, m in METRICS.items())


def test_unknown_metric_lists_known_names():
    with pytest.raises(InputError) as err:
        get_metric("bleu")
    assert "unknown metric 'bleu'" in str(err.value) and "bleu4" in str(err.value)
    with pytest.raises(InputError):
        score([{"id": 0, "prediction": "a", "answers": ["a"]}], ["anls", "nope"])


def test_score_merges_families_and_keeps_record_order():
    recs = [{"id": "a", "prediction": "Paris", "answers": ["paris"] * 4},
            {"id": "b", "prediction": "Lyon", "answers": ["paris"] * 4}]
    summary, per = score(recs, ["exact_match", "anls", "vqa_accuracy"])
    assert summary == {"exact_match": 0.5, "anls": 0.5, "vqa_accuracy": 0.5}
    assert per[0] == {"exact_match": 1.0, "anls": 1.0, "vqa_accuracy": 1.0}
    assert per[1] == {"exact_match": 0.0, "anls": 0.0, "vqa_accuracy": 0.0}


def test_a_family_is_computed_once(monkeypatch):
    calls = []
    metric = METRICS["bleu1"]

    def fake(records, names):
        calls.append(names)
        return {n: 0.0 for n in names}, [{n: 0.0 for n in names} for _ in records]

    for name in ("bleu1", "bleu4", "cider"):
        monkeypatch.setitem(METRICS, name, type(metric)(name, "caption", fake))
    summary, _ = score([{"id": 0, "prediction": "a", "answers": ["a"]}],
                       ["bleu1", "cider", "bleu4"])
    assert calls == [("bleu1", "cider", "bleu4")]
    assert list(summary) == ["bleu1", "cider", "bleu4"]


@pytest.mark.parametrize("records, message", [
    ([], "nothing to score"),
    ([{"id": 0, "prediction": None, "answers": ["a"]}], "prediction must be a string"),
    ([{"id": 0, "prediction": "a", "answers": "a"}], "answers must be a non-empty list"),
    ([{"id": 0, "prediction": "a", "answers": []}], "answers must be a non-empty list"),
    (["a"], "must be a dict"),
])
def test_malformed_records_are_input_errors(records, message):
    with pytest.raises(InputError, match=message):
        score(records, ["exact_match"])


def test_metric_object_is_callable():
    summary, per = get_metric("exact_match")([{"id": 0, "prediction": "A ", "answers": ["a"]}])
    assert summary == {"exact_match": 1.0}
