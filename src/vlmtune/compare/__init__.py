"""Grids of variants: the grid file (``grid``), training and evaluating each variant
(``run``), and learning curves over data sizes (``curve``). On Ray (optional): the grid's
variants as tasks (``ray_grid``, ``progress``, ``cluster``) and rank / learning-rate
sweeps with ASHA (``search``, ``sweep``).

Example:
    >>> from vlmtune.compare import compare
    >>> compare(Path("configs/shapes-grid.yaml"))  # doctest: +SKIP
"""

from vlmtune.compare.run import compare

__all__ = ["compare"]
