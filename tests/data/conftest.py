"""Shared check for tests that write canonical JSONL (synth, converters)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIELDS = {"id", "images", "videos", "messages", "task", "answers", "options", "image_sizes"}


def _check_line(sample: dict, root: Path) -> None:
    assert set(sample) <= FIELDS and {"id", "messages"} <= set(sample), sample.keys()
    assert isinstance(sample["id"], str) and sample["id"]
    images, videos = sample.get("images", []), sample.get("videos", [])
    assert "videos" not in sample or videos, "an empty videos list is left out"
    for rel in images + videos:
        path = (root / rel).resolve()
        assert path.is_file() and path.is_relative_to(root.resolve()), rel
    roles = [m["role"] for m in sample["messages"]]
    assert roles[-1] == "assistant" and "user" in roles, roles
    placeholders = {"image": 0, "video": 0}
    for message in sample["messages"]:
        assert set(message) - {"train"} == {"role", "content"} and isinstance(message["content"], list)
        assert message.get("train", False) is False and (message["role"] == "assistant" or "train" not in message)
        for item in message["content"]:
            assert item in ({"type": "image"}, {"type": "video"}) or (
                set(item) == {"type", "text"} and item["type"] == "text" and item["text"]), item
            placeholders[item["type"]] = placeholders.get(item["type"], 0) + 1
    assert placeholders["image"] == len(images) and placeholders["video"] == len(videos)
    answers = sample.get("answers")
    if answers is not None:
        last = "".join(c["text"] for c in sample["messages"][-1]["content"])
        assert answers and all(isinstance(a, str) for a in answers) and last == answers[0]


def check_canonical_file(path: Path) -> list[dict]:
    """Assert every line of ``path`` is a valid canonical sample; return the samples.

    Uses the package loader (``vlmtune.data.schema.load_samples``) when it exists, plus a
    stricter local check (exact keys, placeholder count, answers[0] == last answer).
    """
    lines = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
    for sample in lines:
        _check_line(sample, Path(path).parent)
    assert len({s["id"] for s in lines}) == len(lines), "duplicate ids"
    try:
        from vlmtune.data.schema import load_samples
    except ImportError:
        return lines
    if lines:
        assert len(load_samples(path)) == len(lines)
    return lines


@pytest.fixture
def check_canonical():
    return check_canonical_file
