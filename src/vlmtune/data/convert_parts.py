"""One turn's content in any peer's spelling -> canonical items, plus the images it carries.

Why one place: LLaVA writes ``<image>`` markers in a string; OpenAI-style chat writes
``{"type": "image_url", "image_url": {"url": ...}}`` parts; LLaMA-Factory v1 writes
``{"type": "text" | "image_url", "value": ...}``; HF chat datasets write
``{"type": "image", "image": ...}``. Each becomes ``{"type": "text", "text"}`` or
``{"type": "image"}`` where it stands. A part that names its image (URL, path, bytes)
returns that reference in order, so the record needs no separate ``images`` list.

Video the same way: ``<video>`` markers (LLaMA-Factory, ms-swift, InternVL), OpenAI-style
``{"type": "video_url", "video_url": {"url": ...}}``, LLaMA-Factory v1
``{"type": "video_url", "value": ...}`` and Qwen/HF ``{"type": "video", "video": ...}``
become ``{"type": "video"}``; each reference comes back tagged with its kind.

Per-turn training flags: ms-swift's ``"loss": false`` and LLaMA-Factory v1's
``"loss_weight": 0`` mark an assistant turn that stays in the context but is not
learned; it becomes ``"train": false`` on the canonical message. Other weights than 0 and
1 are refused (vlmtune labels tokens, it does not weight them).

Example:
    >>> items, refs = content_items([{"type": "image_url", "image_url": {"url": "a.png"}},
    ...                              {"type": "text", "text": "What is it?"}], "c", None)
    >>> items, refs
    ([{'type': 'image'}, {'type': 'text', 'text': 'What is it?'}], [('image', 'a.png', 'c[0]')])
"""

from __future__ import annotations

import re
from typing import Any

MARKER = "<image>"
MARKERS = {"<image>": "image", "<video>": "video"}
MEDIA = ("image", "video")
_MARKER_RE = re.compile("(" + "|".join(map(re.escape, MARKERS)) + ")")
_TEXT_KEYS = ("text", "value")
_PART_KINDS = {"image": "image", "image_url": "image", "video": "video", "video_url": "video"}
UNSUPPORTED = ("chosen", "rejected", "kto_tag", "rejected_response", "tools", "objects",
               "chat_template_kwargs", "audios", "audio")


def split_markers(text: str) -> list[dict[str, str]]:
    """Text with ``<image>``/``<video>`` markers -> content items, markers in place.

    The one newline that joins a marker to its text is dropped
    ("<image>\\nWhat" -> image, "What").

    Example:
        >>> split_markers("<image>\\nWhat is it?")
        [{'type': 'image'}, {'type': 'text', 'text': 'What is it?'}]
        >>> split_markers("<video>What happens?")
        [{'type': 'video'}, {'type': 'text', 'text': 'What happens?'}]
    """
    parts = _MARKER_RE.split(text)
    pieces, markers = parts[0::2], parts[1::2]
    items: list[dict[str, str]] = []
    for i, piece in enumerate(pieces):
        if i > 0:
            items.append({"type": MARKERS[markers[i - 1]]})
            piece = piece[1:] if piece.startswith("\n") else piece
        if i < len(pieces) - 1 and piece.endswith("\n"):
            piece = piece[:-1]
        if piece.strip():
            items.append({"type": "text", "text": piece})
    return items


def _part_ref(item: dict, kind: str) -> Any:
    """The reference an image/video part carries (``None`` for a bare placeholder)."""
    for key in (kind, f"{kind}_url", "url", "path", "value"):
        value = item.get(key)
        if isinstance(value, dict):  # OpenAI: {"image_url": {"url": ..., "detail": ...}}
            value = value.get("url", value.get("path", value.get("bytes")))
        if value is not None:
            return value
    return None


def content_items(value: Any, field: str, err) -> tuple[list[dict[str, str]], list[tuple[str, Any, str]]]:
    """A turn's content -> (canonical items, ``(kind, reference, its field)`` in order).

    ``err(field, message)`` builds the located DataError.
    """
    if isinstance(value, str):
        return split_markers(value), []
    if not isinstance(value, list):
        raise err(field, "must be a string or a list of content parts")
    items: list[dict[str, str]] = []
    refs: list[tuple[str, Any, str]] = []
    for j, item in enumerate(value):
        kind = item.get("type") if isinstance(item, dict) else None
        where = f"{field}[{j}]"
        if kind == "text":
            text = next((item[k] for k in _TEXT_KEYS if isinstance(item.get(k), str)), None)
            if text is None:
                raise err(where, 'a text part needs "text" (or "value") as a string')
            items.extend(split_markers(text))
        elif kind in _PART_KINDS:
            media = _PART_KINDS[kind]
            ref = _part_ref(item, media)
            if kind.endswith("_url") and ref is None:
                raise err(where, f'a {kind} part needs "{kind}": {{"url": ...}} or "value"')
            if isinstance(ref, list):  # Qwen's qwen-vl-utils: a video given as its frames
                raise err(where, f"a {media} given as a list (of frames) is not supported; "
                                 "give one file (vlmtune samples a video's frames itself)")
            items.append({"type": media})
            if ref is not None:
                refs.append((media, ref, where))
        else:
            raise err(where, f"unknown content part type {kind!r}; expected text, image, image_url, "
                             "video or video_url")
    for media in MEDIA:
        named = sum(r[0] == media for r in refs)
        if named and named != sum(c["type"] == media for c in items):
            raise err(field, f"some {media} parts name their {media} and others do not; name every one")
    return items, refs


def train_flag(turn: dict, role: str, field: str, err) -> bool | None:
    """False for a turn the peer marks as not learned, True/None otherwise (see module doc)."""
    loss, weight = turn.get("loss"), turn.get("loss_weight")
    if loss is not None and not isinstance(loss, bool):
        raise err(f"{field}.loss", f"must be true, false or null, got {loss!r}")
    if weight is not None and (isinstance(weight, bool) or weight not in (0, 1)):
        raise err(f"{field}.loss_weight", f"only 0 (not learned) or 1 are supported, got {weight!r}")
    off = loss is False or weight == 0
    on = loss is True or weight == 1
    if role != "assistant":
        if on and loss is True:
            raise err(f"{field}.loss", "vlmtune learns assistant turns only; a user or system turn "
                                       "cannot be trained on")
        return None
    return False if off else None


def refuse_unsupported(obj: dict, err) -> None:
    """Fields vlmtune cannot honour stop the conversion (dropping them would train on
    something else than the peer would): preference pairs, tools, ms-swift grounding
    ``objects`` (write the boxes into the answer, see ``--boxes``), per-sample
    ``chat_template_kwargs``, audio (LLaMA-Factory/ms-swift ``audios``)."""
    for key in UNSUPPORTED:
        if obj.get(key) not in (None, [], "", {}):
            raise err(key, "is not supported: vlmtune trains supervised answers with one chat "
                           "template per run (preference, tool, grounding-object, audio and "
                           "per-sample template fields would be dropped)")
