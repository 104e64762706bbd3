"""ChartQA relaxed accuracy: numbers within 5 % relative error, text exact (case-insensitive).

Why: chart-reading answers come from estimated bar heights, so ChartQA (Masry et al. 2022,
following Methani et al. 2020) accepts a number within 5 % of the gold value. Matched:
``relaxed_correctness`` of lmms-eval 0.7.3 (``tasks/chartqa/utils.py``) and of VLMEvalKit
(``vlmeval/dataset/utils/vqa_eval.py``, which also strips the prediction and takes the
max over answers, as we do).

Rules, per answer ``t`` and stripped prediction ``p``:

* a string ending in ``%`` is read as that number / 100 (``"12%"`` -> 0.12); otherwise
  Python ``float()`` (so ``"1,000"`` is text, ``"1e3"`` and ``" 7 "`` are numbers);
* if both are numbers and ``t != 0``: correct iff ``|p - t| / |t| <= 0.05`` (float64;
  exactly 5 % counts);
* otherwise (either is text, or ``t == 0``): ``p.lower() == t.lower()``.

Example:
    >>> relaxed_match("105", "100"), relaxed_match("10.6%", "0.1"), relaxed_match("Yes", "yes")
    (True, False, True)
"""

from __future__ import annotations

from .base import PerSample, Summary, mean

MAX_RELATIVE_CHANGE = 0.05


def _to_float(text: str) -> float | None:
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_match(prediction: str, target: str, tolerance: float = MAX_RELATIVE_CHANGE) -> bool:
    """True if ``prediction`` is within ``tolerance`` relative error of ``target`` (numbers),
    or equal ignoring case (text, or a zero target)."""
    pred_value, target_value = _to_float(prediction), _to_float(target)
    if pred_value is not None and target_value:
        return abs(pred_value - target_value) / abs(target_value) <= tolerance
    return prediction.lower() == target.lower()


def relaxed_score(prediction: str, answers: list[str]) -> float:
    """1.0 if the stripped prediction relaxed-matches any answer, else 0.0."""
    pred = prediction.strip()
    return 1.0 if any(relaxed_match(pred, a) for a in answers) else 0.0


def compute(records: list[dict], names: tuple[str, ...]) -> tuple[Summary, PerSample]:
    """Family function: ``{"relaxed_accuracy": mean}`` and per-sample 0/1."""
    scores = [relaxed_score(r["prediction"], r["answers"]) for r in records]
    return {"relaxed_accuracy": mean(scores)}, [{"relaxed_accuracy": s} for s in scores]
