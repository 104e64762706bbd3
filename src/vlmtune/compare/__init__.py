"""Grids of variants: the grid file (``grid``), training and evaluating each variant
(``run``), and learning curves over data sizes (``curve``).

Example:
    >>> from vlmtune.compare import compare
    >>> compare(Path("configs/shapes-grid.yaml"))  # doctest: +SKIP
"""

from vlmtune.compare.run import compare

__all__ = ["compare"]
