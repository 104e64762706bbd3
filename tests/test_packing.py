"""Padding-free packing gives each sample the loss it has unpacked (same positions, attention
confined to the sample), and families where that cannot hold refuse ``train.packing``."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from vlmtune.data.collate import Collator
from vlmtune.data.encode import IGNORE
from vlmtune.errors import ConfigError
from vlmtune.families import REGISTRY
from vlmtune.model.methods import prepare
import vlmtune.train.packing as packing_mod
from vlmtune.train.packing import SEGMENT_ATTENTION, check_packing, language_config, pack, packed_attention, packed_lengths
from vlmtune.testing.tiny import TEXT_ONLY_OK, TINY_FAMILIES
from vlmtune.train.loop import load_split, train

PACKED = [f for f in TINY_FAMILIES if REGISTRY[f].packing]
REFUSED = [f for f in TINY_FAMILIES if not REGISTRY[f].packing]


def _per_sample_losses(logits: torch.Tensor, labels: torch.Tensor, bounds: list[tuple[int, int, int]]) -> list[float]:
    """Summed next-token loss of each sample: ``bounds`` = (row, start, end) in the batch."""
    out = []
    for row, start, end in bounds:
        lg, lb = logits[row, start:end - 1], labels[row, start + 1:end]
        out.append(float(F.cross_entropy(lg.float(), lb, ignore_index=IGNORE, reduction="sum")))
    return out


@pytest.mark.parametrize("family", PACKED)
def test_packed_losses_equal_unpacked(family, tiny_factory, run_config, monkeypatch):
    cfg = run_config(tiny_factory(family), train_file="train_mixed.jsonl" if family in TEXT_ONLY_OK
                     else "train_vqa.jsonl", data={"max_samples": 16})
    torch.manual_seed(0)
    model, processor, fam = prepare(cfg)
    model.eval()
    data = load_split(cfg, cfg.data.train, processor, fam, model.config)
    # different lengths in one batch: text-only, two-image and one-image samples when the family takes them
    picks = [len(data) - 2, len(data) - 1, 0] if family in TEXT_ONLY_OK else [0, 1, 2]
    batch = Collator(processor, cfg.data.max_length)([data[i] for i in picks])
    lengths = batch["attention_mask"].sum(1).tolist()
    offsets = [int(row.nonzero()[0]) for row in batch["attention_mask"]]  # some processors pad left
    with torch.no_grad():
        plain = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        packed = pack(batch, fam, model)
        assert packed["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in packed
        logits = model(**{k: v for k, v in packed.items() if k != "labels"}).logits
        # the per-sample attention the training loop uses for packed rows (no dense block mask)
        calls = []
        real = packing_mod.segment_attention
        monkeypatch.setattr(packing_mod, "segment_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
        config = language_config(model, fam)
        before = config._attn_implementation
        assert packed_lengths(packed) == lengths
        with packed_attention(model, fam, lengths):
            assert config._attn_implementation == SEGMENT_ATTENTION
            segmented = model(**{k: v for k, v in packed.items() if k != "labels"}).logits
        assert config._attn_implementation == before and calls  # restored; the decoder went through it
    expected = _per_sample_losses(plain, batch["labels"], [(r, o, o + n) for r, (o, n) in enumerate(zip(offsets, lengths))])
    starts = [sum(lengths[:r]) for r in range(len(lengths))]
    got = _per_sample_losses(logits, packed["labels"], [(0, s, s + n) for s, n in zip(starts, lengths)])
    assert len(set(lengths)) > 1, lengths  # padding was there to remove
    assert max(abs(a - b) for a, b in zip(expected, got)) <= 1e-5, (expected, got)
    got_segmented = _per_sample_losses(segmented, packed["labels"], [(0, s, s + n) for s, n in zip(starts, lengths)])
    assert max(abs(a - b) for a, b in zip(expected, got_segmented)) <= 1e-5, (expected, got_segmented)
    # nothing leaks across samples: the cross-boundary position has no target
    assert all(int(packed["labels"][0, s]) == IGNORE for s in starts)


def test_packed_training_matches_unpacked(tiny_factory, run_config):
    path = tiny_factory("qwen2_vl")

    def losses(name, packing, checkpointing=False):
        cfg = run_config(path, name=name, train_file="train_mixed.jsonl", data={"max_samples": 16, "val": None},
                         train={"max_steps": 4, "batch_size": 4, "packing": packing,
                                "gradient_checkpointing": checkpointing})
        run = train(cfg)
        return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]

    plain, packed = losses("plain", False), losses("packed", True)
    assert max(abs(a - b) for a, b in zip(plain, packed)) <= 1e-5, (plain, packed)
    # checkpointing recomputes the packed forward during backward: still attention per sample
    recomputed = losses("packed-ckpt", True, checkpointing=True)
    assert max(abs(a - b) for a, b in zip(plain, recomputed)) <= 1e-5, (plain, recomputed)


@pytest.mark.parametrize("family", REFUSED)
def test_packing_refused_where_not_exact(family):
    with pytest.raises(ConfigError, match="train.packing"):
        check_packing(True, REGISTRY[family])
    check_packing(False, REGISTRY[family])
