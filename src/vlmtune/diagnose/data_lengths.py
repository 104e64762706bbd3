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
    return {"cases": {"longest": lengths[-1], "p95": _percentile(lengths, 95), "p50": _percentile(lengths, 50)},
            "answers": {"longest": answers[-1], "p95": _percentile(answers, 95), "p50": _percentile(answers, 50)},
            "images": images, "samples": len(lengths), "skipped": dict(encoded.skipped)}
