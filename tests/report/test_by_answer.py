"""The report's score-by-answer table: per reference answer, each variant's mean score."""

from __future__ import annotations

from dataclasses import dataclass

from vlmtune.report.by_answer import answer_rows
from vlmtune.report.summary import GridView
from vlmtune.report.verdict import Entry


@dataclass
class _Run:  # the two things answer_rows reads of a RunData
    name: str
    predictions: list[dict]

    def rows(self, task: str, general: bool = False) -> list[dict]:
        return self.predictions


def _view(answers: list[str], right: dict[str, set[int]]) -> GridView:
    """Items i0.. with reference ``answers[i]``; variant ``name`` scores 1 on the items in ``right[name]``."""
    preds = [{"id": f"i{i}", "references": [a]} for i, a in enumerate(answers)]
    runs = [_Run(name, preds) for name in right]
    entries = [Entry(name, name, "untuned" if name == "baseline" else "lora",
                     scores={f"i{i}": float(i in hits) for i in range(len(answers))}) for name, hits in right.items()]
    return GridView(runs=runs, baseline=runs[0], tasks=["detail"], metric={"detail": "exact_match"},
                    general_task=None, general_metric=None, entries={"detail": entries})


def test_a_gain_from_one_answer_shows_per_answer():
    answers = ["circle"] * 6 + ["Square "] * 10  # references are folded: case and spaces
    squares = set(range(6, 16))
    header, rows = answer_rows(_view(answers, {"baseline": {0, 1, 6}, "tuned": {0, 1} | squares}))
    assert header == ["task", "answer", "items", "baseline", "tuned"]
    assert rows == [["detail (exact match)", "square", "10", "0.1", "1"],
                    ["detail (exact match)", "circle", "6", "0.333", "0.333"]]


def test_no_table_for_free_text_or_one_answer_or_thin_answers():
    many = [f"word{i}" for i in range(9)] * 5  # 9 distinct answers: free text, not classes
    assert answer_rows(_view(many, {"baseline": {0}, "tuned": {1}})) == ([], [])
    assert answer_rows(_view(["yes"] * 10, {"baseline": {0}, "tuned": {1}})) == ([], [])
    assert answer_rows(_view(["yes"] * 10 + ["no"] * 4, {"baseline": {0}, "tuned": {1}})) == ([], [])
