"""Box IoU for grounding answers given as text: mean IoU, acc@0.5, unparseable count.

Why: grounding is judged by overlap, and a model that stops writing boxes must show up
as such (``iou_unparseable``), not vanish from the mean. IoU follows torchvision's
``box_iou`` convention (torchvision 0.29): corners ``x1, y1, x2, y2`` in the same
units as the gold box, area ``(x2 - x1) * (y2 - y1)`` (no +1 pixel), IoU =
intersection / union. ``acc@0.5`` counts IoU >= 0.5 (exactly 0.5 counts).

Box text formats, tried in this order (numbers: ``12``, ``-3``, ``0.25``, ``1e2``):

1. the first ``[x1, y1, x2, y2]`` anywhere in the text (commas and/or spaces between);
2. the first ``(x1, y1), (x2, y2)`` anywhere (comma between the pairs optional);
3. the whole answer is 4 numbers separated by commas and/or spaces, optionally in
   parentheses, optionally ending with a period: ``12 40 56 84``, ``(12, 40, 56, 84).``

A box with ``x2 < x1`` or ``y2 < y1`` or a non-finite number is invalid. A prediction
with no box in these formats, or an invalid one, scores IoU 0 and counts in
``iou_unparseable``; an invalid gold box raises :class:`~vlmtune.errors.InputError`.
These find the box in every family's text style: InternVL
``<ref>cat</ref><box>[[x1, y1, x2, y2]]</box>`` (1), Qwen2-VL
``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` (2), Qwen2.5-VL/Qwen3-VL
``{"bbox_2d": [x1, y1, x2, y2]}`` (1). Coordinates are not rescaled: gold and prediction
must share a scale (write the gold in the model's convention with
``vlmtune data convert --boxes FROM:TO``, :mod:`vlmtune.data.boxes`); IoU is the same in
any scale applied to both boxes.
With several gold boxes the best IoU counts. Two zero-area boxes score 0 (torchvision
returns NaN for 0/0).

Example:
    >>> parse_box("The cat is at [10, 10, 20, 20].")
    (10.0, 10.0, 20.0, 20.0)
    >>> box_iou((0, 0, 2, 1), (0, 0, 1, 1))
    0.5
"""

from __future__ import annotations

import math
import re

from .base import PerSample, Summary, best_over_gold, mean

Box = tuple[float, float, float, float]
_N = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
_SEP = r"(?:\s*,\s*|\s+)"
_BRACKETS = re.compile(rf"\[\s*{_N}{_SEP}{_N}{_SEP}{_N}{_SEP}{_N}\s*\]")
_PAIRS = re.compile(rf"\(\s*{_N}{_SEP}{_N}\s*\)\s*,?\s*\(\s*{_N}{_SEP}{_N}\s*\)")
_PLAIN = re.compile(rf"\(?\s*{_N}{_SEP}{_N}{_SEP}{_N}{_SEP}{_N}\s*\)?\s*\.?")
THRESHOLD = 0.5


def _valid(numbers: tuple[str, ...]) -> Box | None:
    x1, y1, x2, y2 = (float(n) for n in numbers)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 < x1 or y2 < y1:
        return None
    return (x1, y1, x2, y2)


def parse_box(text: str) -> Box | None:
    """The first box written in ``text`` (formats above), or None if none or invalid."""
    for pattern in (_BRACKETS, _PAIRS):
        match = pattern.search(text)
        if match:
            return _valid(match.groups())
    match = _PLAIN.fullmatch(text.strip())
    return _valid(match.groups()) if match else None


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``xyxy`` boxes (torchvision ``box_iou``, float64)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(width, 0.0) * max(height, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compute(records: list[dict], names: tuple[str, ...]) -> tuple[Summary, PerSample]:
    """Family function: ``{"iou", "iou_acc@0.5", "iou_unparseable"}`` and per-sample."""
    per = []
    for i, rec in enumerate(records):
        iou, parsed = best_over_gold(rec, i, parse_box, box_iou, "valid box [x1, y1, x2, y2]")
        per.append({"iou": iou, "iou_acc@0.5": 1.0 if iou >= THRESHOLD else 0.0,
                    "iou_unparseable": 0.0 if parsed else 1.0})
    summary = {"iou": mean([p["iou"] for p in per]),
               "iou_acc@0.5": mean([p["iou_acc@0.5"] for p in per]),
               "iou_unparseable": int(sum(p["iou_unparseable"] for p in per))}
    return summary, per
