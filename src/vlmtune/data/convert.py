"""Converters at the edge: other dataset formats -> canonical JSONL (see docs/design.md).

Nothing else in vlmtune reads a foreign format, so every quirk of LLaVA, ShareGPT,
InternVL and HF datasets is handled here, once, and a bad record stops the conversion
with one message naming file, line and field (:class:`~vlmtune.errors.DataError`).

Formats (``fmt``):

- ``llava`` / ``sharegpt`` / ``internvl``: JSON array or JSON lines of
  ``{"id", "image" | "images", "conversations": [{"from", "value"}], "system"?}`` with
  ``<image>`` markers (:mod:`vlmtune.data.convert_chat`). The three names share a reader;
  the name only appears in error messages.
- ``hf``: local files read with ``datasets`` (parquet, json/jsonl, arrow, csv, or a
  ``save_to_disk`` folder) with configurable columns (:mod:`vlmtune.data.convert_hf`).
- ``auto``: a folder or .parquet/.arrow/.csv file is ``hf``; a JSON file whose first
  record has ``conversations`` is ``llava`` (``messages``: ``sharegpt``), else ``hf``.

The output is written atomically: staged next to ``out`` and renamed into place only
after the last record converted (:mod:`vlmtune.data.convert_output`). The dataset root is
``out``'s folder; image paths are written relative to it.

Options (``**options``): ``task`` (set on every sample), ``images_outside``
("error" | "copy" | "keep"), ``check_images`` (True), ``dedupe_ids`` (False); for ``hf``
also ``image_column``, ``messages_column``, ``question_column``, ``answer_column``,
``id_column``, ``task_column``, ``split``.

Example:
    >>> convert(Path("llava_instruct.json"), Path("data/train.jsonl"),
    ...         image_root=Path("data"))  # doctest: +SKIP
    157712
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmtune.data.convert_chat import chat_sample, iter_records
from vlmtune.data.convert_hf import HF_OPTIONS, convert_hf
from vlmtune.data.convert_output import Staging
from vlmtune.errors import ConfigError, DataError

FORMATS = ("auto", "llava", "sharegpt", "internvl", "hf")
CHAT_FORMATS = ("llava", "sharegpt", "internvl")
COMMON_OPTIONS = ("task", "images_outside", "check_images", "dedupe_ids")


def detect_format(src: Path) -> str:
    """Guess the format from the path and the first record.

    Example:
        >>> detect_format(Path("shards/train-00000.parquet"))
        'hf'
    """
    if src.is_dir() or src.suffix in (".parquet", ".arrow", ".csv"):
        return "hf"
    for _, first in iter_records(src):
        if isinstance(first, dict) and "conversations" in first:
            return "llava"
        if isinstance(first, dict) and "messages" in first:
            return "sharegpt"
        return "hf"
    raise DataError("no records: the file is empty", file=src)


def _check_options(fmt: str, options: dict[str, Any]) -> None:
    allowed = COMMON_OPTIONS + (HF_OPTIONS if fmt == "hf" else ())
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for fmt={fmt!r}; known: {list(allowed)}",
                          field=unknown[0])


def convert(src: Path, out: Path, *, fmt: str = "auto", image_root: Path | None = None,
            **options: Any) -> int:
    """Convert ``src`` to canonical JSONL at ``out``; returns the number of samples written.

    ``image_root`` is where relative image paths in ``src`` resolve (default: ``src``'s
    folder, or ``src`` itself if it is a folder). On any error nothing is written.

    Example:
        >>> import json, tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> rec = {"id": "q1", "conversations": [{"from": "human", "value": "2+2?"},
        ...                                       {"from": "gpt", "value": "4"}]}
        >>> _ = (root / "chat.jsonl").write_text(json.dumps(rec) + "\\n")
        >>> convert(root / "chat.jsonl", root / "train.jsonl")
        1
    """
    src, out = Path(src), Path(out)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; expected one of {FORMATS}", field="fmt")
    if not src.exists():
        raise DataError("source not found", file=src)
    if fmt == "auto":
        fmt = detect_format(src)
    _check_options(fmt, options)
    if image_root is None:
        image_root = src if src.is_dir() else src.parent
    task = options.pop("task", None)
    staging = Staging(out, image_root=Path(image_root),
                      images_outside=options.pop("images_outside", "error"),
                      check_images=options.pop("check_images", True),
                      dedupe_ids=options.pop("dedupe_ids", False))
    with staging:
        if fmt == "hf":
            convert_hf(src, staging, task=task, **options)
        else:
            for line, obj in iter_records(src):
                sample = chat_sample(obj, file=src, line=line, staging=staging, task=task, fmt=fmt)
                staging.write(sample, file=src, line=line)
        if staging.count == 0:
            raise DataError("no samples to write: the source has no records", file=src)
        return staging.commit()
