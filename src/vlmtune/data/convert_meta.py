"""Files that point at datasets: InternVL meta files and LLaMA-Factory ``dataset_info.json``.

Why: teams keep their data as the peer reads it, a JSON object naming annotation files,
not as one conversation file. Each entry becomes a :class:`Source` (a file, where its
images resolve, how to read it); ``convert`` streams every source into one output.

- InternVL meta: ``{"name": {"root", "annotation", "repeat_time"?, "length"?, ...}}``.
  Image paths resolve against ``root``; ``root`` and ``annotation`` are taken next to the
  meta file, or from the current directory as InternVL reads them; ``repeat_time`` < 1 keeps the first
  ``int(n * repeat_time)`` records and an integer > 1 repeats the file, as InternVL's
  dataset does (repeated copies get ``-rep2``, ``-rep3``... ids). With several entries,
  ids are prefixed ``<name>/``.
- LLaMA-Factory ``dataset_info.json``: ``{"name": {"file_name", "formatting"?, "columns"?,
  "tags"?}}``; ``file_name`` and images resolve against the file's folder (LLaMA-Factory's
  ``dataset_dir`` and default ``media_dir``). Hub entries (``hf_hub_url``, ``ms_hub_url``,
  ``script_url``, ``cloud_file_name``) are refused: vlmtune converts local files only.
  ``columns.videos`` names the video list (``<video>`` markers, as LLaMA-Factory's
  ``mllm_video_demo``). Preference (``ranking``) entries and audio/tool columns are refused.

Choose an entry with ``FILE#name``; without one, every entry of an InternVL meta file is
converted, and a ``dataset_info.json`` must have exactly one entry.

Example:
    >>> kind_of({"cap": {"root": "img/", "annotation": "cap.jsonl", "repeat_time": 1}})
    'internvl-meta'
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmtune.errors import DataError

HUB_KEYS = ("hf_hub_url", "ms_hub_url", "script_url", "cloud_file_name", "om_hub_url")
LF_KEYS = ("file_name", *HUB_KEYS)
LF_REFUSED_COLUMNS = ("audios", "tools", "chosen", "rejected", "kto_tag")


@dataclass
class Source:
    """One annotation file to read: format, image root, renames, repeats, id prefix."""

    path: Path
    fmt: str
    image_root: Path
    columns: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    repeat: float = 1
    prefix: str = ""


def split_entry(src: str | Path) -> tuple[Path, str | None]:
    """``"meta.json#name"`` -> (path, "name"); a path that exists as written is taken whole."""
    text = str(src)
    if "#" in text and not Path(text).exists():
        path, _, name = text.rpartition("#")
        return Path(path), name
    return Path(text), None


def top_object(path: Path) -> dict | None:
    """The file's content if it is one JSON object spread over lines (not JSON lines)."""
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        first = handle.readline()
        if not first.lstrip().startswith("{"):
            return None
        try:
            obj = json.loads(first)
        except json.JSONDecodeError:
            obj = None
        if obj is None:
            try:
                obj = json.loads(first + handle.read())
            except json.JSONDecodeError:
                return None
    return obj if isinstance(obj, dict) else None


def kind_of(obj: Any) -> str | None:
    """``internvl-meta``, ``dataset_info`` or None (an ordinary record)."""
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, dict) for v in obj.values()):
        return None
    if all("annotation" in v for v in obj.values()):
        return "internvl-meta"
    if all(any(k in v for k in LF_KEYS) for v in obj.values()):
        return "dataset_info"
    return None


def _pick(obj: dict, name: str | None, path: Path, kind: str) -> dict[str, dict]:
    if name is None:
        if kind == "dataset_info" and len(obj) > 1:
            raise DataError(f"{len(obj)} datasets in this dataset_info.json; choose one as "
                            f"{path.name}#NAME (names: {', '.join(sorted(obj))})", file=path)
        return obj
    if name not in obj:
        raise DataError(f"no entry {name!r}; entries: {', '.join(sorted(obj))}", file=path, field=name)
    return {name: obj[name]}


def _base(meta: Path, annotation: str) -> Path:
    """Where an entry's relative paths start: the meta file's folder, or (InternVL opens
    them as given) the current directory when the annotation is found only from there."""
    if (meta.parent / annotation).exists() or not Path(annotation).exists():
        return meta.parent
    return Path.cwd()


def _internvl(path: Path, entries: dict[str, dict], several: bool) -> list[Source]:
    sources = []
    for name, entry in entries.items():
        for key in ("root", "annotation"):
            if not isinstance(entry.get(key), str):
                raise DataError(f"'{key}' must be a path string", file=path, field=f"{name}.{key}")
        repeat = entry.get("repeat_time", 1)
        if isinstance(repeat, bool) or not isinstance(repeat, (int, float)) or repeat <= 0 or (
                repeat > 1 and repeat != int(repeat)):
            raise DataError("repeat_time must be a fraction in (0, 1] or a whole number",
                            field=f"{name}.repeat_time", file=path)
        base = _base(path, entry["annotation"])
        sources.append(Source(base / entry["annotation"], "internvl", base / entry["root"],
                              repeat=repeat, prefix=f"{name}/" if several else ""))
    return sources


def _llamafactory(path: Path, name: str, entry: dict) -> Source:
    def bad(key: str, message: str) -> DataError:
        return DataError(message, file=path, field=f"{name}.{key}")

    hub = next((k for k in HUB_KEYS if entry.get(k)), None)
    if hub:
        raise bad(hub, "hub datasets are not downloaded; convert a local copy (file_name)")
    if entry.get("ranking"):
        raise bad("ranking", "preference datasets are not supported: vlmtune trains supervised answers")
    formatting = entry.get("formatting", "alpaca")
    if formatting not in ("alpaca", "sharegpt"):
        raise bad("formatting", f"expected alpaca or sharegpt, got {formatting!r}")
    columns, tags = entry.get("columns") or {}, entry.get("tags") or {}
    if not isinstance(columns, dict) or not isinstance(tags, dict):
        raise bad("columns", "columns and tags must be objects")
    refused = [c for c in LF_REFUSED_COLUMNS if c in columns]
    if refused:
        raise bad(f"columns.{refused[0]}", f"the {refused[0]} column is not supported by this converter")
    base = path.parent
    target = base / str(entry.get("file_name"))
    if target.is_dir():
        raise bad("file_name", "a folder of files: convert each file (or use --format hf)")
    fmt = "sharegpt" if formatting == "sharegpt" else "alpaca"
    if fmt == "sharegpt":
        columns = {"messages": columns.get("messages", "conversations"), **columns}
    return Source(target, fmt, base, columns=columns, tags=tags)


def sources_of(path: Path, obj: dict, name: str | None, image_root: Path | None) -> list[Source]:
    """The sources a meta file or dataset_info.json names (see module doc)."""
    kind = kind_of(obj)
    entries = _pick(obj, name, path, kind)
    if kind == "internvl-meta":
        sources = _internvl(path, entries, several=len(entries) > 1)
    else:
        sources = [_llamafactory(path, n, e) for n, e in entries.items()]
    for source in sources:
        if image_root is not None:
            source.image_root = image_root
        if not source.path.is_file():
            raise DataError(f"annotation file not found: {source.path}", file=path)
    return sources


def repeated(records: list[tuple[int, Any]], repeat: float) -> list[tuple[int, Any, int]]:
    """InternVL's repeat_time: a prefix for < 1, whole copies for > 1; (line, obj, copy)."""
    if repeat < 1:
        return [(line, obj, 1) for line, obj in records[: int(len(records) * repeat)]]
    return [(line, obj, k) for k in range(1, int(repeat) + 1) for line, obj in records]
