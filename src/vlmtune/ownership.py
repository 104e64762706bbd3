"""Which directories vlmtune owns, and which process is writing one right now.

Why: ``--overwrite`` deletes a directory, so it must only ever delete one that vlmtune
itself created (a user's project folder that happens to hold a ``config.yaml`` is not a
run), and never one another vlmtune process is writing. Every directory vlmtune creates
gets a marker file naming its kind; every command that writes one holds an exclusive OS
lock (``fcntl.flock``) on a lock file inside it. The kernel drops the lock when the
process exits, however it exits (kill -9 included), so a stale lock never blocks a rerun.

Example:
    >>> with DirLock(Path("runs/demo")):  # doctest: +SKIP
    ...     mark(Path("runs/demo"), "run")
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

from vlmtune.errors import RunDirError

MARKER = ".vlmtune"  # JSON {"kind": ...}: this directory was created by vlmtune
LOCK = ".vlmtune.lock"  # flock()ed by the process writing the directory; holds its PID
KINDS = ("run", "grid", "eval", "merged model", "zoo work")


def marker_kind(path: Path) -> str | None:
    """The kind vlmtune marked ``path`` with, or None (not ours, or no marker)."""
    try:
        return str(json.loads((Path(path) / MARKER).read_text())["kind"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def mark(path: Path, kind: str) -> None:
    """Claim ``path`` (which must exist) as a vlmtune directory of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"unknown directory kind {kind!r}")
    (Path(path) / MARKER).write_text(json.dumps({"kind": kind}) + "\n")


def is_empty(path: Path) -> bool:
    """Missing, or holding nothing but a lock file (left by a process that died early)."""
    path = Path(path)
    return not path.is_dir() or all(p.name == LOCK for p in path.iterdir())


def clear_owned(path: Path, kind: str) -> None:
    """Delete the contents of a directory vlmtune marked as ``kind`` (the caller holds its
    lock; the lock file stays so the lock stays valid). Anything else is refused."""
    path = Path(path)
    check_owned(path, kind)
    for child in path.iterdir():
        if child.name == LOCK:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def check_owned(path: Path, kind: str) -> None:
    """Raise unless vlmtune marked ``path`` as a directory of ``kind``."""
    found = marker_kind(path)
    if found is None:
        raise RunDirError(f"{path}: refusing to delete: vlmtune did not create this directory (no {MARKER} "
                          "marker); move or delete it yourself, or choose another name")
    if found != kind:
        raise RunDirError(f"{path}: refusing to delete: it is a vlmtune {found} directory, not a {kind}")


def refuse_overlap(out: Path, source: Path, what: str = "--out") -> None:
    """``out`` (to be written, perhaps replaced) must not be ``source`` (being read), lie
    inside it, or contain it."""
    a, b = Path(out).resolve(), Path(source).resolve()
    if a == b or a.is_relative_to(b) or b.is_relative_to(a):
        raise RunDirError(f"{out}: {what} must be outside {source} (it would overwrite what it reads)")


class DirLock:
    """An exclusive, non-blocking lock on a directory for the life of a command.

    A second writer fails at once with the holder's PID, rather than waiting or racing.
    Re-entrant within one object (``acquire`` twice is a no-op); one object per command.
    """

    def __init__(self, path: Path | None = None):
        self.path: Path | None = None
        self._fd: int | None = None
        if path is not None:
            self.acquire(path)

    def acquire(self, path: Path) -> None:
        path = Path(path)
        if self._fd is not None:
            if self.path is not None and self.path.resolve() == path.resolve():
                return
            raise RuntimeError(f"DirLock already holds {self.path}")
        try:
            fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise RunDirError(f"{path}: cannot write here: {err.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirError(f"{path}: in use by another vlmtune process (PID {holder}); wait for it to "
                              "finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> DirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
