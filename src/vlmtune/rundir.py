"""The run directory: every file a run writes, by name, and typed readers for them.

Why one module: the layout is the contract between train, eval, merge, compare and the
report (docs/design.md), so its names live here and nowhere else. A run directory is created
once, marked as vlmtune's own (:mod:`vlmtune.ownership`), written under an exclusive lock,
and replaced by ``--overwrite`` only if it carries that mark.

Layout: ``config.yaml`` (resolved), ``metrics.jsonl`` (one line per logged step),
``resources.json``, ``data.json`` (what was skipped), ``adapter/`` or ``model/``,
``checkpoints/``, ``events.*`` (TensorBoard), ``failed.json`` (a run that stopped on a
fault), and after eval ``predictions.jsonl`` and ``metrics.json``.

Example:
    >>> RunDir(Path("runs/demo")).resources
    PosixPath('runs/demo/resources.json')
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmtune.atomic import write_json
from vlmtune.config import RunConfig, build_config, read_yaml
from vlmtune.errors import ConfigError, RunDirError
from vlmtune.ownership import DirLock, check_owned, clear_owned, is_empty, mark, marker_kind

CONFIG = "config.yaml"
ADAPTER = "adapter"
MODEL = "model"
RESOURCES = "resources.json"
LOG = "metrics.jsonl"
PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"
DATA = "data.json"
CHECKPOINTS = "checkpoints"
FAILED = "failed.json"
GRID = "grid.yaml"
RANK = "rank.json"  # vlmtune diagnose rank (full fine-tunes)
VISION_PROBE = "vision_probe.json"  # vlmtune diagnose vision


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory (nothing is read or created by building one)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    config = property(lambda self: self.path / CONFIG)
    adapter = property(lambda self: self.path / ADAPTER)
    model = property(lambda self: self.path / MODEL)
    resources = property(lambda self: self.path / RESOURCES)
    log = property(lambda self: self.path / LOG)
    predictions = property(lambda self: self.path / PREDICTIONS)
    metrics = property(lambda self: self.path / METRICS)
    data = property(lambda self: self.path / DATA)
    checkpoints = property(lambda self: self.path / CHECKPOINTS)
    failed = property(lambda self: self.path / FAILED)

    @property
    def artefact(self) -> Path | None:
        """``adapter/`` or ``model/``, whichever the run saved (None: not finished)."""
        return next((p for p in (self.adapter, self.model) if p.is_dir()), None)


def check_run_dir(path: Path, *, overwrite: bool, resume: bool) -> bool:
    """Raise if ``path`` may not be used; True if it holds a run to resume. Writes nothing,
    so a command can validate all its input before it touches the disk.

    A run made before the ownership marker existed (``config.yaml``, no marker) may be
    resumed (that adds files) but not overwritten (that deletes)."""
    path = Path(path)
    if path.is_file():
        raise RunDirError(f"{path}: run directory path is a file")
    if is_empty(path):
        return False
    kind = marker_kind(path)
    legacy_run = kind is None and (path / CONFIG).is_file()
    if resume:
        if kind == "run" or legacy_run:
            return True
        raise RunDirError(f"{path}: cannot resume: not a vlmtune run directory"
                          + (f" (it is a vlmtune {kind} directory)" if kind else f" (no {CONFIG})"))
    if not overwrite:
        raise RunDirError(f"{path}: run directory exists; pass --overwrite to replace it, "
                          "--resume to continue it, or choose another name")
    check_owned(path, "run")
    return False


def open_run_dir(path: Path, *, overwrite: bool, resume: bool, lock: DirLock) -> Path:
    """Create (or reuse, when resuming) a run directory under ``lock``; replace it only if
    it is a run vlmtune marked as its own. The checks are repeated once the lock is held:
    another process may have created or finished the directory in between."""
    path = Path(path)
    check_run_dir(path, overwrite=overwrite, resume=resume)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"{path}: cannot create run directory: {err.strerror}") from None
    lock.acquire(path)
    if not check_run_dir(path, overwrite=overwrite, resume=resume) and not is_empty(path):
        clear_owned(path, "run")
    try:
        mark(path, "run")
    except OSError as err:
        raise RunDirError(f"{path}: run directory is not writable: {err.strerror}") from None
    return path


def load_run_config(run: Path) -> RunConfig:
    """The run's resolved config, typed; a missing, unreadable or invalid ``config.yaml``
    is one line naming it (and its line, for YAML errors)."""
    path = RunDir(run).config
    if not path.is_file():
        raise RunDirError(f"{run}: not a vlmtune run directory (no {CONFIG})")
    try:
        data, lines = read_yaml(path)
        return build_config(data, source=path, lines=lines)
    except ConfigError as err:
        raise RunDirError(f"corrupt run config: {err}") from None


def read_json(path: Path) -> Any:
    """A JSON file vlmtune wrote; None if absent; one line naming it if it is not JSON."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise RunDirError(f"{path}: unreadable ({err}); re-run the step that writes it") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """A JSONL file vlmtune wrote, as rows; [] if absent; one line naming a bad line."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for k, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as err:
                raise RunDirError(f"{path}:{k}: unreadable ({err})") from None
    return rows


def mark_failed(run: Path, step: int, reason: str, message: str) -> None:
    """Record that the run stopped on a fault, for the report and for ``compare``."""
    write_json(RunDir(run).failed, {"step": step, "reason": reason, "message": message})


def read_failed(run: Path) -> dict[str, Any] | None:
    return read_json(RunDir(run).failed)


# Settings a resumed run may change; anything else would make the resumed run a different run.
RESUMABLE_CHANGES = {"train.max_steps", "train.epochs", "train.checkpoint_every", "train.keep_checkpoints",
                     "train.eval_every", "train.log_every", "train.vision_cache", "train.vision_cache_max_bytes",
                     "train.packing", "train.input_cache_max_bytes", "train.compile",  # these five: speed
                     "train.report_to", "train.project"}


def check_resume_config(run: Path, cfg: RunConfig) -> None:
    """Refuse to resume ``run`` with a config that differs from its saved one (beyond
    ``RESUMABLE_CHANGES``); a saved config that is not YAML is one line naming it."""
    path = RunDir(run).config
    if not path.is_file():
        return
    try:
        saved, lines = read_yaml(path)
    except ConfigError as err:
        raise RunDirError(f"corrupt run config: {err}") from None
    try:  # settings added since the run was saved take their defaults
        saved = build_config(saved, source=path, lines=lines).model_dump(mode="json")
    except ConfigError:
        pass
    saved, now = flatten_config(saved), flatten_config(cfg.model_dump(mode="json"))
    changed = sorted(k for k in saved.keys() | now.keys()
                     if saved.get(k) != now.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
        detail = "; ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed[:4])
        raise RunDirError(f"{path}: cannot resume with a different config ({detail}); "
                          "use --overwrite to start again or another name")


def flatten_config(tree: dict, prefix: str = "") -> dict:
    """``{"train": {"lr": 1e-4}}`` -> ``{"train.lr": 1e-4}`` (the override and tracker spelling)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def remove_stale_saves(run: Path) -> list[str]:
    """Delete what a killed save left behind: staged ``.adapter.*.tmp`` / ``.model.*.tmp``
    folders, ``.<file>.*.tmp`` files and ``.*.old`` folders in the run and in checkpoints/.
    Called under the run's lock, so no live writer owns them."""
    removed = []
    for folder in (Path(run), RunDir(run).checkpoints):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.startswith(".") and path.name.endswith((".tmp", ".old")):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path.name)
    return removed
