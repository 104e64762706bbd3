"""The grid summary for a terminal: the columns that fit its width, most important first.

Why: rich shrinks a too-wide table by breaking words ("baselin/e", "lora-r1/6"), which
reads worse than leaving a column out. Each column needs its longest cell (cells stay on
one line) or header word (headers wrap between words) plus rich's padding and border; columns are kept in priority order (variant,
task scores, method, memory, general delta, format, time, then the rest) while the total
fits, and then shown in their original order. The full table is in report.html.

Example:
    >>> fit_columns(["variant", "vqa exact match", "MFU"], [["baseline", "0.5", "1%"]], 30)
    [0, 1, 2]
    >>> fit_columns(["variant", "vqa exact match", "MFU"], [["baseline", "0.5", "1%"]], 20)
    [0, 1]
"""

from __future__ import annotations

BORDER = 1  # the table's left edge; every column adds its padding (2) and its right edge (1)
PRIORITY = ("variant", "status", "score", "method", "peak memory", "general", "format", "train time")


def _rank(name: str) -> int:
    if name in ("variant", "status"):
        return PRIORITY.index(name)
    if name.startswith("general"):
        return PRIORITY.index("general")
    if name.endswith(" format"):
        return PRIORITY.index("format")
    if name in PRIORITY:
        return PRIORITY.index(name)
    if name in ("trainable params", "train samples/s", "MFU", "size on disk", "latency"):
        return len(PRIORITY)
    return PRIORITY.index("score")  # "<task> <metric>"


def needed_width(header: str, cells: list[str]) -> int:
    """Screen columns one column needs: cells whole, the header may wrap between words."""
    longest = max([len(c) for c in cells] + [len(w) for w in header.split()] + [1])
    return longest + 3


def fit_columns(header: list[str], rows: list[list[str]], width: int) -> list[int]:
    """Indices of the columns to show at ``width`` (the first column is always shown)."""
    need = [needed_width(h, [r[i] for r in rows]) for i, h in enumerate(header)]
    order = sorted(range(len(header)), key=lambda i: (i > 0, _rank(header[i]), i))
    kept, used = [], BORDER
    for i in order:
        if i == 0 or used + need[i] <= width:
            kept.append(i)
            used += need[i]
    return sorted(kept)
