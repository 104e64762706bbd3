"""Hugging Face ``datasets`` on local files (parquet, json/jsonl, arrow, csv, save_to_disk).

Why a separate reader: Hub datasets come as parquet shards with images embedded as
bytes, with columns named by each author. Rows are read through Arrow without decoding
images, and embedded bytes are written unchanged (no re-encoding) to
``<out stem>_images/<content hash>.<ext>`` under the output root, so a picture shared by
several rows is stored once.

Columns (all overridable by option; defaults are tried in order):

- images: ``image_column`` -> ``images`` or ``image``; a value or a list of values, each
  embedded bytes, an ``{"bytes", "path"}`` struct (the ``datasets.Image`` storage) or a
  path relative to ``image_root`` (default: the source folder).
- conversation: ``messages_column`` -> ``messages`` or ``conversations`` (role/content or
  from/value turns; content a string with ``<image>`` markers or a list of items),
- otherwise ``question_column`` (``question``) and ``answer_column`` (``answer`` or
  ``answers``; a list gives several references, the first is the assistant turn).
- ``id_column`` (``id``), ``task_column`` (``task``), ``split`` (``train``): in a folder
  of shards, files named or foldered by the split are taken, else all files.

Without ``<image>`` markers, all of a row's images go before the question (HF rows have
no other notion of placement). Errors name the source and the 1-based **row** in the
place of the line.

Example:
    >>> convert(Path("vqa.parquet"), Path("data/train.jsonl"), fmt="hf")  # doctest: +SKIP
    1000
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlmtune.data.convert_chat import split_markers, to_messages
from vlmtune.data.convert_refs import store_image, store_media
from vlmtune.errors import ConfigError, DataError, InputError
# Function-level imports: `datasets` is optional (the hf extra) and slow to import.

BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".arrow": "arrow",
            ".csv": "csv"}
HF_OPTIONS = ("image_column", "messages_column", "question_column", "answer_column",
              "id_column", "task_column", "split")


def _data_files(src: Path, split: str) -> tuple[str, list[str]]:
    """(builder name, files) for a file or a folder of shards of one type."""
    files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.suffix in BUILDERS)
    if not files:
        raise DataError(f"no data files ({', '.join(BUILDERS)}) found", file=src)
    kinds = {BUILDERS.get(f.suffix) for f in files}
    if None in kinds or len(kinds) > 1:
        raise DataError(f"expected files of one type among {sorted(BUILDERS)}, found "
                        f"{sorted({f.suffix for f in files})}", file=src)
    named = [f for f in files if re.match(rf"{re.escape(split)}([-_.]|$)", f.stem)
             or split in f.relative_to(src).parts[:-1]] if src.is_dir() else []
    return kinds.pop(), [str(f) for f in (named or files)]


@contextlib.contextmanager
def _no_progress_bars(datasets):
    """Turn datasets' progress bars off for one call, restoring what the caller had."""
    was_off = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_off:
            datasets.enable_progress_bars()


def _load(src: Path, split: str, cache_dir: str):
    try:
        import datasets
    except ImportError:
        raise InputError("reading HF datasets needs the `datasets` package: "
                         "pip install 'vlmtune[hf]'") from None
    try:
        if src.is_dir() and any((src / n).exists() for n in ("state.json", "dataset_dict.json")):
            ds = datasets.load_from_disk(str(src))
            return ds[split] if isinstance(ds, datasets.DatasetDict) else ds
        builder, files = _data_files(src, split)
        with _no_progress_bars(datasets):  # "Generating train split": our own line reports the count
            return datasets.load_dataset(builder, data_files=files, split="train", cache_dir=cache_dir)
    except DataError:
        raise
    except Exception as err:  # datasets raises many types for unreadable input
        raise DataError(f"datasets could not load it: {type(err).__name__}: {err}", file=src) from None


def _pick(columns: list[str], given: str | None, defaults: tuple[str, ...], option: str) -> str | None:
    if given is not None:
        if given not in columns:
            raise ConfigError(f"column {given!r} not in the dataset (columns: {columns})", field=option)
        return given
    return next((c for c in defaults if c in columns), None)


def _columns(columns: list[str], opts: dict[str, Any], src: Path) -> dict[str, str | None]:
    cols = {
        "image": _pick(columns, opts.get("image_column"), ("images", "image"), "image_column"),
        "messages": _pick(columns, opts.get("messages_column"), ("messages", "conversations"),
                          "messages_column"),
        "question": _pick(columns, opts.get("question_column"), ("question",), "question_column"),
        "answer": _pick(columns, opts.get("answer_column"), ("answer", "answers"), "answer_column"),
        "id": _pick(columns, opts.get("id_column"), ("id",), "id_column"),
        "task": _pick(columns, opts.get("task_column"), ("task",), "task_column"),
    }
    if cols["messages"] is None and (cols["question"] is None or cols["answer"] is None):
        raise DataError(f"no conversation column (messages/conversations) and no question/answer "
                        f"columns; columns are {columns}: name them with --column messages=NAME, "
                        "or --column question=NAME --column answer=NAME", file=src)
    return cols


def _answers(value: Any, src: Path, row: int, field: str) -> list[str]:
    answers = [value] if isinstance(value, str) else value
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise DataError("answer must be a string or a non-empty list of strings",
                        file=src, line=row, field=field)
    return answers


def row_sample(row: dict, row_no: int, cols: dict[str, str | None], *, src: Path, staging,
               task: str | None, fetch_urls: bool = False) -> dict:
    """One dataset row -> one canonical sample.

    Example:
        >>> import tempfile
        >>> from vlmtune.data.convert_output import Staging
        >>> root = Path(tempfile.mkdtemp())
        >>> cols = {"image": None, "messages": None, "question": "q", "answer": "a",
        ...         "id": None, "task": None}
        >>> with Staging(root / "o.jsonl", image_root=root) as st:
        ...     s = row_sample({"q": "2+2?", "a": ["4", "four"]}, 1, cols, src=root / "d.parquet",
        ...                    staging=st, task="vqa")
        >>> s["id"], s["answers"], s["messages"][1]["content"][0]["text"]
        ('d-1', ['4', 'four'], '4')
    """
    def err(field: str, message: str) -> DataError:
        return DataError(f"{message} (row {row_no})", file=src, line=row_no, field=field)

    raw = row.get(cols["image"]) if cols["image"] else None
    values = [] if raw is None else raw if isinstance(raw, list) else [raw]
    name = cols["image"] or "images"

    def place(refs: list[tuple[Any, str]]) -> list[str]:
        return [store_image(v, staging, file=src, line=row_no, field=where, fetch_urls=fetch_urls)
                for v, where in refs]

    images = place([(v, f"{name}[{i}]") for i, v in enumerate(values)])
    if cols["messages"]:
        messages, inline = to_messages(row.get(cols["messages"]), len(images), err,
                                       field=cols["messages"], prepend_all=True)
        images += place([(ref, where) for kind, ref, where in inline if kind == "image"])
        videos = [store_media(ref, staging, kind="video", file=src, line=row_no, field=where,
                              fetch_urls=fetch_urls) for kind, ref, where in inline if kind == "video"]
        answers = None
    else:
        question = row.get(cols["question"])
        if not isinstance(question, str) or not question.strip():
            raise err(cols["question"], "must be a non-empty string")
        answers = _answers(row.get(cols["answer"]), src, row_no, cols["answer"])
        turns = [{"role": "user", "content": split_markers(question)},
                 {"role": "assistant", "content": [{"type": "text", "text": answers[0]}]}]
        messages, _ = to_messages(turns, len(images), err, field=cols["question"], prepend_all=True)
    last = next(m for m in reversed(messages) if m["role"] == "assistant")
    sid = row.get(cols["id"]) if cols["id"] else None
    sample = {"id": str(sid) if sid is not None else f"{src.stem}-{row_no}", "images": images,
              "messages": messages}
    if cols["messages"] and videos:  # video parts naming their file (Qwen/HF chat style)
        sample["videos"] = videos
    task = task or (row.get(cols["task"]) if cols["task"] else None)
    if task:
        sample["task"] = str(task)
    sample["answers"] = answers or ["".join(c.get("text", "") for c in last["content"])]
    return sample


def iter_rows(ds) -> Iterator[dict]:
    """Rows as plain Python objects, images left undecoded (Arrow format)."""
    for table in ds.with_format("arrow").iter(batch_size=256):
        yield from table.to_pylist()


def convert_hf(src: Path, staging, *, task: str | None = None, fetch_urls: bool = False,
               **opts: Any) -> None:
    """Stream every row of the dataset at ``src`` through ``staging`` (see module doc)."""
    unknown = sorted(set(opts) - set(HF_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for fmt='hf'; known: {list(HF_OPTIONS)}",
                          field=unknown[0])
    with tempfile.TemporaryDirectory(prefix="vlmtune-hf-cache-") as cache_dir:
        ds = _load(src, opts.get("split") or "train", cache_dir)
        cols = _columns(list(ds.column_names), opts, src)
        for row_no, row in enumerate(iter_rows(ds), 1):
            sample = row_sample(row, row_no, cols, src=src, staging=staging, task=task,
                                fetch_urls=fetch_urls)
            staging.write(sample, file=src, line=row_no)
        del ds  # release memory-mapped cache files before the folder is removed
