"""Every supported family, end to end on a tiny real-architecture checkpoint:
LoRA trains and its loss falls; only adapters train; the saved adapter reloads with plain
PEFT and gives the trained model's logits; the merged model gives the same logits."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from vlmtune.train.checkpoint import latest_checkpoint
from vlmtune.model.merge import logits_of, merge_run, probe_batch
from vlmtune.model.methods import prepare
from vlmtune.testing.tiny import TEXT_ONLY_OK, TINY_FAMILIES
from vlmtune.train.loop import train


def _losses(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_lora_trains_reloads_and_merges(family, tiny_factory, run_config, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    path = tiny_factory(family)
    mixed = family in TEXT_ONLY_OK  # text-only and two-image samples in the same batches
    # the same 4 samples every step (the mixed file starts with them): a clean loss curve
    cfg = run_config(path, train_file="train_mixed.jsonl" if mixed else "train_vqa.jsonl",
                     data={"max_samples": 4})
    run = train(cfg)

    losses = _losses(run)
    assert len(losses) == 20
    print(family, "loss", losses[0], "->", losses[-1])
    # the same 4 samples each step, no dropout: the curve is smooth, so a 0.2 fall is signal
    assert losses[-1] < losses[0] - 0.2, losses
    assert sum(losses[-5:]) < sum(losses[:5]), losses

    trained, processor, fam = prepare(cfg)
    trainable = [n for n, p in trained.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    role_counts = json.loads((run / "resources.json").read_text())["trainable_by_role"]
    assert role_counts["vision"] == role_counts["projector"] == role_counts["language"] == 0

    # the trained state (last checkpoint) == the saved adapter loaded by plain PEFT
    state = load_file(str(latest_checkpoint(run / "checkpoints") / "trainable.safetensors"))
    params = dict(trained.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
    trained.eval()
    batch = probe_batch(cfg, processor, fam, trained.config)
    expected = logits_of(trained, batch)
    plain = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(path), run / "adapter").eval()
    assert torch.allclose(logits_of(plain, batch), expected, atol=1e-5)

    report = merge_run(run, tmp_path / "merged")
    assert report["max_abs_diff"] < 1e-4
    merged = AutoModelForImageTextToText.from_pretrained(tmp_path / "merged").eval()
    assert torch.allclose(logits_of(merged, batch), expected, atol=1e-4)
