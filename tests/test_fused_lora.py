"""LoRA layers rerouted through one addmm (vlmtune.train.fused_lora) give PEFT's losses and
gradients, and fall back to PEFT's forward in the states the fused path does not cover."""

from __future__ import annotations

import json

import pytest
import torch

import vlmtune.train.fused_lora as fused_mod
from vlmtune.data.collate import Collator
from vlmtune.train.fused_lora import fuse_lora
from vlmtune.model.methods import prepare
from vlmtune.train.loop import load_split, token_loss_sum, train


def _loss_and_grads(model, batch):
    loss = token_loss_sum(model, dict(batch))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return float(loss), grads


def _unfuse(model):
    for module in model.modules():
        module.__dict__.pop("forward", None)


@pytest.mark.parametrize("family", ["qwen2_vl", "llava"])
def test_fused_lora_matches_peft(family, tiny_factory, run_config, monkeypatch):
    cfg = run_config(tiny_factory(family), method={"kind": "lora", "r": 8, "alpha": 32, "dropout": 0.0})
    torch.manual_seed(0)
    model, processor, fam = prepare(cfg)
    for name, p in model.named_parameters():  # B starts at zero: make the update non-zero
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    data = load_split(cfg, cfg.data.train, processor, fam, model.config)
    batch = Collator(processor, cfg.data.max_length)([data[i] for i in range(3)])
    loss, grads = _loss_and_grads(model, batch)
    lora_layers = sum(1 for m in model.modules() if type(m).__name__ == "Linear" and hasattr(m, "lora_A"))
    assert fuse_lora(model) == lora_layers > 0
    taken = []
    real = fused_mod._plain
    monkeypatch.setattr(fused_mod, "_plain", lambda layer: taken.append(real(layer)) or taken[-1])
    fused_loss, fused_grads = _loss_and_grads(model, batch)
    assert len(taken) >= lora_layers and all(taken)  # every LoRA layer took the addmm path
    assert abs(fused_loss - loss) <= 1e-6 * abs(loss)
    assert grads.keys() == fused_grads.keys() and any("lora_A" in k for k in grads)
    for key, grad in grads.items():
        assert torch.allclose(fused_grads[key], grad, rtol=1e-5, atol=1e-7), key
    with model.disable_adapter():  # a state the fused path leaves to PEFT: the base model alone
        base_loss = float(token_loss_sum(model, dict(batch)))
    _unfuse(model)
    with model.disable_adapter():
        assert float(token_loss_sum(model, dict(batch))) == base_loss != loss


def test_fused_lora_skips_dora_and_training_uses_it(tiny_factory, run_config):
    path = tiny_factory("qwen2_vl")
    dora, _, _ = prepare(run_config(path, method={"kind": "dora", "r": 8, "alpha": 16, "dropout": 0.0}))
    layer = next(m for m in dora.modules() if hasattr(m, "lora_A") and type(m).__name__ == "Linear")
    fuse_lora(dora)
    x = torch.randn(2, 3, layer.in_features)
    expected = type(layer).forward(layer, x)
    assert "forward" in layer.__dict__ and torch.equal(layer(x), expected)  # DoRA: PEFT's own forward
    run = train(run_config(path, name="fused", data={"max_samples": 8, "val": None}, train={"max_steps": 2}))
    assert json.loads((run / "resources.json").read_text())["fused_lora_layers"] > 0
