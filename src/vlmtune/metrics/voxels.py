"""Voxel IoU for 3-D occupancy answers: |A ∩ B| / |A ∪ B| of the occupied voxel sets.

Why: CAD/geometry tasks ask for a shape as an occupancy grid; set IoU is the standard
score (the Jaccard index of the occupied cells, as in 3D-R2N2 / Occupancy Networks),
and unlike per-cell accuracy it is not inflated by the empty space of a sparse grid.

Text format: a list of the occupied voxels' integer coordinates, each ``[x, y, z]``::

    [[0, 0, 0], [0, 0, 1], [2, 1, 0]]

Spaces are free, order and duplicates do not matter, ``[]`` is the empty grid, and text
around the list is ignored (the first list of lists is read). The prediction is
unparseable (IoU 0, counted in ``voxel_iou_unparseable``) if it has no such list or an
entry is not exactly three integers (``[1, 2]``, ``[1.5, 2, 3]``). Two empty grids score
1.0. Several gold answers: the best IoU counts. An unparseable gold answer raises
:class:`~vlmtune.errors.InputError`.

Example:
    >>> voxel_iou(parse_voxels("[[0,0,0],[0,0,1]]"), parse_voxels("[[0, 0, 1]]"))
    0.5
"""

from __future__ import annotations

import re

from .base import PerSample, Summary, best_over_gold, mean

Voxels = frozenset[tuple[int, int, int]]
# A "[ ... ]" whose content is only "[...]" items separated by commas (or nothing).
_LIST = re.compile(r"\[\s*(?:\[[^\[\]]*\]\s*(?:,\s*\[[^\[\]]*\]\s*)*,?\s*)?\]")
_ITEM = re.compile(r"\[([^\[\]]*)\]")
_TRIPLE = re.compile(r"\s*([-+]?\d+)\s*,\s*([-+]?\d+)\s*,\s*([-+]?\d+)\s*")


def parse_voxels(text: str) -> Voxels | None:
    """The set of ``(x, y, z)`` in the first list of lists in ``text``, or None."""
    match = _LIST.search(text)
    if match is None:
        return None
    cells = set()
    for item in _ITEM.findall(match.group(0)[1:-1]):
        triple = _TRIPLE.fullmatch(item)
        if triple is None:
            return None
        x, y, z = (int(v) for v in triple.groups())
        cells.add((x, y, z))
    return frozenset(cells)


def voxel_iou(a: Voxels, b: Voxels) -> float:
    """Jaccard index of two voxel sets; 1.0 when both are empty."""
    union = len(a | b)
    return 1.0 if union == 0 else len(a & b) / union


def compute(records: list[dict], names: tuple[str, ...]) -> tuple[Summary, PerSample]:
    """Family function: ``{"voxel_iou", "voxel_iou_unparseable"}`` and per-sample."""
    per = []
    for i, rec in enumerate(records):
        iou, parsed = best_over_gold(rec, i, parse_voxels, voxel_iou, "voxel list [[x, y, z], ...]")
        per.append({"voxel_iou": iou, "voxel_iou_unparseable": 0.0 if parsed else 1.0})
    summary = {"voxel_iou": mean([p["voxel_iou"] for p in per]),
               "voxel_iou_unparseable": int(sum(p["voxel_iou_unparseable"] for p in per))}
    return summary, per
