"""``vlmtune score``: score predictions made anywhere (another model, a serving engine).

Input: JSONL, one object per line with ``id``, ``prediction``, ``answers`` (list of
references) and, for multiple choice, ``options`` (option texts lettered A, B, C… in
order); boxes as text ``[x1, y1, x2, y2]``. A bad line is reported by file and line.

Example:
    >>> score_file(Path("preds.jsonl"), ["anls"])  # doctest: +SKIP
    {'anls': 0.83}
"""

from __future__ import annotations

from pathlib import Path

from vlmtune.atomic import write_jsonl
from vlmtune.data.schema import iter_jsonl
from vlmtune.errors import DataError


def read_prediction_file(path: Path) -> list[dict]:
    records = []
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
        records.append(rec)
    if not records:
        raise DataError("no predictions in file", file=path)
    return records


def score_file(path: Path, metrics: list[str], per_sample: Path | None = None) -> dict:
    from vlmtune.metrics import score

    records = read_prediction_file(path)
    inputs = [{k: r[k] for k in ("id", "prediction", "answers", "options", "question") if k in r}
              for r in records]
    summary, scores = score(inputs, metrics)
    if per_sample is not None:
        write_jsonl(per_sample, [{"id": r["id"], **s} for r, s in zip(records, scores)])
    return summary
