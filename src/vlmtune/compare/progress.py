"""The live table of a grid on Ray: every variant's state, as its task reports it.

Why: on a cluster the variants run in processes the user cannot see, on machines they may
not be logged in to. Each task tells one small Ray actor (``Board``) what it is doing;
the command polls the board and redraws the table. States, in order: ``queued``,
``training`` (step k/N), ``evaluating``, then ``done`` or ``failed`` (with its one-line
error); ``attempt`` counts the times a task started (a retry after a worker died is 2).

Example:
    >>> board = Board()
    >>> board.start("lora-r8", pid=4242, node="10.0.0.2")
    1
    >>> board.update("lora-r8", "training", step=3, total=20)
    >>> board.snapshot()["lora-r8"]["step"]
    3
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

_STYLE = {"queued": "dim", "training": "cyan", "evaluating": "magenta", "done": "green",
          "failed": "red", "skipped": "dim", "cancelled": "yellow"}


class Board:
    """Per-variant state; lives in a Ray actor (``ray.remote(Board)``), plain object in tests."""

    def __init__(self, names: list[str] | None = None):
        self.states: dict[str, dict[str, Any]] = {n: {"state": "queued", "attempt": 0} for n in names or []}

    def start(self, name: str, pid: int, node: str) -> int:
        """A task (re)started on ``node``: returns its attempt number (1, then 2 after a retry)."""
        entry = self.states.setdefault(name, {"state": "queued", "attempt": 0})
        entry.update(state="starting", attempt=entry["attempt"] + 1, pid=pid, node=node, step=None)
        return entry["attempt"]

    def update(self, name: str, state: str, *, step: int | None = None, total: int | None = None,
               error: str | None = None) -> None:
        entry = self.states.setdefault(name, {"state": "queued", "attempt": 0})
        entry.update(state=state, step=step, total=total if total is not None else entry.get("total"),
                     error=error)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: dict(entry) for name, entry in self.states.items()}


def progress_table(title: str, states: dict[str, dict[str, Any]]) -> Table:
    """The table the command redraws: variant, state, step k/N, attempt, node."""
    table = Table(title=title)
    for col in ("variant", "state", "step", "attempt", "node", "error"):
        table.add_column(col, overflow="fold")
    for name, entry in states.items():
        state = entry.get("state", "queued")
        step = entry.get("step")
        shown = f"{step}/{entry['total']}" if step is not None and entry.get("total") else ""
        style = _STYLE.get(state, "")
        table.add_row(name, f"[{style}]{state}[/{style}]" if style else state, shown,
                      str(entry.get("attempt") or ""), str(entry.get("node") or ""), escape(entry.get("error") or ""))
    return table
