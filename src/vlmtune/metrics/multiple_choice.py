"""Multiple-choice accuracy with VLMEvalKit's rule-based option extraction (no LLM judge).

Why: a model that answers "The answer is (B)." is right, one that answers "B or C" is not
answering; leaderboards decide this with VLMEvalKit's ``can_infer`` when no judge model
is used (``exact_matching``), so we do the same, and count the answers where no letter
could be extracted (a format-compliance signal: fine-tuning on option *text* makes models
stop answering with letters). Matched: ``vlmeval.utils.matching_util.can_infer`` and
``vlmeval.dataset.utils.multiple_choice.eval_vanilla(model=None)`` of VLMEvalKit at commit
e8e78f05 (2026-08-18; the verbose-answer rule of #1552 is not in a PyPI release).

Extraction of the prediction ``p`` given options lettered ``A, B, …`` in order:

1. letter: if ``p`` contains one of the refusal phrases of VLMEvalKit, the answer is
   ``Z`` (no letter). Otherwise replace each of ``.()[],:;!*#{}`` by a space and split on
   whitespace. If exactly one option letter appears as a whole token (case-sensitive:
   ``b`` is not a letter) and its first occurrence is among the last 4 tokens, that is
   the answer. If no option letter appears and ``Z`` does, the answer is ``Z``. Otherwise
   the first ``answer is X`` / ``correct answer is **X**`` (any case, X in ``A``-``D``) gives X.
2. text: otherwise, if ``len(p) <= 2 * total length of the option texts`` and exactly one
   option text occurs in ``p`` (case-insensitive substring), that option is the answer.
3. otherwise: no letter (``mc_no_letter`` counts 1 and 2's failures and ``Z``).

Gold answers are letters (``"B"``, any case) or an option's text (``mc_text`` samples);
the record is right if the extracted letter is one of them. Without ``options`` the
letters are ``A`` to ``D`` (or up to the highest gold letter) and step 2 is skipped.

Example:
    >>> extract_letter("The answer is (B).", ["cat", "dog"])
    'B'
    >>> extract_letter("B or A", ["cat", "dog"]) is None
    True
"""

from __future__ import annotations

import re
import string

from ..errors import InputError
from .base import PerSample, Summary, mean, record_label

REFUSALS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
            "I'm sorry, but without the image provided", "Cannot determine the answer")
API_FAILURE = "Failed to obtain answer via API"
_SEPARATORS = str.maketrans({c: " " for c in ".()[],:;!*#{}"})
DEFAULT_LETTERS = "ABCD"
# VLMEvalKit's fallback for verbose answers ("The correct answer is **B**. Here's why"), taken
# when the tokens give no letter. As upstream: A-D only, any case, no word boundary after the
# letter (so "the answer is apple" reads as A), first match in the text.
_VERBOSE_ANSWER = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")


def letter_from_tokens(prediction: str, letters: str) -> str | None:
    """Step 1: the option letter written in ``prediction``; ``"Z"`` for none-of-these/refusal.

    Example:
        >>> letter_from_tokens("Answer: C", "ABCD"), letter_from_tokens("c", "ABCD")
        ('C', None)
    """
    if API_FAILURE in prediction:
        return None
    if any(r in prediction for r in REFUSALS):
        return "Z"
    tokens = prediction.translate(_SEPARATORS).split()
    present = [c for c in letters if c in tokens]
    if len(present) == 1 and tokens.index(present[0]) > len(tokens) - 5:
        return present[0]
    if not present and "Z" in tokens:
        return "Z"
    verbose = _VERBOSE_ANSWER.search(prediction)
    if verbose and verbose.group(1).upper() in letters:
        return verbose.group(1).upper()
    return None


def letter_from_text(prediction: str, options: list[str]) -> str | None:
    """Step 2: the letter of the only option whose text occurs in ``prediction``."""
    pred = prediction.lower()
    if len(pred) > 2 * sum(len(o) for o in options):
        return None
    hits = [string.ascii_uppercase[i] for i, o in enumerate(options) if o.lower() in pred]
    return hits[0] if len(hits) == 1 else None


def extract_letter(prediction: str, options: list[str] | None = None,
                   letters: str | None = None) -> str | None:
    """The option letter of ``prediction``, or None when none can be extracted (incl. ``Z``).

    ``letters`` defaults to one per option (``A..``), or ``A..D`` without options.
    """
    if letters is None:
        letters = string.ascii_uppercase[:len(options)] if options else DEFAULT_LETTERS
    found = letter_from_tokens(prediction, letters)
    if found is None and options:
        found = letter_from_text(prediction, options)
    return None if found in (None, "Z") else found


def gold_letters(record: dict, index: int, options: list[str] | None) -> set[str]:
    """Gold answers as letters: a letter itself (any case) or the text of an option."""
    texts = [o.strip().casefold() for o in options or []]
    allowed = string.ascii_uppercase[:len(options)] if options else string.ascii_uppercase
    out = set()
    for answer in record["answers"]:
        a = answer.strip()
        if len(a) == 1 and a.upper() in allowed:
            out.add(a.upper())
        elif a.casefold() in texts:
            out.add(string.ascii_uppercase[texts.index(a.casefold())])
        else:
            raise InputError(f"{record_label(record, index)}: answer {answer!r} is neither an "
                             f"option letter nor an option's text", field="answers")
    return out


def _options(record: dict, index: int) -> list[str] | None:
    options = record.get("options")
    if options is None:
        return None
    if not 1 <= len(options) <= 26:
        raise InputError(f"{record_label(record, index)}: options must have 1 to 26 entries",
                         field="options")
    return [str(o) for o in options]


def mc_outcome(record: dict, index: int = 0) -> tuple[float, float]:
    """(correct 0/1, no-letter 0/1) for one record."""
    options = _options(record, index)
    gold = gold_letters(record, index, options)
    letters = None
    if options is None:
        letters = string.ascii_uppercase[:max(4, *(ord(g) - 64 for g in gold))]
    found = extract_letter(record["prediction"], options, letters)
    return (1.0 if found in gold else 0.0), (1.0 if found is None else 0.0)


def compute(records: list[dict], names: tuple[str, ...]) -> tuple[Summary, PerSample]:
    """Family function: ``{"mc_accuracy": mean, "mc_no_letter": count}`` and per-sample."""
    outcomes = [mc_outcome(r, i) for i, r in enumerate(records)]
    per = [{"mc_accuracy": hit, "mc_no_letter": none} for hit, none in outcomes]
    summary = {"mc_accuracy": mean([h for h, _ in outcomes]),
               "mc_no_letter": int(sum(n for _, n in outcomes))}
    return summary, per
