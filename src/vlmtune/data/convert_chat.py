"""LLaVA / ShareGPT / InternVL conversation records -> canonical samples.

The three formats share one shape, so one reader serves them::

    {"id": "1", "image": "a.jpg",            # or "images": [...]; InternVL: str or list
     "system": "...",                         # optional
     "conversations": [{"from": "human", "value": "<image>\\nWhat is this?"},
                       {"from": "gpt", "value": "A cat."}]}

``from``/``value`` may also be ``role``/``content`` (OpenAI-style ShareGPT), with roles
human|user, gpt|assistant, system. InternVL's ``width``/``height`` are kept on the sample
(box conversion reads them); lines without an image are text-only samples. Turns may also
be ms-swift/OpenAI ``messages`` with content parts and per-turn ``loss``
(:mod:`vlmtune.data.convert_parts`); image references may be paths, ``file://``/``data:``
URLs (:mod:`vlmtune.data.convert_refs`).

Video: ``video`` (InternVL, a path) or ``videos`` (LLaMA-Factory, ms-swift: a list) with
``<video>`` markers, or video parts naming their file, follow the same rules as images
and become ``{"type": "video"}`` parts plus the sample's ``videos`` list (what
:mod:`vlmtune.data.schema` and :mod:`vlmtune.data.video` read). Files are staged like
images (same inside-the-root policy, copies under ``<out stem>_images/``).

Image markers: every ``<image>`` becomes a ``{"type": "image"}`` item where it stands;
the text before and after is kept, minus the one newline that joins it to the marker
("<image>\\nWhat" -> image, "What"). The number of markers must equal the number of
images. If there are no markers and exactly one image, the image goes before the first
user turn's text, as LLaVA's own preprocessing does; with several images and no markers
the placement is ambiguous and the record is refused.

Example:
    >>> split_markers("<image>\\nWhat is it?")
    [{'type': 'image'}, {'type': 'text', 'text': 'What is it?'}]
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlmtune.data.convert_parts import MEDIA, content_items, refuse_unsupported, split_markers, train_flag
from vlmtune.data.convert_refs import store_media
from vlmtune.data.convert_meta import top_object
from vlmtune.data.schema import iter_jsonl
from vlmtune.errors import DataError

__all__ = ["chat_sample", "iter_records", "media_of", "split_markers", "stored_media", "to_messages"]
USER, ASSISTANT, SYSTEM = ("human", "user"), ("gpt", "assistant", "model"), ("system",)
TOOL = ("observation", "function_call", "function", "tool", "tool_call", "tool_response")


def iter_records(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line, object)`` from a JSON-lines file or a JSON array file.

    For a JSON array the line is where the element starts, so errors point into the file.

    Example:
        >>> import tempfile; p = Path(tempfile.mkdtemp()) / "a.json"
        >>> _ = p.write_text('[\\n {"a": 1},\\n {"a": 2}\\n]')
        >>> list(iter_records(p))
        [(2, {'a': 1}), (3, {'a': 2})]
    """
    with path.open("rb") as handle:
        head = handle.read(4096).decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if head.startswith("["):
        yield from _iter_array(path)
        return
    try:
        yield from iter_jsonl(path, what="file")
    except DataError as err:
        whole = top_object(path) if err.line == 1 else None
        if whole is None:
            raise
        yield 1, whole  # one record spread over several lines


def _iter_array(path: Path) -> Iterator[tuple[int, Any]]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"not UTF-8 text (byte {data[err.start]:#04x}); re-save the file as UTF-8", file=path,
                        line=1 + data.count(b"\n", 0, err.start)) from None
    decoder, pos, line = json.JSONDecoder(), text.index("[") + 1, 1 + text.count("\n", 0, text.index("["))
    ws = re.compile(r"[ \t\r\n]*")

    def skip(i: int) -> int:
        nonlocal line
        end = ws.match(text, i).end()
        line += text.count("\n", i, end)
        return end

    def fail(msg: str, at: int) -> DataError:
        return DataError(f"invalid JSON: {msg}", file=path, line=line + text.count("\n", pos, at))

    pos = skip(pos)
    if text.startswith("]", pos):
        return
    while True:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise fail(err.msg, err.pos) from None
        yield line, obj
        line += text.count("\n", pos, end)
        pos = skip(end)
        if text.startswith("]", pos):
            return
        if not text.startswith(",", pos):
            raise fail("expected ',' or ']' between array elements", pos)
        pos = skip(pos + 1)


def _role(turn: dict, field: str, err, tags: dict[str, str]) -> str:
    key = tags.get("role_tag") or ("from" if "from" in turn else "role")
    raw = turn.get(key)
    name = str(raw).lower()
    custom = {tags.get("user_tag"): "user", tags.get("assistant_tag"): "assistant",
              tags.get("system_tag"): "system"}
    if raw in custom and raw is not None:
        return custom[raw]
    for role, names in (("user", USER), ("assistant", ASSISTANT), ("system", SYSTEM)):
        if name in names:
            return role
    if name in TOOL or raw in (tags.get("observation_tag"), tags.get("function_tag")):
        raise err(f"{field}.{key}", f"tool turns ({raw!r}) are not supported: vlmtune trains "
                                    "user/assistant conversations")
    raise err(f"{field}.{key}", f"unknown speaker {raw!r}; expected human|user, gpt|assistant or system")


def to_messages(turns: Any, n_images: int, err, *, field: str = "conversations",
                system: str | None = None, prepend_all: bool = False,
                tags: dict[str, str] | None = None,
                n_videos: int = 0) -> tuple[list[dict], list[tuple[str, Any, str]]]:
    """Turns ``[{from, value}]`` -> (canonical messages with image/video placeholders, inline
    refs as ``(kind, reference, field)``).

    ``err(field, message)`` builds the located DataError. ``prepend_all`` lets
    marker-less turns take all images up front (HF datasets); otherwise only one.
    ``tags`` renames keys and speakers (LLaMA-Factory's ``role_tag``, ``content_tag``,
    ``user_tag``...). Inline refs are images/videos named inside content parts; when there
    are any of a kind, the record-level count of that kind (``n_images``, ``n_videos``) must be 0.
    """
    tags = tags or {}
    if not isinstance(turns, list) or not turns:
        raise err(field, "missing or empty: expected a list of {from, value} turns")
    messages = [{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []
    inline: list[tuple[str, Any, str]] = []
    for i, turn in enumerate(turns):
        where = f"{field}[{i}]"
        if not isinstance(turn, dict):
            raise err(where, "each turn must be an object with 'from' and 'value'")
        role = _role(turn, where, err, tags)
        key = tags.get("content_tag") or (
            "value" if "value" in turn or ("content" not in turn and "from" in turn) else "content")
        content, refs = content_items(turn.get(key), f"{where}.{key}", err)
        kind = next((c["type"] for c in content if c["type"] in MEDIA), None)
        if role != "user" and kind:
            raise err(f"{where}.{key}", f"{kind}s are only allowed in user turns")
        inline.extend(refs)
        message = {"role": role, "content": content}
        if train_flag(turn, role, where, err) is False:
            message["train"] = False
        messages.append(message)
    for kind, listed in (("video", n_videos), ("image", n_images)):  # unmarked: images, then videos
        named = sum(r[0] == kind for r in inline)
        if named and listed:
            raise err(field, f"{kind}s are named both inside the turns and in the record's {kind} list")
        _place_media(messages, kind, named or listed, field, err, prepend_all)
    _check_turns(messages, field, err)
    return messages, inline


def _place_media(messages: list[dict], kind: str, count: int, field: str, err, prepend_all: bool) -> None:
    markers = sum(c["type"] == kind for m in messages for c in m["content"])
    if markers == 0 and (count == 1 or (prepend_all and count > 1)):
        first_user = next((m for m in messages if m["role"] == "user"), None)
        if first_user is not None:
            first_user["content"][:0] = [{"type": kind}] * count
            return
    if markers != count:
        raise err(field, f"{markers} <{kind}> marker(s) but {count} {kind}(s)"
                  + (f"; with several {kind}s, mark each one's place" if markers == 0 else ""))


def _check_turns(messages: list[dict], field: str, err) -> None:
    roles = [m["role"] for m in messages if m["role"] != "system"]
    if not roles or roles[0] != "user":
        raise err(field, "the first turn (after system) must be from the user")
    if roles[-1] != "assistant":
        raise err(field, "the last turn must be from the assistant (it is the answer)")
    for i, message in enumerate(messages):
        if message["role"] == "assistant" and not any(c.get("text", "").strip() for c in message["content"]):
            raise err(field, f"assistant turn {i} is empty")
        if not message["content"]:
            raise err(field, f"turn {i} ({message['role']}) is empty")


def _refs_of(obj: dict, err, kind: str, column: str | None) -> tuple[list[Any], str]:
    """One kind's record-level references (``image``/``images`` or ``video``/``videos``,
    or the LLaMA-Factory column) and the field they came from."""
    keys = (column,) if column is not None else (kind, f"{kind}s")
    if column is None and obj.get(kind) is not None and obj.get(f"{kind}s") is not None:
        raise err(kind, f"give either '{kind}' or '{kind}s', not both")
    for key in keys:
        value = obj.get(key)
        if value is None:
            continue
        value = [value] if isinstance(value, (str, dict)) else value
        if not isinstance(value, list):
            raise err(key, "must be a path or a list of paths")
        return value, key
    return [], keys[-1]


def media_of(obj: dict, err, columns: dict[str, str] | None = None) -> dict[str, tuple[list[Any], str]]:
    """``{"image": (refs, field), "video": (refs, field)}`` for the record's own lists;
    ``columns`` (LLaMA-Factory) may rename ``images`` and ``videos``."""
    columns = columns or {}
    return {kind: _refs_of(obj, err, kind, columns.get(f"{kind}s")) for kind in MEDIA}


def stored_media(media: dict[str, tuple[list[Any], str]], inline: list[tuple[str, Any, str]], staging,
                 *, file: Path, line: int, fetch_urls: bool) -> dict[str, list[str]]:
    """Stage every image and video (record lists, or the refs named inside the turns);
    ``{"image": [paths], "video": [paths]}`` relative to the dataset root."""
    out = {}
    for kind, (refs, key) in media.items():
        pairs = [(ref, key if len(refs) == 1 and key == kind else f"{key}[{i}]") for i, ref in enumerate(refs)]
        pairs = [(ref, where) for k, ref, where in inline if k == kind] or pairs
        out[kind] = [store_media(ref, staging, kind=kind, file=file, line=line, field=where,
                                 fetch_urls=fetch_urls) for ref, where in pairs]
    return out


def finish_sample(obj: dict, messages: list[dict], images: list[str], *, file: Path, line: int,
                  task: str | None, videos: list[str] | None = None) -> dict:
    """The canonical sample: id, images, videos (if any), messages, task, answers
    (+ InternVL's width/height)."""
    sid = obj.get("id")
    sample = {"id": str(sid) if sid is not None else f"{file.stem}-{line}", "images": images,
              "messages": messages}
    if videos:
        sample["videos"] = videos
    if task:
        sample["task"] = task
    last = next(m for m in reversed(messages) if m["role"] == "assistant")
    sample["answers"] = ["".join(c.get("text", "") for c in last["content"])]
    sizes = recorded_sizes(obj, len(images))
    if sizes:
        sample["image_sizes"] = sizes
    return sample


def recorded_sizes(obj: dict, n_images: int) -> list[list[int]] | None:
    """InternVL's recorded ``width``/``height`` (or ``width_list``/``height_list``) as
    ``[[w, h], ...]`` per image; kept so box conversions can be checked against them."""
    widths, heights = obj.get("width_list", obj.get("width")), obj.get("height_list", obj.get("height"))
    widths = [widths] if isinstance(widths, int) else widths
    heights = [heights] if isinstance(heights, int) else heights
    if (not isinstance(widths, list) or not isinstance(heights, list) or len(widths) != n_images
            or len(heights) != n_images or not n_images):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in widths + heights):
        return None
    return [[w, h] for w, h in zip(widths, heights)]


def chat_sample(obj: Any, *, file: Path, line: int, staging, task: str | None = None,
                fmt: str = "llava", columns: dict[str, str] | None = None,
                tags: dict[str, str] | None = None, fetch_urls: bool = False) -> dict:
    """One LLaVA/ShareGPT/InternVL/ms-swift/OpenAI record -> one canonical sample.

    ``columns`` (LLaMA-Factory ``dataset_info.json``) renames ``messages``, ``system``,
    ``images`` and ``videos``; ``tags`` renames turn keys and speakers.

    Example:
        >>> import tempfile
        >>> from vlmtune.data.convert_output import Staging
        >>> root = Path(tempfile.mkdtemp()); _ = (root / "a.jpg").write_bytes(b"")
        >>> turns = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "A cat."}]
        >>> with Staging(root / "out.jsonl", image_root=root) as st:
        ...     s = chat_sample({"image": "a.jpg", "conversations": turns},
        ...                     file=root / "src.json", line=1, staging=st)
        >>> s["images"], s["messages"][0]["content"][0], s["answers"]
        (['a.jpg'], {'type': 'image'}, ['A cat.'])
    """
    def err(field: str, message: str) -> DataError:
        return DataError(f"{message} (read as {fmt})", file=file, line=line, field=field)

    columns = columns or {}
    if not isinstance(obj, dict):
        raise err("sample", "each record must be a JSON object")
    refuse_unsupported(obj, err)
    media = media_of(obj, err, columns)
    turns_key = columns.get("messages") or (
        "conversations" if "conversations" in obj or "messages" not in obj else "messages")
    system = obj.get(columns.get("system", "system"))
    if system is not None and not isinstance(system, str):
        raise err(columns.get("system", "system"), "must be a string")
    messages, inline = to_messages(obj.get(turns_key), len(media["image"][0]), err, field=turns_key,
                                   system=system, tags=tags, n_videos=len(media["video"][0]))
    paths = stored_media(media, inline, staging, file=file, line=line, fetch_urls=fetch_urls)
    return finish_sample(obj, messages, paths["image"], file=file, line=line, task=task,
                         videos=paths["video"])
