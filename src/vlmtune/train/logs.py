"""Where training numbers go: ``metrics.jsonl`` (one line per logged step), the trackers of
``train.report_to`` (TensorBoard events in the run directory by default; MLflow, W&B: see
:mod:`vlmtune.train.tracking`), and a rich progress bar with loss, samples/s and MFU.

On resume, lines past the checkpoint's step are dropped, so the file reads as one run.

Example:
    >>> with RunLog(run, total_steps=100, start_step=0) as log:  # doctest: +SKIP
    ...     log.record(1, {"loss": 2.3, "lr": 1e-4})
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from vlmtune.atomic import json_line, write_jsonl
from vlmtune.rundir import RunDir
from vlmtune.train.tracking import Tracking


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Logged rows; a line torn by a crash mid-write (only the last can be) is dropped."""
    if not Path(path).is_file():
        return []
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


class RunLog:
    """``tracking``: the run's trackers, opened on enter and closed on exit (as failed if
    the block raised)."""

    def __init__(self, run: Path, total_steps: int, start_step: int, *, enabled: bool = True,
                 console: Console | None = None, tracking: Tracking | None = None):
        self.path = RunDir(run).log
        self.enabled = enabled
        self.kept: list[dict[str, Any]] = []  # rows of the steps before a resume
        if enabled:
            self.kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= start_step]
            write_jsonl(self.path, self.kept)
        self.run = Path(run)
        self.total, self.start = total_steps, start_step
        self.console = console or Console(stderr=True)
        self.tracking = tracking
        self._progress = None
        self._task = None

    def last(self, key: str, default: Any, *, step: int | None = None) -> Any:
        """The last kept value of ``key`` (at ``step`` if given): what a resume with no step
        left reports instead of recomputing it (and logging it twice)."""
        rows = [r for r in self.kept if key in r and (step is None or r.get("step") == step)]
        return rows[-1][key] if rows else default

    def __enter__(self) -> "RunLog":
        if self.enabled:
            self._handle = open(self.path, "a", encoding="utf-8")
            if self.tracking is not None:
                self.tracking.open()
            self._progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
                                      TimeRemainingColumn(), console=self.console, transient=False)
            self._progress.start()
            self._task = self._progress.add_task("train", total=self.total, completed=self.start, stats="")
        return self

    def record(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **values}
        self._handle.write(json_line(row) + "\n")
        self._handle.flush()
        if self.tracking is not None:
            self.tracking.metrics(values, step)

    def resources(self, path: Path) -> None:
        """After the run: ``resources.json``'s numbers and the file itself, to the trackers."""
        if self.enabled and self.tracking is not None:
            self.tracking.summary(path, "resources")

    def advance(self, step: int, loss: float, samples_per_s: float, mfu: float | None = None) -> None:
        if self._progress is not None:
            stats = f"loss {loss:.4f} · {samples_per_s:.1f} samples/s"
            if mfu is not None:
                stats += f" · MFU {100 * mfu:.1f}%"
            self._progress.update(self._task, completed=step, stats=stats)

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.stop()
        self._handle.close()
        if self.tracking is not None:
            self.tracking.close(failed=exc_type is not None)
