"""Answer-only logits (vlmtune.train.loss): the LM head runs only where a label follows, and
the loss and every gradient equal those of full logits, padded or packed."""

from __future__ import annotations

import pytest
import torch

import vlmtune.train.loss as loss_mod
from vlmtune.data.collate import Collator
from vlmtune.families import REGISTRY
from vlmtune.model.methods import prepare
from vlmtune.testing.tiny import TEXT_ONLY_OK
from vlmtune.train.loop import load_split
from vlmtune.train.loss import n_target_tokens, takes_logit_mask, token_loss_sum
from vlmtune.train.packing import pack, packed_attention, packed_lengths

FAMILIES = ["qwen2_vl", "llava", "idefics3", "gemma3", "paligemma", "mllama", "internvl"]


def _loss_and_grads(model, batch, monkeypatch, answer_only: bool):
    monkeypatch.setattr(loss_mod, "takes_logit_mask", lambda m: answer_only and takes_logit_mask(m))
    model.zero_grad()
    loss = token_loss_sum(model, dict(batch))
    loss.backward()
    loss = loss.detach()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss), grads


def _compare(model, batch, monkeypatch, context=None):
    with context() if context else torch.enable_grad():
        full, full_grads = _loss_and_grads(model, batch, monkeypatch, answer_only=False)
    with context() if context else torch.enable_grad():
        kept, kept_grads = _loss_and_grads(model, batch, monkeypatch, answer_only=True)
    assert full > 0 and abs(full - kept) <= 1e-6 * max(1.0, abs(full)), (full, kept)
    assert full_grads.keys() == kept_grads.keys() and full_grads
    # relative to each tensor's largest gradient: the head's gradient sums over other row counts
    worst = max(float((full_grads[n] - kept_grads[n]).abs().max() / max(1.0, float(full_grads[n].abs().max())))
                for n in full_grads)
    assert worst <= 1e-6, worst


def _batch(family, tiny_factory, run_config, kind="lora"):
    cfg = run_config(tiny_factory(family), train_file="train_mixed.jsonl" if family in TEXT_ONLY_OK
                     else "train_vqa.jsonl", data={"max_samples": 12}, method={"kind": kind})
    torch.manual_seed(0)
    model, processor, fam = prepare(cfg)
    data = load_split(cfg, cfg.data.train, processor, fam, model.config)
    picks = [len(data) - 2, len(data) - 1, 0] if family in TEXT_ONLY_OK else [0, 1, 2]
    return model, fam, Collator(processor, cfg.data.max_length)([data[i] for i in picks])


@pytest.mark.parametrize("family", FAMILIES)
def test_answer_only_logits_equal_full(family, tiny_factory, run_config, monkeypatch):
    model, _, batch = _batch(family, tiny_factory, run_config)
    assert takes_logit_mask(model), f"{family}: forward has no logits_to_keep"
    assert n_target_tokens(batch) < batch["labels"].numel() // 2  # most positions carry no loss
    _compare(model, batch, monkeypatch)


def test_answer_only_logits_full_finetune(tiny_factory, run_config, monkeypatch):
    model, _, batch = _batch("qwen2_vl", tiny_factory, run_config, kind="full")
    _compare(model, batch, monkeypatch)


@pytest.mark.parametrize("family", ["qwen2_vl", "llava"])
def test_answer_only_logits_packed(family, tiny_factory, run_config, monkeypatch):
    assert REGISTRY[family].packing
    model, fam, batch = _batch(family, tiny_factory, run_config)
    packed = pack(batch, fam, model)
    _compare(model, packed, monkeypatch, context=lambda: packed_attention(model, fam, packed_lengths(packed)))


def test_batch_without_labels_keeps_the_graph(tiny_factory, run_config):
    model, _, batch = _batch("qwen2_vl", tiny_factory, run_config)
    batch["labels"] = torch.full_like(batch["labels"], -100)
    loss = token_loss_sum(model, batch)
    loss.backward()  # FSDP's padding micro-batches must still run a backward
    assert float(loss) == 0.0
