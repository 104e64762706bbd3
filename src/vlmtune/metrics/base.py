"""What every metric family shares: the :class:`Metric` record, record checks, means.

Why: ``score()`` runs any mix of metrics over the same records, so every family takes the
same input (a list of record dicts) and returns the same shapes (a summary dict and one
dict per record). Families that compute several metrics in one pass (BLEU-1..4 share one
tokenisation, IoU gives mean IoU and acc@0.5) register one ``compute`` under several names
and are called once per :func:`~vlmtune.metrics.score` call.

A record is ``{"id", "prediction": str, "answers": list[str], "options"?: list[str],
"question"?: str}``.

Example:
    >>> m = Metric("exact_match", "exact", lambda recs, names: ({"exact_match": 1.0}, [{}]))
    >>> m([{"id": 1, "prediction": "a", "answers": ["a"]}])[0]
    {'exact_match': 1.0}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InputError, VlmtuneError

Summary = dict[str, float]
PerSample = list[dict[str, float]]
FamilyFn = Callable[[list[dict], tuple[str, ...]], tuple[Summary, PerSample]]


class MissingDependencyError(VlmtuneError):
    """An optional dependency (pycocoevalcap, Java) that a requested metric needs is absent."""


@dataclass(frozen=True)
class Metric:
    """One named metric; ``family`` groups metrics computed together by ``compute``.

    ``compute(records, names)`` returns ``(summary, per_sample)`` for the requested
    ``names`` of its family (always a subset of the names registered with it).
    """

    name: str
    family: str
    compute: FamilyFn
    description: str = ""

    def __call__(self, records: list[dict]) -> tuple[Summary, PerSample]:
        """Score ``records`` with this metric alone (checks the records first)."""
        check_records(records)
        return self.compute(records, (self.name,))


def record_label(record: dict, index: int) -> str:
    """``record <id>`` for messages, falling back to the position when there is no id."""
    return f"record {record.get('id', f'#{index}')!s}"


def check_records(records: Sequence[dict]) -> None:
    """Raise :class:`InputError` unless every record has a str prediction and str answers.

    Why: a metric fed ``None`` or a bare string as ``answers`` would silently score
    characters instead of answers.
    """
    if not isinstance(records, Sequence) or isinstance(records, (str, bytes)):
        raise InputError("records: must be a list of dicts")
    if not records:
        raise InputError("records: nothing to score (empty list)")
    for i, rec in enumerate(records):
        where = record_label(rec, i) if isinstance(rec, dict) else f"record #{i}"
        if not isinstance(rec, dict):
            raise InputError(f"{where}: must be a dict, got {type(rec).__name__}")
        if not isinstance(rec.get("prediction"), str):
            raise InputError(f"{where}: prediction must be a string", field="prediction")
        answers = rec.get("answers")
        if (not isinstance(answers, list) or not answers
                or not all(isinstance(a, str) for a in answers)):
            raise InputError(f"{where}: answers must be a non-empty list of strings",
                             field="answers")
        options = rec.get("options")
        if options is not None and not isinstance(options, list):
            raise InputError(f"{where}: options must be a list", field="options")


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean as a plain float (``values`` is never empty here)."""
    return float(sum(values)) / len(values)


def select(summary: Summary, per_sample: PerSample, keys: Sequence[str]
           ) -> tuple[Summary, PerSample]:
    """Keep only ``keys`` (those present) in a family's summary and per-sample dicts."""
    keep = [k for k in summary if k in keys]
    return ({k: summary[k] for k in keep},
            [{k: row[k] for k in row if k in keys} for row in per_sample])


def best_over_gold(record: dict, index: int, parse: Callable[[str], Any], similarity: Callable[[Any, Any], float],
                   what: str) -> tuple[float, bool]:
    """(best similarity of the parsed prediction over the parsed gold answers, prediction parsed).

    An unparseable prediction scores 0; an unparseable gold answer raises InputError naming the
    record and ``what`` the answer should be (e.g. ``"valid box [x1, y1, x2, y2]"``).
    """
    gold = []
    for answer in record["answers"]:
        parsed = parse(answer)
        if parsed is None:
            raise InputError(f"{record_label(record, index)}: gold answer {answer[:60]!r} is not a {what}",
                             field="answers")
        gold.append(parsed)
    pred = parse(record["prediction"])
    return (0.0, False) if pred is None else (max(similarity(pred, g) for g in gold), True)
