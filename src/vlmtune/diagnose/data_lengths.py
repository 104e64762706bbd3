"""Token lengths and image counts of a training file, as the model's processor encodes it.

Why: a plan at ``--seq 2048`` answers a question nobody asked when the samples are ~300
tokens. ``vlmtune plan --data FILE.jsonl`` encodes every sample the way ``vlmtune train``
does (chat template, image expansion, truncation at ``max_length``) and plans three
cases: the longest sample (a batch is padded to its longest member, so the longest batch
is ``batch`` copies of it at worst), the 95th and the 50th percentile. Needs the
processor files next to the config (a model directory or cached hub id).

Example:
    >>> stats = data_lengths("path/to/model", "train.jsonl", max_length=2048)  # doctest: +SKIP
    >>> stats["cases"]
    {'longest': 612, 'p95': 540, 'p50': 301}
"""

from __future__ import annotations

import math
from typing import Any


def _percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile (the smallest value with at least q% of values <= it)."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def data_lengths(model: str, data: str, *, max_length: int = 2048, root: str | None = None) -> dict[str, Any]:
    """``{"cases": {"longest", "p95", "p50": tokens}, "answers": the same for labelled tokens,
    "images": max per sample, "samples", "skipped"}``."""
    from vlmtune.config import ModelConfig
    from vlmtune.data.dataset import EncodedDataset
    from vlmtune.data.schema import load_samples
    from vlmtune.errors import InputError
    from vlmtune.model.load import load_processor_only

    try:
        processor, family, image_ids = load_processor_only(ModelConfig(path=model))
    except (OSError, ValueError) as err:
        raise InputError(f"--data needs the model's processor files: {str(err).splitlines()[0]}", file=model,
                         field="--model") from None
    encoded = EncodedDataset(load_samples(data, root=root), processor, family, image_ids, max_length)
    if not len(encoded):
        raise InputError(f"no sample fits max_length={max_length} (skipped: {dict(encoded.skipped)})", file=data,
                         field="--data")
    from vlmtune.data.encode import IGNORE

    examples = [encoded[i] for i in range(len(encoded))]
    lengths = sorted(min(ex.length, max_length) for ex in examples)
    answers = sorted(sum(label != IGNORE for label in ex.encoded.labels[:max_length]) for ex in examples)
    images = max(len(ex.sample.images) for ex in examples)
    per_image = [sum(t in image_ids for t in ex.encoded.input_ids[:max_length]) // len(ex.sample.images)
                 for ex in examples if ex.sample.images]
    return {"cases": {"longest": lengths[-1], "p95": _percentile(lengths, 95), "p50": _percentile(lengths, 50)},
            "answers": {"longest": answers[-1], "p95": _percentile(answers, 95), "p50": _percentile(answers, 50)},
            "images": images, "image_tokens": max(per_image, default=0), "samples": len(lengths),
            "skipped": dict(encoded.skipped)}


def data_workloads(model: str, data: str, root: str | None, shapes: Any, work: Any) -> dict[str, Any]:
    """``work`` at the data's longest, p95 and p50 lengths (``{case: Workload}``), with its most
    images per sample and labelled tokens; for a dynamic-resolution tower (no ``image_size`` in
    its config) the image side its processor gave the largest image, unless ``work`` sets one.

    Why the side: such a tower's activations grow with the patches an image becomes, and a
    plan at the 448-px fallback is 49x off for 64-px images.
    """
    from dataclasses import replace

    stats = data_lengths(model, data, max_length=work.seq, root=root)
    side = work.image_size or side_from_tokens(shapes, stats["image_tokens"])
    return {case: replace(work, seq=seq, images=stats["images"], answer_tokens=stats["answers"][case],
                          image_size=side)
            for case, seq in stats["cases"].items()}


def side_from_tokens(shapes: Any, tokens: int) -> int | None:
    """The square image side that gives ``tokens`` language tokens per image on a tower that
    merges ``merge x merge`` patches of ``patch`` pixels; None for a fixed-size tower.

    Example: Qwen2-VL-style patch 14, merge 2, 16 tokens -> 8 x 8 patches -> 112 px.
    """
    v = getattr(shapes, "vision", None)
    if not v or v.get("image_size") or not tokens or not v.get("patch"):
        return None
    return math.isqrt(tokens * v.get("merge", 1) ** 2) * v["patch"]
