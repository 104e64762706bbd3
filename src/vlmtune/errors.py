"""User-facing errors: one clear message naming the file, line and field.

The CLI catches :class:`VlmtuneError` and prints ``str(err)`` without a traceback, then
exits non-zero. Library code raises these for anything a user can fix (bad config, bad
sample, missing file); programming errors stay ordinary exceptions.

Example:
    >>> str(InputError("method.r: must be >= 1, got 0", file="cfg.yaml"))
    'cfg.yaml: method.r: must be >= 1, got 0'
"""

from __future__ import annotations

from pathlib import Path


class VlmtuneError(Exception):
    """Base class for errors the user can act on (exit code 2)."""

    exit_code = 2


class InputError(VlmtuneError):
    """Bad user input; located by ``file``, ``line`` (1-based) and ``field`` when known."""

    def __init__(self, message: str, *, file: str | Path | None = None, line: int | None = None,
                 field: str | None = None):
        self.message, self.file, self.line, self.field = message, file, line, field
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        what = f"{field}: " if field and not message.startswith(f"{field}:") else ""
        super().__init__(f"{where}{what}{message}")


class ConfigError(InputError):
    """Invalid configuration value or key."""


class DataError(InputError):
    """Invalid dataset sample or file."""


class RunDirError(VlmtuneError):
    """Run directory exists (without --overwrite), or is not a run directory."""
