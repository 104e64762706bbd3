"""Bench data: the shapes world (caption, VQA, multiple choice, grounding) plus two-image
samples, so batches mix text lengths (2-token answers to 40-token captions) and image
counts (1 or 2 per sample).

Why add two-image samples here: ``vlmtune data synth`` writes one image per sample, and a
trainer's cost depends on the image count per batch (pixel tensors, grids, placeholder
expansion). A pair sample asks for a caption of each image; its answer joins the two
scenes' reference captions, so it is as learnable as the single-image tasks.

Example:
    >>> files = make_data(Path("/tmp/bench-data"), n_scenes=10)  # doctest: +SKIP
    >>> sorted(files)
    ['eval', 'root', 'train']
"""

from __future__ import annotations

import json
from pathlib import Path

TASKS = ("caption", "vqa", "mc", "grounding")
PAIR_PROMPT = "Describe each image in one sentence, first image then second."


def _pair(a: dict, b: dict, index: int) -> dict:
    answer = f"First: {a['answers'][0]} Second: {b['answers'][0]}"
    return {"id": f"pair_{index:05d}", "images": [a["images"][0], b["images"][0]],
            "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                                      {"type": "text", "text": PAIR_PROMPT}]},
                         {"role": "assistant", "content": [{"type": "text", "text": answer}]}],
            "task": "caption2", "answers": [answer]}


def with_pairs(rows: list[dict], every: int) -> list[dict]:
    """``rows`` with one two-image sample after every ``every``-th caption sample."""
    out, captions = [], []
    for row in rows:
        out.append(row)
        if row["task"] == "caption":
            captions.append(row)
            if len(captions) % every == 0:
                out.append(_pair(captions[-2], captions[-1], len(captions) // every))
    return out


def make_data(out: Path, *, n_scenes: int, seed: int = 0, image_size: int = 64, pair_every: int = 2,
              eval_prompts: int = 32) -> dict[str, Path]:
    """Write ``train.jsonl`` (all tasks + pairs) and ``eval.jsonl`` (test split, first
    ``eval_prompts`` samples, pairs included) under ``out``; returns their paths and the root."""
    from vlmtune.data.synth import synth

    out = Path(out)
    files = synth(out, tasks=TASKS, n=n_scenes, seed=seed, image_size=image_size)
    paths = {"root": out}
    for split, name, limit in (("train", "train", None), ("test", "eval", eval_prompts)):
        rows = [json.loads(line) for line in files[split].read_text(encoding="utf-8").splitlines()]
        rows = with_pairs(rows, pair_every)[:limit]
        paths[name] = out / f"bench_{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return paths


def summary(path: Path) -> dict:
    """Counts per task and per image count (recorded in the result JSON)."""
    tasks: dict[str, int] = {}
    images: dict[str, int] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        tasks[row["task"]] = tasks.get(row["task"], 0) + 1
        key = str(len(row["images"]))
        images[key] = images.get(key, 0) + 1
    return {"samples": sum(tasks.values()), "tasks": tasks, "images_per_sample": images}
