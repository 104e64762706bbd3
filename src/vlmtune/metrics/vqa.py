"""VQAv2 accuracy: ``min(#humans who gave the answer / 3, 1)``, averaged over leave-one-out subsets.

Why: VQAv2 has 10 human answers per question; an answer given by 3 or more people is
fully right, fewer gives partial credit. The official script averages that score over
the 10 subsets of 9 answers (leave one human out), which is what leaderboards report.

For ``n`` answers (usually 10) and prediction ``p``, after :func:`normalize_answer` of
all of them (see ``vqa_normalize.py``)::

    acc = mean over i of min(1, #{j != i : answers[j] == p} / 3)

So a prediction matching 1 human scores 0.3, 2 humans 0.6, 3 humans 0.9, 4+ humans 1.0
(of 10). With a single answer the score is always 0 (no other human is left to agree):
use ``exact_match`` for single-answer data.
Matched: ``vqav2_process_results`` of lmms-eval 0.7.3 (``tasks/vqav2/utils.py``), which
always normalises. The official ``vqaEval.py`` skips normalisation when all answers are
identical strings; see docs/metrics.md.

Example:
    >>> vqa_score("Two", ["2"] * 3 + ["3"] * 7)
    0.9
"""

from __future__ import annotations

import math

from .base import PerSample, Summary, mean
from .vqa_normalize import normalize_answer


def vqa_score(prediction: str, answers: list[str]) -> float:
    """VQA accuracy of one prediction against its human answers."""
    pred = normalize_answer(prediction)
    gold = [normalize_answer(a) for a in answers]
    matches = sum(1 for g in gold if g == pred)
    # Leaving out answer i removes one match exactly when answer i itself matches.
    per_subset = [min(1.0, (matches - (g == pred)) / 3) for g in gold]
    return math.fsum(per_subset) / len(per_subset)


def compute(records: list[dict], names: tuple[str, ...]) -> tuple[Summary, PerSample]:
    """Family function: ``{"vqa_accuracy": mean}`` and per-sample scores."""
    scores = [vqa_score(r["prediction"], r["answers"]) for r in records]
    return {"vqa_accuracy": mean(scores)}, [{"vqa_accuracy": s} for s in scores]
