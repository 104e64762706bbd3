"""Exact match after light normalisation: strip surrounding whitespace, then case-fold.

Why: the simplest check of a short answer, with no rule that could hide a real error
(no punctuation or article removal: use ``vqa_accuracy`` for that). Close to VLMEvalKit's
``process_line(method='accuracy')`` (``strip().lower()``); we use ``str.casefold`` instead
of ``lower`` so that e.g. ``"Straße"`` equals ``"STRASSE"``. Max over answers.

Example:
    >>> exact_score("  Paris ", ["paris", "Lyon"])
    1.0
"""

from __future__ import annotations

from .base import PerSample, Summary, mean


def normalise(text: str) -> str:
    """The comparison key: ``text.strip().casefold()``."""
    return text.strip().casefold()


def exact_score(prediction: str, answers: list[str]) -> float:
    """1.0 if the normalised prediction equals any normalised answer, else 0.0."""
    pred = normalise(prediction)
    return 1.0 if any(pred == normalise(a) for a in answers) else 0.0


def compute(records: list[dict], names: tuple[str, ...]) -> tuple[Summary, PerSample]:
    """Family function: ``{"exact_match": mean}`` and per-sample 0/1."""
    scores = [exact_score(r["prediction"], r["answers"]) for r in records]
    return {"exact_match": mean(scores)}, [{"exact_match": s} for s in scores]
