"""The report's "score by answer" section: for a task whose test items share a few reference
answers (a shape kind, yes/no, left/right), each variant's mean score on the items of each answer.

Why: a fine-tune can gain by guessing the frequent answer more often rather than by seeing
better; the overall score cannot tell the two apart, the per-answer scores can (an answer
nobody learned stays at its untuned score while another rises). VLMEvalKit and lmms-eval
report per-category accuracy for the same reason. Shown only when the test set has 2 to
``MAX_ANSWERS`` distinct first references and every answer has at least ``MIN_ITEMS`` items.

Example:
    >>> groups({"a": "circle", "b": "square", "c": "circle"})
    {'circle': ['a', 'c'], 'square': ['b']}
"""

from __future__ import annotations

from vlmtune.report.summary import GridView, display
from vlmtune.report.table import DASH
from vlmtune.report.verdict import num

MAX_ANSWERS = 8
MIN_ITEMS = 5


def groups(answer_of: dict[str, str]) -> dict[str, list[str]]:
    """Item ids by reference answer, answers in order of first appearance."""
    out: dict[str, list[str]] = {}
    for item, answer in answer_of.items():
        out.setdefault(answer, []).append(item)
    return out


def _answers(view: GridView, task: str) -> dict[str, str]:
    """Item id -> first reference answer (case and surrounding space folded), from the first
    run that has predictions for ``task``."""
    for run in ([view.baseline] if view.baseline else []) + list(view.runs):
        rows = run.rows(task)
        if rows:
            return {str(r.get("id")): str((r.get("references") or [""])[0]).strip().lower() for r in rows}
    return {}


def answer_rows(view: GridView) -> tuple[list[str], list[list[str]]]:
    """Header and rows: task, answer, items, then each variant's mean score on those items."""
    entries_of = {t: [e for e in view.entries.get(t, []) if e.scores] for t in view.tasks}
    scored_names = {e.name for es in entries_of.values() for e in es}
    names = [r.name for r in view.runs if r.name in scored_names]
    rows = []
    for task in view.tasks:
        by = groups(_answers(view, task))
        if not 2 <= len(by) <= MAX_ANSWERS or min(len(ids) for ids in by.values()) < MIN_ITEMS:
            continue
        scored = {e.name: e for e in entries_of[task]}
        metric = display(view.metric[task])
        for answer, ids in sorted(by.items(), key=lambda kv: -len(kv[1])):
            row = [f"{task} ({metric})", answer, str(len(ids))]
            for name in names:
                e = scored.get(name)
                got = [e.scores[i] for i in ids if e is not None and i in e.scores]
                row.append(num(sum(got) / len(got)) if got else DASH)
            rows.append(row)
    return (["task", "answer", "items", *names], rows) if rows else ([], [])
