"""Converters at the edge: other dataset formats -> canonical JSONL (see docs/design.md).

Nothing else in vlmtune reads a foreign format, so every quirk of LLaVA, ShareGPT,
InternVL, LLaMA-Factory, ms-swift, OpenAI-style chat and HF datasets is handled here,
once, and a bad record stops the conversion with one message naming file, line and field
(:class:`~vlmtune.errors.DataError`).

Formats (``fmt``):

- ``llava`` / ``sharegpt`` / ``internvl`` / ``swift`` / ``openai``: JSON array or JSON
  lines of ``{"id", "image" | "images", "video" | "videos", "conversations" | "messages",
  "system"?}``; turns ``{from, value}`` or ``{role, content}``, content a string with
  ``<image>``/``<video>`` markers or a list of parts (OpenAI ``image_url``/``video_url``,
  LLaMA-Factory v1 ``{type, value}``, Qwen ``{"type": "video", "video"}``), per-turn
  ``loss``/``loss_weight`` (:mod:`vlmtune.data.convert_chat`). The names share a reader;
  the name only appears in error messages. Videos are staged like images.
- ``alpaca``: ``instruction/input/output/history`` (LLaMA-Factory, ms-swift) and ms-swift
  ``query/response/history`` (:mod:`vlmtune.data.convert_alpaca`).
- ``hf``: local files read with ``datasets`` (parquet, json/jsonl, arrow, csv, or a
  ``save_to_disk`` folder) with configurable columns (:mod:`vlmtune.data.convert_hf`).
- A JSON object naming datasets: an InternVL meta file or LLaMA-Factory's
  ``dataset_info.json`` (``FILE#name`` picks one entry; :mod:`vlmtune.data.convert_meta`).
- ``auto``: a folder or .parquet/.arrow/.csv file is ``hf``; a meta file is recognised by
  its entries; a JSON file whose first record has ``conversations``/``messages`` is read
  as chat, ``instruction``+``output`` or ``query``+``response`` as alpaca, else ``hf``.

The output is written atomically: staged next to ``out`` and renamed into place only
after the last record converted (:mod:`vlmtune.data.convert_output`). The dataset root is
``out``'s folder; image paths are written relative to it.

Options (``**options``): ``task`` (set on every sample), ``images_outside``
("error" | "copy" | "keep"; keep needs ``allow_outside_root=True``), ``check_images`` (True), ``dedupe_ids`` (False),
``fetch_urls`` (False: http(s) image/video URLs are refused), ``boxes`` ("FROM:TO": rewrite
answers' boxes between conventions, :mod:`vlmtune.data.boxes`); for ``hf`` also
``image_column``, ``messages_column``, ``question_column``, ``answer_column``,
``id_column``, ``task_column``, ``split``.

Example:
    >>> convert(Path("llava_instruct.json"), Path("data/train.jsonl"),
    ...         image_root=Path("data"))  # doctest: +SKIP
    157712
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmtune.data.boxes import convention, rewrite_sample
from vlmtune.data.convert_alpaca import alpaca_sample
from vlmtune.data.convert_chat import chat_sample, iter_records
from vlmtune.data.convert_hf import HF_OPTIONS, convert_hf
from vlmtune.data.convert_meta import Source, kind_of, repeated, sources_of, split_entry, top_object
from vlmtune.data.convert_output import Staging
from vlmtune.errors import ConfigError, DataError

CHAT_FORMATS = ("llava", "sharegpt", "internvl", "swift", "openai")
FORMATS = ("auto", *CHAT_FORMATS, "alpaca", "hf")
COMMON_OPTIONS = ("task", "images_outside", "check_images", "dedupe_ids", "fetch_urls", "boxes",
                  "allow_outside_root")


def _record_format(first: Any) -> str:
    if isinstance(first, dict) and "conversations" in first:
        return "llava"
    if isinstance(first, dict) and "messages" in first:
        return "sharegpt"
    if isinstance(first, dict) and (("instruction" in first and "output" in first)
                                    or ("query" in first and "response" in first)):
        return "alpaca"
    return "hf"


def detect_format(src: Path) -> str:
    """Guess the format from the path and the first record.

    Example:
        >>> detect_format(Path("shards/train-00000.parquet"))
        'hf'
    """
    if src.is_dir() or src.suffix in (".parquet", ".arrow", ".csv"):
        return "hf"
    for _, first in iter_records(src):
        return _record_format(first)
    raise DataError("no records: the file is empty", file=src)


def _check_options(fmt: str, options: dict[str, Any]) -> None:
    allowed = COMMON_OPTIONS + (HF_OPTIONS if fmt == "hf" else ())
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for fmt={fmt!r}; known: {list(allowed)}",
                          field=unknown[0])


def _sources(src: Path, entry: str | None, fmt: str, image_root: Path | None) -> list[Source]:
    """What to read: one file, or the entries a meta file / dataset_info.json names."""
    binary = src.suffix in (".parquet", ".arrow", ".csv")
    top = top_object(src) if src.is_file() and fmt != "hf" and not binary else None
    if kind_of(top) is not None:
        return sources_of(src, top, entry, image_root)
    if entry is not None:
        raise DataError(f"'#{entry}' names an entry, but this is not an InternVL meta file or a "
                        "LLaMA-Factory dataset_info.json", file=src)
    if top is not None and _record_format(top) == "hf" and fmt == "auto":
        raise DataError("a JSON object that is neither a record (conversations/messages, "
                        "instruction/output, query/response) nor a meta file (InternVL: entries "
                        "with annotation; LLaMA-Factory dataset_info.json: entries with file_name)",
                        file=src)
    root = image_root if image_root is not None else (src if src.is_dir() else src.parent)
    return [Source(src, detect_format(src) if fmt == "auto" else fmt, root)]


def box_rewriter(spec: str, staging: Staging):
    """``"FROM:TO"`` -> a Staging transform rewriting every sample's boxes (data/boxes.py)."""
    src, sep, dst = spec.partition(":")
    if not sep:
        raise ConfigError(f"expected FROM:TO, e.g. pixel:qwen2-vl, got {spec!r}", field="--boxes")
    convention(src), convention(dst)

    def transform(sample: dict, *, file, line: int) -> dict:
        try:
            return rewrite_sample(sample, src, dst, staging.staged_file)
        except ValueError as err:
            raise DataError(f"--boxes {spec}: {err}", file=file, line=line, field="images") from None

    return transform


def _read(source: Source, staging: Staging, task: str | None, fetch_urls: bool) -> None:
    if source.repeat != 1:
        rows = iter(repeated(list(iter_records(source.path)), source.repeat))
    else:
        rows = ((line, obj, 1) for line, obj in iter_records(source.path))
    for line, obj, copy in rows:
        kwargs = dict(file=source.path, line=line, staging=staging, task=task, fmt=source.fmt,
                      columns=source.columns, fetch_urls=fetch_urls)
        as_alpaca = source.fmt == "alpaca" if source.columns else _record_format(obj) == "alpaca"
        if as_alpaca:  # per record: a file may mix ms-swift's messages and query/response
            sample = alpaca_sample(obj, **kwargs)
        else:
            sample = chat_sample(obj, tags=source.tags, **kwargs)
        sample["id"] = source.prefix + sample["id"] + (f"-rep{copy}" if copy > 1 else "")
        staging.write(sample, file=source.path, line=line)


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
    (src, entry), out = split_entry(src), Path(out)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; expected one of {FORMATS}", field="fmt")
    if not src.exists():
        raise DataError("source not found", file=src)
    sources = _sources(src, entry, fmt, None if image_root is None else Path(image_root))
    hf = sources[0].fmt == "hf"
    _check_options("hf" if hf else sources[0].fmt, options)
    task, fetch_urls = options.pop("task", None), options.pop("fetch_urls", False)
    boxes = options.pop("boxes", None)
    staging = Staging(out, image_root=sources[0].image_root,
                      images_outside=options.pop("images_outside", "error"),
                      check_images=options.pop("check_images", True),
                      dedupe_ids=options.pop("dedupe_ids", False),
                      allow_outside_root=options.pop("allow_outside_root", False))
    if boxes:
        staging.transform = box_rewriter(boxes, staging)
    with staging:
        if hf:
            convert_hf(src, staging, task=task, fetch_urls=fetch_urls, **options)
        for source in sources if not hf else []:
            staging.image_root = source.image_root
            _read(source, staging, task, fetch_urls)
        if staging.count == 0:
            raise DataError("no samples to write: the source has no records", file=src)
        return staging.commit()
