"""Rewrite multiple-choice answers given as option text into option letters.

Why: the commonest train/eval format drift (``vlmtune data check``: "train answers are
option text; eval expects letter") is fixed in the training data, not in the model: each
sample that lists ``options`` and answers with one option's text gets that option's letter
(A for the first option, B for the second...) as its answer, and, when ``instruction`` is
given, that instruction as the last line of its last user turn (the eval set's closing
line, so the prompts match too). Samples whose answer is not an option's text are kept
as they are and counted. Works on canonical JSONL only (``vlmtune data convert`` first).

Example:
    >>> sample = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Colour?\\nA. red\\nB. blue\\nSay the text."}]},
    ...                        {"role": "assistant", "content": [{"type": "text", "text": "blue"}]}],
    ...           "answers": ["blue"], "options": ["red", "blue"], "task": "mc_text"}
    >>> out = as_letters(sample, instruction="Say the letter.", task="mc")
    >>> out["answers"], out["messages"][0]["content"][0]["text"].splitlines()[-1], out["task"]
    (['B'], 'Say the letter.', 'mc')
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from vlmtune.atomic import write_jsonl
from vlmtune.data.schema import iter_jsonl
from vlmtune.errors import DataError


def _norm(text: str) -> str:
    return " ".join(str(text).lower().strip().rstrip(".").split())


def _last(messages: list[dict], role: str) -> dict | None:
    return next((m for m in reversed(messages) if m.get("role") == role), None)


def _set_text(message: dict, text: str) -> None:
    content = message.get("content")
    if isinstance(content, str):
        message["content"] = text
        return
    parts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
    if parts:
        parts[-1]["text"] = text


def _text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    return parts[-1] if parts else ""


def as_letters(sample: dict[str, Any], *, instruction: str | None = None,
               task: str | None = None) -> dict[str, Any] | None:
    """The sample with its answer as a letter, or None when the answer is no option's text."""
    options = sample.get("options") or []
    messages = sample.get("messages") or []
    reply = _last(messages, "assistant")
    answer = (sample.get("answers") or [_text(reply) if reply else ""])[0]
    hits = [i for i, o in enumerate(options) if _norm(o) == _norm(answer)]
    if len(hits) != 1 or reply is None:
        return None
    out = copy.deepcopy(sample)
    letter = chr(65 + hits[0])
    out["answers"] = [letter]
    _set_text(_last(out["messages"], "assistant"), letter)
    user = _last(out["messages"], "user")
    if instruction and user is not None:
        lines = _text(user).rstrip().splitlines()
        _set_text(user, "\n".join([*lines[:-1], instruction]) if lines else instruction)
    if task:
        out["task"] = task
    return out


def convert_file(src: str | Path, out: str | Path, *, instruction: str | None = None,
                 task: str | None = None) -> tuple[int, int]:
    """Write ``src``'s samples to ``out`` with letter answers; returns (converted, kept as they were)."""
    rows, converted = [], 0
    for line, sample in iter_jsonl(src, what="training file"):
        if not isinstance(sample, dict):
            raise DataError("expected a JSON object per line", file=Path(src), line=line)
        new = as_letters(sample, instruction=instruction, task=task)
        converted += new is not None
        rows.append(new if new is not None else sample)
    write_jsonl(Path(out), rows)
    return converted, len(rows) - converted
