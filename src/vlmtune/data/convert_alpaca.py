"""Single-turn-with-history records: alpaca (LLaMA-Factory, ms-swift) and ms-swift's
``query/response/history`` -> canonical samples.

Both peers write one question and one answer per record, with earlier rounds as
``history: [[question, answer], ...]``::

    {"instruction": "<image>What is it?", "input": "", "output": "A cat.",
     "system": "...", "history": [["Hi", "Hello."]], "images": ["a.jpg"]}
    {"query": "<image>What is it?", "response": "A cat.", "history": [], "images": ["a.jpg"]}

As both peers do, the user turn is ``instruction`` + ``"\\n"`` + ``input`` when ``input``
is not empty. History answers are learned like the last one (both peers' default).
Column names follow LLaMA-Factory's ``dataset_info.json`` ``columns`` keys (``prompt``,
``query``, ``response``, ``history``, ``system``, ``images``, ``videos``) when given; videos
take ``<video>`` markers as images take ``<image>``.

Example:
    >>> turns_of({"instruction": "Add", "input": "2+2", "output": "4"}, ALPACA, lambda f, m: m)
    [{'role': 'user', 'content': 'Add\\n2+2'}, {'role': 'assistant', 'content': '4'}]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmtune.data.convert_chat import finish_sample, media_of, stored_media, to_messages
from vlmtune.data.convert_parts import refuse_unsupported
from vlmtune.errors import DataError

ALPACA = {"prompt": "instruction", "query": "input", "response": "output", "history": "history",
          "system": "system"}
SWIFT = {"prompt": "query", "query": None, "response": "response", "history": "history",
         "system": "system"}


def columns_for(obj: dict, given: dict[str, str] | None = None) -> dict[str, str | None]:
    """Which keys hold the parts: LLaMA-Factory ``columns`` if given, else by the record."""
    if given:
        return {**ALPACA, **given}
    return dict(SWIFT) if "query" in obj and "response" in obj else dict(ALPACA)


def _text(obj: dict, key: str | None, err, *, required: bool) -> str:
    value = obj.get(key) if key else None
    if value is None or value == "":
        if required:
            raise err(key, "is required and must be a non-empty string")
        return ""
    if not isinstance(value, str):
        raise err(key, "must be a string")
    return value


def turns_of(obj: dict, cols: dict[str, str | None], err) -> list[dict[str, Any]]:
    """History rounds, then the record's own question and answer, as role/content turns."""
    turns: list[dict[str, Any]] = []
    history = obj.get(cols["history"]) if cols.get("history") else None
    if history is not None:
        if not isinstance(history, list):
            raise err(cols["history"], "must be a list of [question, answer] pairs")
        for i, pair in enumerate(history):
            if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                    or not all(isinstance(x, str) for x in pair)):
                raise err(f"{cols['history']}[{i}]", "must be a [question, answer] pair of strings")
            turns += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    prompt = _text(obj, cols["prompt"], err, required=True)
    extra = _text(obj, cols.get("query"), err, required=False)
    question = f"{prompt}\n{extra}" if extra else prompt
    answer = _text(obj, cols["response"], err, required=True)
    return turns + [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def alpaca_sample(obj: Any, *, file: Path, line: int, staging, task: str | None = None,
                  fmt: str = "alpaca", columns: dict[str, str] | None = None,
                  fetch_urls: bool = False) -> dict:
    """One alpaca or query/response record -> one canonical sample (see module doc)."""
    def err(field: str | None, message: str) -> DataError:
        return DataError(f"{message} (read as {fmt})", file=file, line=line, field=field)

    if not isinstance(obj, dict):
        raise err("sample", "each record must be a JSON object")
    refuse_unsupported(obj, err)
    cols = columns_for(obj, columns)
    media = media_of(obj, err, columns)
    system = _text(obj, cols.get("system"), err, required=False) or None
    messages, _ = to_messages(turns_of(obj, cols, err), len(media["image"][0]), err, field=cols["prompt"],
                              system=system, n_videos=len(media["video"][0]))
    paths = stored_media(media, [], staging, file=file, line=line, fetch_urls=fetch_urls)
    return finish_sample(obj, messages, paths["image"], file=file, line=line, task=task,
                         videos=paths["video"])
