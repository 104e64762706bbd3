"""Checkpoints shipped inside the package, addressable as ``vlmtune/<name>``.

Example:
    >>> is_zoo_name("vlmtune/tiny-shapes")
    True
"""

from __future__ import annotations

from pathlib import Path

from vlmtune.errors import InputError

PREFIX = "vlmtune/"
ROOT = Path(__file__).parent


def available() -> list[str]:
    return sorted(PREFIX + p.name for p in ROOT.iterdir() if (p / "config.json").is_file())


def is_zoo_name(path: str) -> bool:
    return path.startswith(PREFIX) and not Path(path).exists()


def resolve(name: str) -> Path:
    target = ROOT / name[len(PREFIX):]
    if not (target / "config.json").is_file():
        raise InputError(f"no shipped model {name!r}; available: {', '.join(available()) or 'none'}",
                         field="model.path")
    return target
