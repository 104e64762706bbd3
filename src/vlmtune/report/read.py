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

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vlmtune.errors import RunDirError

# summary keys that are not the task's quality metric
_NOT_METRICS = ("n", "format", "format_compliance")
_NOT_SUFFIXES = ("_unparseable", "_no_letter")
_LABELS = {"lora": "LoRA", "dora": "DoRA", "qlora": "QLoRA"}


@dataclass
class RunData:
    """Everything the report uses from one variant's run directory."""

    name: str
    path: Path
    config: dict[str, Any]
    trains: bool
    resources: dict[str, Any] | None = None
    log: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] | None = None
    predictions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def shots(self) -> int:
        return int((self.config.get("eval") or {}).get("shots") or 0)

    @property
    def kind(self) -> str:
        """untuned | shots | full | freeze | lora | dora | qlora."""
        if not self.trains:
            return "shots" if self.shots else "untuned"
        return str((self.config.get("method") or {}).get("kind", "lora"))

    @property
    def rank(self) -> int | None:
        return int(self.config["method"].get("r", 8)) if self.kind in _LABELS else None

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
            roles = [r for r, on in (self.config.get("trainable") or {}).items() if on]
            return (f"freeze ({'+'.join(roles)} train)" if roles else "freeze") + self._mix_suffix()
        return kind + self._mix_suffix()

    def _mix_suffix(self) -> str:
        """A forgetting sweep's variants differ only in how much general data they replay."""
        share = float((self.config.get("data") or {}).get("mix_general") or 0.0)
        return f" + {share:.0%} general" if share > 0 else ""

    def _vision_suffix(self) -> str:
        """Variants that differ only in the vision tower need different labels."""
        if (self.config.get("trainable") or {}).get("vision"):
            return " + full vision"
        return " on vision too" if "vision" in ((self.config.get("method") or {}).get("lora_on") or []) else ""

    def task_summary(self, task: str, split: str = "tasks") -> dict[str, Any]:
        return ((self.metrics or {}).get(split) or {}).get(task) or {}

    def rows(self, task: str, general: bool = False) -> list[dict[str, Any]]:
        """Prediction rows of one task, of the test set or of the general set."""
        return [r for r in self.predictions if r.get("task") == task
                and (r.get("split") == "general") == general]

    def preferred_metrics(self, task: str) -> list[str]:
        chosen = (self.config.get("eval") or {}).get("metrics") or []
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


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_run(path: Path, trains: bool | None = None) -> RunData:
    """One run dir; ``trains`` from the grid record, else inferred from resources.json or a
    training log (``metrics.jsonl``: a run that stopped before writing resources.json)."""
    path = Path(path)
    config_path = path / "config.yaml"
    if not config_path.is_file():
        raise RunDirError(f"{path}: not a vlmtune run directory (no config.yaml)")
    config = yaml.safe_load(config_path.read_text()) or {}
    resources = _json(path / "resources.json")
    if trains is None:  # outside a grid: a training log means it trained, even if it stopped early
        trains = bool(resources and resources.get("trainable_params")) or (path / "metrics.jsonl").is_file()
    return RunData(name=str(config.get("name") or path.name), path=path, config=config, trains=trains,
                   resources=resources, log=_jsonl(path / "metrics.jsonl"),
                   metrics=_json(path / "metrics.json"), predictions=_jsonl(path / "predictions.jsonl"))


def load_grid_runs(grid_dir: Path) -> list[RunData]:
    """All run dirs of a grid, in the grid's variant order (``grid.yaml``) when recorded."""
    grid_dir = Path(grid_dir)
    if not grid_dir.is_dir():
        raise RunDirError(f"{grid_dir}: no such grid directory")
    record = yaml.safe_load((grid_dir / "grid.yaml").read_text()) if (grid_dir / "grid.yaml").is_file() else {}
    listed = [(v["name"], v.get("trains")) for v in (record or {}).get("variants", [])]
    names = [n for n, _ in listed if (grid_dir / n / "config.yaml").is_file()]
    extra = sorted(p.name for p in grid_dir.iterdir()
                   if (p / "config.yaml").is_file() and p.name not in names)
    trains = dict(listed)
    runs = [load_run(grid_dir / n, trains.get(n)) for n in names + extra]
    if not runs:
        raise RunDirError(f"{grid_dir}: no run directories (subdirectories with config.yaml)")
    return runs


def find_baseline(runs: list[RunData]) -> RunData | None:
    """The untuned reference: a variant named ``baseline``, else the first untuned 0-shot one."""
    for run in runs:
        if run.name == "baseline":
            return run
    return next((r for r in runs if r.kind == "untuned"), None)
