"""Greedy-generation scores of a checkpoint on shapes-world tasks (the zoo model's card).

Why here and this small: the model card and ``tests/zoo`` need measured numbers (VQA
exact match, multiple-choice accuracy, grounding IoU, a few captions) before the
project evaluator exists; this does only that and may be replaced by
``vlmtune.evaluate.run`` later. Scoring uses the project metrics (:mod:`vlmtune.metrics`).

Generation follows the released models' usage: chat template with the generation
prompt, left padding, greedy ``generate``, decode only the new tokens, strip.

Example:
    >>> scores = score_dir("vlmtune/tiny-shapes", data_root, limit=50)   # doctest: +SKIP
    >>> scores["vqa"]["exact_match"] >= 0.8
    True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
# Function-level imports: torch/transformers load only when quality is scored.

METRIC_OF = {"vqa": "exact_match", "mc": "mc_accuracy", "grounding": "iou", "where": "exact_match"}
# question type by a phrase of its first line (synth_tasks' wording): the card's per-type table
QUESTION_TYPES = (("What color", "colour"), ("What shape", "shape"), ("How many", "count"),
                  ("left or to the right", "left/right"), ("above or below", "above/below"),
                  ("Where is", "where"))


def load_model(path: str | Path) -> tuple[Any, Any]:
    """Model (eval mode, fp32) and processor; zoo names (``vlmtune/...``) resolve first."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlmtune.model.load import resolve_model_path

    path = resolve_model_path(str(path))
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype="float32").eval()
    return model, processor


def generate(model: Any, processor: Any, samples: list[dict], root: Path, *,
             max_new_tokens: int = 24, batch_size: int = 16) -> list[str]:
    """Greedy answers to each sample's user turn (its assistant turn is dropped)."""
    import torch
    from PIL import Image

    tok = processor.tokenizer
    side, tok.padding_side = tok.padding_side, "left"
    answers: list[str] = []
    try:
        for start in range(0, len(samples), batch_size):
            chunk = samples[start:start + batch_size]
            prompts = [processor.apply_chat_template([m for m in s["messages"] if m["role"] != "assistant"],
                                                     tokenize=False, add_generation_prompt=True) for s in chunk]
            images = [[Image.open(root / p).convert("RGB") for p in s["images"]] for s in chunk]
            batch = processor(text=prompts, images=images, padding=True, return_tensors="pt")
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
            new = out[:, batch["input_ids"].shape[1]:]
            answers += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
    finally:
        tok.padding_side = side
    return answers


def question_type(sample: dict) -> str:
    """"colour", "shape", "count", "left/right", "above/below", "where" or "other"."""
    first = next(p["text"] for p in sample["messages"][0]["content"] if p["type"] == "text").split("\n")[0]
    return next((name for key, name in QUESTION_TYPES if key in first), "other")


def by_type(samples: list[dict], per_item: list[dict], metric: str) -> dict[str, dict[str, float]]:
    """Mean ``metric`` and count per question type (the weak types hide in the average)."""
    groups: dict[str, list[float]] = {}
    for sample, item in zip(samples, per_item):
        groups.setdefault(question_type(sample), []).append(item[metric])
    return {t: {"n": len(v), metric: round(sum(v) / len(v), 3)} for t, v in sorted(groups.items())}


def read_task(root: Path, split: str, task: str, limit: int | None) -> list[dict]:
    lines = (root / f"{split}_{task}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:limit]]


def score_task(model: Any, processor: Any, root: Path, task: str, *, split: str = "test",
               limit: int | None = 50) -> dict[str, Any]:
    """Metric summary for one task, plus the first few (prediction, reference) pairs."""
    from vlmtune.metrics import score

    samples = read_task(root, split, task, limit)
    predictions = generate(model, processor, samples, root, max_new_tokens=40 if task == "caption" else 24)
    records = [{"id": s["id"], "prediction": p, "answers": s["answers"],
                **({"options": s["options"]} if "options" in s else {})}
               for s, p in zip(samples, predictions)]
    summary, types = {}, {}
    if task in METRIC_OF:
        summary, per_item = score(records, [METRIC_OF[task]])
        if task in ("vqa", "mc"):
            types = {"by_type": by_type(samples, per_item, METRIC_OF[task])}
    examples = [{"prediction": p, "reference": s["answers"][0]} for s, p in zip(samples[:5], predictions)]
    return {"n": len(samples), **summary, **types, "examples": examples}


def score_dir(model_path: str | Path, root: str | Path, *,
              tasks: tuple[str, ...] = ("vqa", "mc", "where", "grounding", "caption"),
              split: str = "test", limit: int | None = 50) -> dict[str, dict[str, Any]]:
    """Scores of ``model_path`` on each task of the shapes-world dataset at ``root``."""
    model, processor = load_model(model_path)
    root = Path(root)
    tasks = tuple(t for t in tasks if (root / f"{split}_{t}.jsonl").is_file())  # older data has no "where"
    return {task: score_task(model, processor, root, task, split=split, limit=limit) for task in tasks}
