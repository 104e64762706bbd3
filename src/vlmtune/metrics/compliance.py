"""Format compliance: the share of predictions written in the format the task expects.

Why: fine-tuning can break the answer format before it breaks the content (a model
trained on option *texts* stops answering with letters; a grounding model starts to
describe instead of giving boxes). This measures the format alone, independent of
correctness, with the same parsers the metrics use, so "unparseable" means the same here
and in ``iou_unparseable`` / ``mc_no_letter``.

Formats (a task name maps to one of them, see ``TASK_FORMATS``):

* ``letter``: VLMEvalKit's letter extraction (``multiple_choice.letter_from_tokens``)
  finds one of the letters ``A``-``H`` (options unknown here, so no text matching);
* ``box``: :func:`~vlmtune.metrics.boxes.parse_box` finds a valid box;
* ``number``: the whole stripped answer is one number: optional sign, digits with
  optional ``,`` thousands groups, optional decimals, optional exponent, optional ``%``,
  optional final period (``-1,234.5%``, ``3e4``, ``42.``);
* ``voxels``: :func:`~vlmtune.metrics.voxels.parse_voxels` reads a voxel list;
* ``text``: anything non-blank.

Example:
    >>> format_compliance("grounding", ["[1, 2, 3, 4]", "left of the dog"])
    0.5
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..errors import InputError
from .boxes import parse_box
from .multiple_choice import letter_from_tokens
from .voxels import parse_voxels

LETTERS = "ABCDEFGH"
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+|(?=\.\d))(?:\.\d+)?(?:[eE][-+]?\d+)?%?\.?")


def _is_letter(text: str) -> bool:
    return letter_from_tokens(text, LETTERS) not in (None, "Z")


def _is_number(text: str) -> bool:
    return _NUMBER.fullmatch(text.strip()) is not None


FORMATS: dict[str, Callable[[str], bool]] = {
    "letter": _is_letter,
    "box": lambda t: parse_box(t) is not None,
    "number": _is_number,
    "voxels": lambda t: parse_voxels(t) is not None,
    "text": lambda t: bool(t.strip()),
}
TASK_FORMATS = {
    "mc": "letter", "multiple_choice": "letter",
    "grounding": "box", "detection": "box",
    "chartqa": "number", "counting": "number",
    "occupancy": "voxels", "voxel": "voxels",
    "caption": "text", "vqa": "text", "where": "text", "detail": "text", "mc_text": "text", "docvqa": "text", "free text": "text",
    "free_text": "text",
}


def answer_format(task_or_format: str) -> str:
    """The format name for a task or format name; InputError listing the known names."""
    name = TASK_FORMATS.get(task_or_format, task_or_format)
    if name not in FORMATS:
        known = ", ".join(sorted(set(FORMATS) | set(TASK_FORMATS)))
        raise InputError(f"unknown answer format or task {task_or_format!r}; known: {known}")
    return name


def format_compliance(task_or_format: str, predictions: list[str]) -> float:
    """Share (0..1) of ``predictions`` in the expected answer format of a task or format."""
    check = FORMATS[answer_format(task_or_format)]
    if not predictions:
        raise InputError("predictions: nothing to check (empty list)")
    if not all(isinstance(p, str) for p in predictions):
        raise InputError("predictions: must be strings")
    return sum(1 for p in predictions if check(p)) / len(predictions)
