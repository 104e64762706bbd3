"""The constant-answer prior: what a model scores that ignores the image and the question.

Why: a fine-tune can raise a metric from 0 by learning the answer's *format* alone. On the
shapes world's grounding task, answering the median training box to every question scores
IoU 0.111, more than every fine-tune of the demo, which "raise IoU from 0" to 0.01-0.065. A number
without this floor reads as progress when it is not. The VQA paper (Antol et al., 2015)
reports the same kind of baseline ("prior": the most common training answer); vlmtune
computes it for every task the training set has, with the evaluator's own metrics, so it
has per-item scores and a noise estimate like any variant.

The constant, per task, from the training answers (first reference of each sample):

- box tasks (``grounding``, ``detection``): the per-coordinate median box. Each training box
  has x1 <= x2 and y1 <= y2, so the medians keep that order and form a valid box. Written
  as ``[x1, y1, x2, y2]``, with integers when every training coordinate is one.
- every other task: the most frequent answer (ties: the first seen), as the VQA prior.

Example:
    >>> constant_answers([_s("grounding", "[0, 0, 10, 10]"), _s("grounding", "[2, 2, 20, 12]"),
    ...                   _s("grounding", "[4, 0, 12, 14]"), _s("vqa", "red"), _s("vqa", "red"),
    ...                   _s("vqa", "blue")])
    {'grounding': '[2, 0, 12, 12]', 'vqa': 'red'}
"""

from __future__ import annotations

from collections import Counter
from statistics import median
from typing import Any

from vlmtune.data.schema import Sample
from vlmtune.evaluate.scoring import score_records
from vlmtune.metrics.boxes import parse_box
from vlmtune.metrics.compliance import TASK_FORMATS


def _s(task: str, answer: str) -> Sample:
    """A text-only sample (for examples and tests)."""
    return Sample(id=f"{task}-{answer}", images=[], messages=[], task=task, answers=[answer])


def _median_box(answers: list[str]) -> str | None:
    boxes = [b for b in (parse_box(a) for a in answers) if b is not None]
    if not boxes:
        return None
    corners = [median(b[i] for b in boxes) for i in range(4)]
    integral = all(float(v).is_integer() for b in boxes for v in b)
    if integral:
        return "[" + ", ".join(str(round(v)) for v in corners) + "]"
    return "[" + ", ".join(f"{v:.4g}" for v in corners) + "]"


def constant_answers(train: list[Sample]) -> dict[str, str]:
    """Per task (``default`` for samples without one): the constant answer, see the module doc."""
    answers: dict[str, list[str]] = {}
    for sample in train:
        if sample.answers:
            answers.setdefault(sample.task or "default", []).append(sample.answers[0])
    out: dict[str, str] = {}
    for task, texts in answers.items():
        box = _median_box(texts) if TASK_FORMATS.get(task) == "box" else None
        out[task] = box if box is not None else Counter(texts).most_common(1)[0][0]
    return out


def rule_of(task: str, answer: str) -> str:
    """How the constant of ``task`` was chosen (for the report's wording)."""
    if TASK_FORMATS.get(task) == "box" and parse_box(answer) is not None:
        return "the median training box"
    return "the most frequent training answer"


def score_prior(records: list[dict], answers: dict[str, str], cfg: Any) -> dict[str, dict[str, Any]]:
    """Score the constant answer of each record's task with the evaluator's metrics.

    Returns per task ``{"answer": constant, "rule": how it was chosen, <metric>: value, ...}``, and sets
    ``record["prior_scores"]`` (per-item scores, for the paired noise estimate) in place.
    Tasks the training set lacks are left out.
    """
    mine = [r for r in records if r["task"] in answers]
    copies = [{**r, "prediction": answers[r["task"]]} for r in mine]
    summary = score_records(copies, cfg)
    for rec, copy in zip(mine, copies):
        rec["prior_scores"] = copy["scores"]
    return {task: {"answer": answers[task], "rule": rule_of(task, answers[task]),
                   **{k: v for k, v in part.items() if k not in ("format", "format_compliance")}}
            for task, part in summary.items()}
