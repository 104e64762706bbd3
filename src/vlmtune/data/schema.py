"""The canonical sample (docs/design.md) and its loader, which refuses bad lines clearly.

One JSON object per line::

    {"id": "s1", "images": ["img/0001.png"],
     "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where?"}]},
                  {"role": "assistant", "content": [{"type": "text", "text": "[12, 40, 56, 84]"}]}],
     "task": "grounding", "answers": ["[12, 40, 56, 84]"]}

``content`` may also be a plain string (text only). An assistant message may carry
``"train": false``: it stays in the conversation as context but its tokens are not
labelled (converters write it for ms-swift's ``loss: false``). ``image_sizes``
(``[[width, height], ...]``, kept from InternVL's records) is carried, not read. A
``{"type": "video"}`` part takes the next path of ``videos`` (a clip; frames sampled per
:mod:`vlmtune.data.video`). Image and video paths resolve inside the dataset root (by
default the JSONL file's directory) and may not escape it unless ``allow_outside_root``.
``answers`` defaults to the last assistant turn's text.
Every problem raises :class:`DataError` with ``file:line: field: message``.

Example:
    >>> samples = load_samples("data/train.jsonl")  # doctest: +SKIP
    >>> samples[0].prompt_messages[-1]["role"]
    'user'
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from vlmtune.data.images import DEFAULT_MAX_PIXELS, OversizedImage, open_image
from vlmtune.data.video import Clip, VideoSampling, read_clip
from vlmtune.errors import DataError
# Function-level imports: PIL loads only when images are opened.

ROLES = ("system", "user", "assistant")


@dataclass
class Sample:
    id: str
    images: list[Path]
    messages: list[dict[str, Any]]
    task: str | None = None
    answers: list[str] = field(default_factory=list)
    options: list[str] | None = None
    file: str = "<memory>"
    line: int = 0
    videos: list[Path] = field(default_factory=list)
    video_sampling: VideoSampling = VideoSampling()
    max_pixels: int = DEFAULT_MAX_PIXELS  # data.max_image_pixels
    oversized: str = "resize"  # data.oversized_images: resize | skip | error
    shrunk: int = 0  # images shrunk to max_pixels by the last load_images()

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def prompt_messages(self) -> list[dict[str, Any]]:
        """The conversation up to (not including) the final assistant turn."""
        last = len(self.messages)
        while last and self.messages[last - 1]["role"] == "assistant":
            last -= 1
        return self.messages[:last]

    def error(self, field_name: str, message: str) -> DataError:
        return DataError(message, file=self.file, line=self.line, field=field_name)

    def load_images(self) -> list[Any]:
        """Open every image as RGB PIL, capped at ``max_pixels`` (vlmtune.data.images); a
        corrupt, unreadable or (by policy) oversized file names its field."""
        out, self.shrunk = [], 0
        for i, path in enumerate(self.images):
            try:
                image, shrunk = open_image(path, max_pixels=self.max_pixels, policy=self.oversized)
            except OversizedImage as err:
                raise ImageTooLarge(f"{path}: {err}", file=self.file, line=self.line, field=f"images[{i}]") from None
            except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
                raise self.error(f"images[{i}]", f"cannot read image {path}: {err}") from None
            out.append(image)
            self.shrunk += shrunk
        return out

    def load_videos(self) -> list[Clip]:
        """Decode every video and sample its frames; an unreadable file names its field."""
        out = []
        for i, path in enumerate(self.videos):
            try:
                out.append(read_clip(path, self.video_sampling))
            except ValueError as err:
                raise self.error(f"videos[{i}]", str(err)) from None
        return out


class ImageTooLarge(DataError):
    """An image above ``data.max_image_pixels`` (policy skip/error) or a decompression bomb."""


def text_of(message: dict[str, Any]) -> str:
    return "".join(c["text"] for c in message["content"] if c["type"] == "text")


def _normalise_content(content: Any, where: str, err) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise err(where, "must be a string or a list of {type: text|image|video} items")
    out = []
    for j, item in enumerate(content):
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text" and isinstance(item.get("text"), str):
            out.append({"type": "text", "text": item["text"]})
        elif kind in ("image", "video"):
            out.append({"type": kind})
        else:
            raise err(f"{where}[{j}]",
                      'expected {"type": "text", "text": ...}, {"type": "image"} or {"type": "video"}')
    return out


def _check_messages(raw: Any, err) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise err("messages", "must be a non-empty list of {role, content}")
    messages = []
    for i, msg in enumerate(raw):
        if not isinstance(msg, dict) or msg.get("role") not in ROLES:
            raise err(f"messages[{i}].role", f"must be one of {', '.join(ROLES)}")
        if "content" not in msg:
            raise err(f"messages[{i}].content", "is required")
        content = _normalise_content(msg["content"], f"messages[{i}].content", err)
        message = {"role": msg["role"], "content": content}
        if "train" in msg:  # an assistant turn kept as context but not learned
            if msg["role"] != "assistant" or not isinstance(msg["train"], bool):
                raise err(f"messages[{i}].train", "only assistant turns take train: true|false")
            if msg["train"] is False:
                message["train"] = False
        messages.append(message)
    return messages


def _resolve_paths(raw: Any, key: str, root: Path, allow_outside: bool, err) -> list[Path]:
    """``images`` or ``videos``: paths inside the dataset root that exist."""
    what = key[:-1]
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(p, str) and p for p in raw):
        raise err(key, f"must be a list of {what} paths")
    paths = []
    for i, rel in enumerate(raw):
        path = (root / rel).resolve()
        if not allow_outside and not path.is_relative_to(root):
            raise err(f"{key}[{i}]", f"path {rel!r} escapes the dataset root {root} "
                                     "(set data.allow_outside_root: true to allow)")
        if not path.is_file():
            raise err(f"{key}[{i}]", f"{what} not found: {path}")
        paths.append(path)
    return paths


def parse_sample(obj: Any, *, root: Path, file: str, line: int, allow_outside_root: bool = False,
                 require_answer: bool = True, video: VideoSampling = VideoSampling()) -> Sample:
    """Validate one decoded JSON object into a Sample."""
    def err(field_name: str, message: str) -> DataError:
        return DataError(message, file=file, line=line, field=field_name)

    if not isinstance(obj, dict):
        raise err("sample", "each line must be a JSON object")
    messages = _check_messages(obj.get("messages"), err)
    images = _resolve_paths(obj.get("images", obj.get("image")), "images", root, allow_outside_root, err)
    videos = _resolve_paths(obj.get("videos", obj.get("video")), "videos", root, allow_outside_root, err)
    for kind, paths in (("image", images), ("video", videos)):
        n_markers = sum(c["type"] == kind for m in messages for c in m["content"])
        if n_markers != len(paths):
            raise err("messages", f"{n_markers} {kind} placeholder(s) but {len(paths)} {kind}(s) in '{kind}s'")
    assistant = [m for m in messages if m["role"] == "assistant"]
    if require_answer and not assistant:
        raise err("messages", "no assistant turn: nothing to learn from this sample")
    if require_answer and any(not text_of(m).strip() for m in assistant):
        raise err("messages", "an assistant turn has an empty answer")
    answers = obj.get("answers")
    if answers is None:
        answers = [text_of(assistant[-1])] if assistant else []
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise err("answers", "must be a list of strings")
    options = obj.get("options")
    if options is not None and (not isinstance(options, list) or not all(isinstance(o, str) for o in options)):
        raise err("options", "must be a list of strings")
    task = obj.get("task")
    if task is not None and not isinstance(task, str):
        raise err("task", "must be a string")
    sid = obj.get("id", f"{Path(file).stem}-{line}")
    return Sample(str(sid), images, messages, task, answers, options, file, line, videos, video)


def iter_jsonl(path: str | Path, *, what: str = "file") -> Iterator[tuple[int, Any]]:
    """``(line number, decoded object)`` for each non-blank line; a bad line names itself."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found", file=path)
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")  # a byte-order mark is not part of line 1
            except UnicodeDecodeError as err:
                raise DataError(f"not UTF-8 text (byte {raw[err.start]:#04x} at column {err.start + 1}); "
                                "re-save the file as UTF-8", file=path, line=line_no) from None
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"invalid JSON: {err.msg} (column {err.colno})", file=path, line=line_no) from None


def load_samples(path: str | Path, *, root: str | Path | None = None, allow_outside_root: bool = False,
                 require_answer: bool = True, limit: int | None = None,
                 video: VideoSampling = VideoSampling(), max_image_pixels: int | None = None,
                 oversized_images: str = "resize") -> list[Sample]:
    """Load and validate a canonical JSONL file; raise on the first bad line. The image cap
    (``data.max_image_pixels`` / ``data.oversized_images``) travels with each sample."""
    path = Path(path)
    root_dir = Path(root).resolve() if root else path.resolve().parent
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for line_no, obj in iter_jsonl(path, what="dataset file"):
        sample = parse_sample(obj, root=root_dir, file=str(path), line=line_no,
                              allow_outside_root=allow_outside_root, require_answer=require_answer, video=video)
        if sample.id in seen:
            raise DataError(f"duplicate id {sample.id!r} (first on line {seen[sample.id]})",
                            file=path, line=line_no, field="id")
        seen[sample.id] = line_no
        sample.max_pixels = max_image_pixels or sample.max_pixels
        sample.oversized = oversized_images
        samples.append(sample)
        if limit and len(samples) >= limit:
            break
    if not samples:
        raise DataError("dataset has no samples", file=path)
    return samples
