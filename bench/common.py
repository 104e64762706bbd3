"""What both trainers share: the hyperparameters, the loss yardstick, memory readings.

Workers are separate processes (so each ``ru_maxrss`` is its own); they read one JSON spec
written by ``run.py`` and write one JSON result. Nothing here imports TRL.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# The language-model projections that get LoRA adapters in both runs.
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class Hyper:
    """Every training setting both runs take (one source, two translations)."""

    epochs: float = 3.0
    batch_size: int = 8
    lr: float = 1.0e-3
    schedule: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.0  # no dropout: the two runs draw different random numbers
    max_length: int = 512
    seed: int = 0

    def total_steps(self, n_samples: int) -> int:
        return max(1, math.ceil(self.epochs * math.ceil(n_samples / self.batch_size)))

    def warmup_steps(self, n_samples: int) -> int:
        """As vlmtune computes it: ceil(ratio * total); TRL gets the same integer."""
        return math.ceil(self.warmup_ratio * self.total_steps(n_samples))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def peak_rss_bytes() -> int:
    """This process's peak resident set size (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss * (1 if sys.platform == "darwin" else 1024))


def read_spec(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_result(path: str, result: dict[str, Any]) -> None:
    from vlmtune.atomic import write_json

    write_json(Path(path), result)


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


def warm_imports(model_path: str) -> None:
    """Import what either trainer imports lazily (PEFT, bitsandbytes via PEFT, the model's
    modeling and processor modules), so neither timed window pays for Python imports."""
    import peft  # noqa: F401
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    config = AutoConfig.from_pretrained(model_path)
    AutoModelForImageTextToText._model_mapping[type(config)]  # imports the modeling module
    AutoProcessor.from_pretrained(model_path)


def answer_loss(model: Any, processor: Any, train_jsonl: str, root: str, *, limit: int, batch_size: int,
                max_length: int) -> dict[str, float]:
    """Mean cross-entropy per answer token over the first ``limit`` training samples.

    The same code, batches and labels measure both trained models, so this number compares
    the two trainings without the noise of different sample orders (see bench/README.md).
    """
    import torch

    from vlmtune.data.collate import Collator
    from vlmtune.data.dataset import EncodedDataset
    from vlmtune.data.encode import image_token_ids
    from vlmtune.data.schema import load_samples
    from vlmtune.families import get_family
    from vlmtune.train.loop import n_target_tokens, token_loss_sum

    samples = load_samples(train_jsonl, root=root, limit=limit)
    family = get_family(model.config.model_type)
    data = EncodedDataset(samples, processor, family, image_token_ids(processor, model.config), max_length)
    collate = Collator(processor, max_length)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = collate([data[i] for i in range(start, min(start + batch_size, len(data)))])
            count += n_target_tokens(batch)
            total += float(token_loss_sum(model, batch))
    model.train(was_training)
    return {"loss": total / max(count, 1), "answer_tokens": count, "samples": len(data)}
