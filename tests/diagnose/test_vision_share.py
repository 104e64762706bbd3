"""Vision-tower share of a training step: hooks on real tiny architectures, and train.py's record."""

from __future__ import annotations

import json

import pytest

from vlmtune.data.collate import Collator
from vlmtune.train.vision_share import VisionShare, vision_modules
from vlmtune.model.methods import prepare
from vlmtune.train.loop import load_split, token_loss_sum, train

FAMILIES = ["qwen2_vl", "llava", "idefics3", "mllama"]


def _steps(cfg, n_steps, window=range(1, 3), total=None):
    """Run ``n_steps`` forward+backward steps with the hooks; return (share, model, family)."""
    model, processor, family = prepare(cfg)
    model.train()
    data = load_split(cfg, cfg.data.train, processor, family, model.config)
    collate = Collator(processor, cfg.data.max_length)
    share = VisionShare(model, family, total_steps=total or n_steps, window=window)
    for step in range(n_steps):
        share.begin(step)
        batch = collate([data[i] for i in range(2)])
        token_loss_sum(model, batch).backward()
        share.end(step)
    return share, model, family


@pytest.mark.parametrize("family", FAMILIES)
def test_trained_vision_tower_has_time_activations_and_backward(family, tiny_factory, run_config):
    cfg = run_config(tiny_factory(family), method={"lora_on": ["language", "vision"]},
                     train_file="train_grounding.jsonl")
    share, model, fam = _steps(cfg, 3)
    r = share.result()
    assert r["steps"] == [2, 3]
    assert 0 < r["time_fraction"] < 1
    assert r["forward_s"] > 0 and r["backward_s"] > 0
    assert r["activation_bytes"] > 0 and 0 < r["activation_fraction"] < 1
    assert 0 < r["param_fraction"] < 1 and r["trains"]
    modules = vision_modules(model, fam)
    assert modules and all(not m._forward_hooks and not m._forward_pre_hooks for m in modules)  # removed


@pytest.mark.parametrize("family", ["qwen2_vl", "mllama"])
def test_frozen_tower_saves_no_activations_and_has_no_backward(family, tiny_factory, run_config):
    cfg = run_config(tiny_factory(family), train_file="train_grounding.jsonl")  # LoRA on language only
    r = _steps(cfg, 2)[0].result()
    assert r["trains"] is False
    assert r["activation_bytes"] == 0 and r["backward_s"] == 0.0
    assert 0 < r["time_fraction"] < 1


def test_full_vision_beside_lora_is_found_through_modules_to_save(tiny_factory, run_config):
    cfg = run_config(tiny_factory("llava"), trainable={"vision": True}, train_file="train_grounding.jsonl")
    r = _steps(cfg, 2)[0].result()
    assert r["trains"] and r["backward_s"] > 0 and r["activation_bytes"] > 0


def test_steps_outside_the_window_are_not_measured(tiny_factory, run_config):
    cfg = run_config(tiny_factory("qwen2_vl"), train_file="train_grounding.jsonl")
    assert _steps(cfg, 2, window=range(5, 9), total=20)[0].result() is None
    assert _steps(cfg, 1, window=range(5, 9))[0].result()["steps"] == [1]  # a run shorter than the window


def test_training_records_vision_share_in_resources(tiny_factory, run_config):
    cfg = run_config(tiny_factory("qwen2_vl"), method={"lora_on": ["language", "vision"]},
                     train={"max_steps": 3}, data={"val": None})
    run = train(cfg)
    share = json.loads((run / "resources.json").read_text())["vision_share"]
    assert share["steps"] == [2, 3]
    assert 0 < share["time_fraction"] < 1 and share["activation_bytes"] > 0
