"""Read a grid's run directories back: the report's only input.

Why: a report built from artefacts alone can be rebuilt at any time (``vlmtune report``),
from runs made on another machine, without importing torch. Each run dir holds
``config.yaml``, ``metrics.json`` + ``predictions.jsonl`` (after evaluation) and, when it
trained, ``metrics.jsonl`` + ``resources.json``. Missing files give ``None``/empty, so a
half-finished grid still reports what it has.

Example:
    >>> runs = load_grid_runs(Path("runs/shapes-grid"))  # doctest: +SKIP
    >>> [(r.name, r.kind, r.label) for r in runs][:2]  # doctest: +SKIP
    [('baseline', 'untuned', 'untuned'), ('lora-r16', 'lora', 'LoRA r=16')]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vlmtune.config import ROLES, RunConfig
from vlmtune.errors import RunDirError
from vlmtune.rundir import CONFIG, GRID, RunDir, load_run_config, read_failed, read_json, read_jsonl

# summary keys that are not the task's quality metric
_NOT_METRICS = ("n", "format", "format_compliance")
_NOT_SUFFIXES = ("_unparseable", "_no_letter")
_LABELS = {"lora": "LoRA", "dora": "DoRA", "qlora": "QLoRA"}


@dataclass
class RunData:
    """Everything the report uses from one variant's run directory."""

    name: str
    path: Path
    config: RunConfig
    trains: bool
    resources: dict[str, Any] | None = None
    log: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] | None = None
    predictions: list[dict[str, Any]] = field(default_factory=list)
    failed: dict[str, Any] | None = None  # failed.json: the run stopped on a fault (divergence)

    @property
    def shots(self) -> int:
        return self.config.eval.shots

    @property
    def kind(self) -> str:
        """untuned | shots | full | freeze | lora | dora | qlora."""
        if not self.trains:
            return "shots" if self.shots else "untuned"
        return self.config.method.kind

    @property
    def rank(self) -> int | None:
        return self.config.method.r if self.kind in _LABELS else None

    @property
    def label(self) -> str:
        kind = self.kind
        if kind == "untuned":
            return "untuned"
        if kind == "shots":
            return f"{self.shots}-shot"
        if kind in _LABELS:
            return f"{_LABELS[kind]} r={self.rank}{self._vision_suffix()}{self._mix_suffix()}"
        if kind == "freeze":
            roles = [r for r in ROLES if getattr(self.config.trainable, r)]
            return (f"freeze ({'+'.join(roles)} train)" if roles else "freeze") + self._mix_suffix()
        return kind + self._mix_suffix()

    def _mix_suffix(self) -> str:
        """A forgetting sweep's variants differ only in how much general data they replay."""
        share = self.config.data.mix_general
        return f" + {share:.0%} general" if share > 0 else ""

    def _vision_suffix(self) -> str:
        """Variants that differ only in the vision tower need different labels."""
        if self.config.trainable.vision:
            return " + full vision"
        return " on vision too" if "vision" in self.config.method.lora_on else ""

    def task_summary(self, task: str, split: str = "tasks") -> dict[str, Any]:
        return ((self.metrics or {}).get(split) or {}).get(task) or {}

    def rows(self, task: str, general: bool = False) -> list[dict[str, Any]]:
        """Prediction rows of one task, of the test set or of the general set."""
        return [r for r in self.predictions if r.get("task") == task
                and (r.get("split") == "general") == general]

    def preferred_metrics(self, task: str) -> list[str]:
        chosen = self.config.eval.metrics
        return list(chosen.get(task) or []) if isinstance(chosen, dict) else list(chosen)


def primary_metric(runs: list[RunData], task: str, split: str = "tasks") -> str | None:
    """The metric a task is judged by: the first of ``eval.metrics`` that was computed, else
    the first numeric summary key that is not a count or format compliance."""
    for run in runs:
        summary = run.task_summary(task, split)
        if not summary:
            continue
        numeric = [k for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and k not in _NOT_METRICS and not k.endswith(_NOT_SUFFIXES)]
        for name in run.preferred_metrics(task):
            if name in numeric:
                return name
        if numeric:
            return numeric[0]
    return None


def tasks_of(runs: list[RunData], split: str = "tasks") -> list[str]:
    seen: dict[str, None] = {}
    for run in runs:
        for task in ((run.metrics or {}).get(split) or {}):
            seen.setdefault(task, None)
    return list(seen)


def load_run(path: Path, trains: bool | None = None) -> RunData:
    """One run dir; ``trains`` from the grid record, else inferred from resources.json or a
    training log (``metrics.jsonl``: a run that stopped before writing resources.json)."""
    paths = RunDir(path)
    config = load_run_config(paths.path)
    resources = read_json(paths.resources)
    if trains is None:  # outside a grid: a training log means it trained, even if it stopped early
        trains = bool(resources and resources.get("trainable_params")) or paths.log.is_file()
    return RunData(name=config.name or paths.path.name, path=paths.path, config=config, trains=trains,
                   resources=resources, log=read_jsonl(paths.log), metrics=read_json(paths.metrics),
                   predictions=read_jsonl(paths.predictions), failed=read_failed(paths.path))


def load_grid_runs(grid_dir: Path) -> list[RunData]:
    """All run dirs of a grid, in the grid's variant order (``grid.yaml``) when recorded."""
    grid_dir = Path(grid_dir)
    if not grid_dir.is_dir():
        raise RunDirError(f"{grid_dir}: no such grid directory")
    record = yaml.safe_load((grid_dir / GRID).read_text()) if (grid_dir / GRID).is_file() else {}
    listed = [(v["name"], v.get("trains")) for v in (record or {}).get("variants", [])]
    names = [n for n, _ in listed if RunDir(grid_dir / n).config.is_file()]
    extra = sorted(p.name for p in grid_dir.iterdir() if RunDir(p).config.is_file() and p.name not in names)
    trains = dict(listed)
    runs = [load_run(grid_dir / n, trains.get(n)) for n in names + extra]
    if not runs:
        raise RunDirError(f"{grid_dir}: no run directories (subdirectories with {CONFIG})")
    return runs


def grid_lesson(grid_dir: Path) -> str | None:
    """The lesson a grid reproduces (``lesson:`` of its grid file, recorded in ``grid.yaml``)."""
    path = Path(grid_dir) / GRID
    record = yaml.safe_load(path.read_text()) if path.is_file() else None
    return record.get("lesson") if isinstance(record, dict) else None


def find_baseline(runs: list[RunData]) -> RunData | None:
    """The untuned reference: a variant named ``baseline``, else the first untuned 0-shot one."""
    for run in runs:
        if run.name == "baseline":
            return run
    return next((r for r in runs if r.kind == "untuned"), None)
