"""Scoring in one place: the metrics of each task (:data:`DEFAULT_METRICS`, ``eval.metrics``),
scoring an evaluation's records (used by ``evaluate.run`` and ``evaluate.prior``), and
``vlmtune score`` for predictions made anywhere (another model, a serving engine).

Input: JSONL, one object per line with ``id``, ``prediction``, ``answers`` (list of
references) and, for multiple choice, ``options`` (option texts lettered A, B, C… in
order); boxes as text ``[x1, y1, x2, y2]``. A bad line is reported by file and line; a
repeated ``id`` (within one ``split``, as in eval's predictions.jsonl) is refused, since
counting an item twice would change the score.

Example:
    >>> score_file(Path("preds.jsonl"), ["anls"])  # doctest: +SKIP
    {'anls': 0.83}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmtune.atomic import write_jsonl
from vlmtune.config import RunConfig
from vlmtune.data.schema import iter_jsonl
from vlmtune.errors import DataError
from vlmtune.metrics import format_compliance, score
from vlmtune.metrics.compliance import TASK_FORMATS

DEFAULT_METRICS = {
    "caption": ["bleu4", "cider", "rouge_l"], "vqa": ["exact_match"], "mc": ["mc_accuracy"],
    "mc_text": ["exact_match"], "grounding": ["iou"], "where": ["exact_match"], "text": ["anls"],
    "detail": ["exact_match"],
    "docvqa": ["anls"],
    "chartqa": ["relaxed_accuracy"], "vqav2": ["vqa_accuracy"], "occupancy": ["voxel_iou"],
}


def metrics_for(task: str, cfg: RunConfig) -> list[str]:
    chosen = cfg.eval.metrics
    if isinstance(chosen, dict):
        return list(chosen.get(task) or DEFAULT_METRICS.get(task, ["exact_match"]))
    return list(chosen) or DEFAULT_METRICS.get(task, ["exact_match"])

def score_records(records: list[dict], cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """Per task: metric summary, format compliance, n. Adds per-sample scores in place."""
    by_task: dict[str, list[dict]] = {}
    for rec in records:
        by_task.setdefault(rec["task"], []).append(rec)
    out: dict[str, dict[str, Any]] = {}
    for task, recs in sorted(by_task.items()):
        inputs = [{k: r[k] for k in ("id", "prediction", "answers", "options") if r.get(k) is not None}
                  for r in recs]
        summary, per_sample = score(inputs, metrics_for(task, cfg))
        fmt = TASK_FORMATS.get(task, "text")
        compliance = format_compliance(fmt, [r["prediction"] for r in recs])
        for rec, scores in zip(recs, per_sample):
            rec["scores"] = scores
            rec["format_ok"] = format_compliance(fmt, [rec["prediction"]]) == 1.0
        out[task] = {"n": len(recs), **summary, "format": fmt, "format_compliance": compliance}
    return out


def read_prediction_file(path: Path) -> list[dict]:
    records, seen = [], {}
    for line_no, rec in iter_jsonl(path, what="predictions file"):
        if not isinstance(rec, dict):
            raise DataError("each line must be a JSON object", file=path, line=line_no)
        if not isinstance(rec.get("prediction"), str):
            raise DataError("must be a string", file=path, line=line_no, field="prediction")
        answers = rec.get("answers", rec.get("references"))
        if isinstance(answers, str):
            answers = [answers]
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise DataError("must be a non-empty list of reference strings", file=path, line=line_no,
                            field="answers")
        rec["answers"] = answers
        rec.setdefault("id", str(line_no))
        key = (rec.get("split"), str(rec["id"]))
        if key in seen:  # scoring an item twice would weigh it twice: refuse rather than guess which
            raise DataError(f"duplicate id {rec['id']!r} (first on line {seen[key]}); each item must appear once",
                            file=path, line=line_no, field="id")
        seen[key] = line_no
        records.append(rec)
    if not records:
        raise DataError("no predictions in file", file=path)
    return records


def score_file(path: Path, metrics: list[str], per_sample: Path | None = None) -> dict:
    records = read_prediction_file(path)
    inputs = [{k: r[k] for k in ("id", "prediction", "answers", "options", "question") if k in r}
              for r in records]
    summary, scores = score(inputs, metrics)
    if per_sample is not None:
        write_jsonl(per_sample, [{"id": r["id"], **s} for r, s in zip(records, scores)])
    return summary
