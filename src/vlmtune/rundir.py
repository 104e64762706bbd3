"""The run directory: created once, never overwritten without ``--overwrite``.

Layout (docs/design.md): ``config.yaml`` (resolved), ``metrics.jsonl``, ``resources.json``,
``data.json`` (what was skipped), ``adapter/`` or ``model/``, ``checkpoints/``,
``events.*`` (TensorBoard), and after eval ``predictions.jsonl`` and ``metrics.json``.

Example:
    >>> run = open_run_dir(Path("runs/demo"), overwrite=False, resume=False)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from vlmtune.config import RunConfig, build_config
from vlmtune.errors import RunDirError

MARKER = "config.yaml"


def check_run_dir(path: Path, *, overwrite: bool, resume: bool) -> bool:
    """Raise if ``path`` may not be used; True if it holds a run to resume. Writes nothing,
    so a command can validate all its input before it touches the disk."""
    path = Path(path)
    if path.is_file():
        raise RunDirError(f"{path}: run directory path is a file")
    if not (path.exists() and any(path.iterdir())):
        return False
    if not (path / MARKER).is_file():
        what = "cannot resume" if resume else "refusing to overwrite"
        raise RunDirError(f"{path}: {what}: not a vlmtune run directory (no {MARKER})")
    if resume:
        return True
    if not overwrite:
        raise RunDirError(f"{path}: run directory exists; pass --overwrite to replace it, "
                          "--resume to continue it, or choose another name")
    return False


def open_run_dir(path: Path, *, overwrite: bool, resume: bool) -> Path:
    """Create (or reuse, when resuming) a run directory; refuse to clobber one."""
    path = Path(path)
    if check_run_dir(path, overwrite=overwrite, resume=resume):
        return path
    if path.exists() and any(path.iterdir()):
        shutil.rmtree(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"{path}: cannot create run directory: {err.strerror}") from None
    if not os.access(path, os.W_OK):
        raise RunDirError(f"{path}: run directory is not writable")
    return path


def load_run_config(run: Path) -> RunConfig:
    path = Path(run) / "config.yaml"
    if not path.is_file():
        raise RunDirError(f"{run}: not a vlmtune run directory (no config.yaml)")
    return build_config(yaml.safe_load(path.read_text()), source=path)
