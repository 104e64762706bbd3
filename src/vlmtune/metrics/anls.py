"""ANLS (Average Normalized Levenshtein Similarity), as lmms-eval and VLMEvalKit compute it.

Why: DocVQA / InfographicVQA report ANLS; a number that differs from the leaderboards'
by a normalisation detail is worse than no number. Matched (see docs/metrics.md):
``lmms_eval.api.metrics.anls`` (lmms-eval 0.7.3) and
``vlmeval.dataset.utils.vqa_eval.anls_compute`` + ``hit_calculate`` (VLMEvalKit).

Per answer ``g`` and prediction ``p``:

* both are stripped, lower-cased and their whitespace runs collapsed to one space;
* ``d`` = Levenshtein distance of the normalised strings;
* ``length = max(len(g.upper()), len(p.upper()))`` on the *raw* strings (the references'
  quirk: surrounding or repeated whitespace in the raw text lengthens the denominator);
* similarity ``1 - d / length`` (``1`` when both are empty).

The record's score is the best similarity over its answers, set to 0 when below 0.5
(exactly 0.5 is kept).

Example:
    >>> anls_score("Hello", ["hallo", "bye"])
    0.8
"""

from __future__ import annotations

from .base import PerSample, Summary, mean

THRESHOLD = 0.5


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert, delete, substitute; cost 1 each) between ``a`` and ``b``.

    Example:
        >>> levenshtein("kitten", "sitting")
        3
    """
    if len(a) > len(b):
        a, b = b, a
    previous = list(range(len(a) + 1))
    for j, cb in enumerate(b, start=1):
        current = [j]
        for i, ca in enumerate(a, start=1):
            cost = 0 if ca == cb else 1
            current.append(min(previous[i] + 1, current[i - 1] + 1, previous[i - 1] + cost))
        previous = current
    return previous[-1]


def _normalise(text: str) -> str:
    return " ".join(text.strip().lower().split())


def anls_score(prediction: str, answers: list[str], threshold: float = THRESHOLD) -> float:
    """ANLS of one prediction against its answers (max over answers, zeroed below threshold).

    Example:
        >>> anls_score("ab", ["ax"])  # distance 1 of length 2: exactly the threshold
        0.5
    """
    pred = _normalise(prediction)
    best = 0.0
    for answer in answers:
        length = max(len(answer.upper()), len(prediction.upper()))
        similarity = 1.0 if length == 0 else 1.0 - levenshtein(_normalise(answer), pred) / length
        best = max(best, similarity)
    return best if best >= threshold else 0.0


def compute(records: list[dict], names: tuple[str, ...]) -> tuple[Summary, PerSample]:
    """Family function for the registry: ``{"anls": mean}`` and per-sample ``anls``."""
    scores = [anls_score(r["prediction"], r["answers"]) for r in records]
    return {"anls": mean(scores)}, [{"anls": s} for s in scores]
