"""The comparison report of a grid: ``report.html`` (self-contained) and ``report.md``.

Why: the grid's question ("which option, at what cost?") is answered by one page that
anyone can open offline or read in a repository: a table, four plots, a few outputs side
by side and a verdict citing the numbers. It is built only from the run directories'
artefacts (docs/design.md), so ``vlmtune report GRID_DIR`` rebuilds it at any time.

Pipeline: :mod:`.loading` (run dirs -> RunData) -> :mod:`.summary` (entries, noise) ->
:mod:`.table`, :mod:`.plots`, :mod:`.samples`, :mod:`.verdict` -> :mod:`.render` (jinja2).

Example:
    >>> paths = build_report(Path("runs/shapes-grid"))  # doctest: +SKIP
    >>> sorted(paths)  # doctest: +SKIP
    ['html', 'md']
"""

from __future__ import annotations

from pathlib import Path
# Function-level imports: matplotlib/jinja2 load only when a report is rendered (CLI start-up).

__all__ = ["build_report"]


def build_report(grid_dir: str | Path, *, per_task: int = 6) -> dict[str, Path]:
    """Read ``grid_dir``'s run dirs, write report.html + report.md (+ PNGs) into it."""
    from vlmtune.report.render import render_report

    return render_report(Path(grid_dir), per_task=per_task)
