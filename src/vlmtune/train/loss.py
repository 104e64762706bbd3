"""The training loss: summed next-token cross-entropy over labelled positions, with the LM
head run only where a label follows.

Why: VLM samples are mostly image and prompt tokens with short answers, and real
vocabularies are 150k-260k tokens. Full logits for a 2,048-token row of Qwen2-VL-2B are
1.2 GB in fp32 (twice with their gradient) for the few dozen positions that carry the
loss. transformers 5 models take ``logits_to_keep`` as a boolean ``(batch, seq)`` mask and
apply the head (and any final soft-capping) to the kept hidden states only, returning
``(kept, vocab)`` logits. The loss and its gradients are the same as with full logits:
the other positions' logits never reach the loss.

Example:
    >>> loss = token_loss_sum(model, batch) / n_target_tokens(batch)  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F

from vlmtune.data.encode import IGNORE


def _base(model: Any) -> Any:
    """The transformers model under PEFT / accelerate / FSDP wrappers."""
    seen = set()
    while id(model) not in seen:
        seen.add(id(model))
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
    return model


def takes_logit_mask(model: Any) -> bool:
    """Whether the model's forward takes ``logits_to_keep`` (then as a bool mask, transformers 5)."""
    try:
        return "logits_to_keep" in inspect.signature(_base(model).forward).parameters
    except (TypeError, ValueError):
        return False


def token_loss_sum(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed next-token cross-entropy over labelled positions.

    ``batch["labels"]`` (B, T) is popped; position t predicts token t+1, so the head runs where
    ``labels[:, t + 1] != IGNORE``. A batch without labels (FSDP's padding micro-batches) still
    runs the forward and gives a loss of 0 with a graph. ``use_cache=False``: the language model
    reads ``use_cache`` from its own text config, which stays True, and would otherwise copy every
    layer's keys and values into a cache no one reads.
    """
    labels = batch.pop("labels")
    targets = labels[:, 1:]
    inputs = {"use_cache": False, **batch}
    if not takes_logit_mask(model):
        logits = model(**inputs).logits
        return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                               ignore_index=IGNORE, reduction="sum")
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = targets != IGNORE
    if not keep.any():
        keep[:, 0] = True  # one position so the head is in the graph; its target is IGNORE
    logits = model(**inputs, logits_to_keep=keep).logits  # (kept, vocab)
    wanted = torch.full_like(labels, IGNORE)
    wanted[:, :-1] = targets
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), wanted[keep],
                           ignore_index=IGNORE, reduction="sum")


def n_target_tokens(batch: dict[str, torch.Tensor]) -> int:
    return int((batch["labels"][:, 1:] != IGNORE).sum())
