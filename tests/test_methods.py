"""Once per method: what trains, what is saved, and that it loads back with plain
transformers/peft. QLoRA runs through bitsandbytes on the CPU."""

from __future__ import annotations

import json

import pytest

from vlmtune.model.methods import count_parameters, prepare, trainable_by_role
from vlmtune.train.loop import train


def _roles_trained(cfg):
    model, _, family = prepare(cfg)
    return {k for k, v in trainable_by_role(model, family).items() if v}


@pytest.fixture(scope="module")
def qwen(tiny_factory):
    return tiny_factory("qwen2_vl")


@pytest.fixture(scope="module")
def qlora_ready(tiny_factory):
    """A tiny Qwen2-VL whose decoder shapes suit bitsandbytes' CPU 4-bit kernels
    (in_features a multiple of 64, out_features a multiple of 32)."""
    return tiny_factory("qwen2_vl", hidden=64, kv_heads=2)


def test_full_trains_every_role_and_saves_hf_model(qwen, run_config):
    from transformers import AutoModelForImageTextToText

    cfg = run_config(qwen, method={"kind": "full"}, train={"max_steps": 3, "lr": 1e-3})
    assert _roles_trained(cfg) == {"vision", "projector", "language"}
    run = train(cfg)
    res = json.loads((run / "resources.json").read_text())
    assert res["trainable_params"] == res["total_params"] and res["artefact"] == "model"
    assert AutoModelForImageTextToText.from_pretrained(run / "model") is not None


def test_full_with_frozen_vision(qwen, run_config):
    cfg = run_config(qwen, method={"kind": "full"}, trainable={"vision": False})
    assert _roles_trained(cfg) == {"projector", "language"}


def test_freeze_trains_only_chosen_roles(qwen, run_config):
    cfg = run_config(qwen, method={"kind": "freeze"}, trainable={"projector": True}, train={"max_steps": 3})
    assert _roles_trained(cfg) == {"projector"}
    run = train(cfg)
    assert (run / "model" / "model.safetensors").is_file()


def test_lora_with_full_projector_saves_it_in_the_adapter(qwen, run_config):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    cfg = run_config(qwen, trainable={"projector": True}, train={"max_steps": 3})
    assert _roles_trained(cfg) == {"adapter", "projector"}
    run = train(cfg)
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert config["modules_to_save"] == ["model.visual.merger"]
    model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(qwen), run / "adapter")
    assert any("modules_to_save" in n for n, _ in model.named_parameters())


def test_lora_on_vision_and_language(qwen, run_config):
    cfg = run_config(qwen, method={"lora_on": ["vision", "language"]})
    model, _, family = prepare(cfg)
    adapted = {family.role_of(n.replace("base_model.model.", "").split(".lora_")[0])
               for n, p in model.named_parameters() if p.requires_grad}
    assert adapted == {"vision", "language"}


def test_dora_and_rslora_configs(qwen, run_config):
    cfg = run_config(qwen, method={"kind": "dora", "rslora": True, "targets": ["q_proj", "v_proj"]},
                     train={"max_steps": 2})
    run = train(cfg)
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert config["use_dora"] and config["use_rslora"]
    assert all(t.endswith(("q_proj", "v_proj")) for t in config["target_modules"])


def test_unknown_target_is_a_clear_error(qwen, run_config):
    cfg = run_config(qwen, method={"targets": ["nonexistent_proj"]})
    from vlmtune.errors import ConfigError

    with pytest.raises(ConfigError, match=r"method\.targets: no linear layer named \['nonexistent_proj'\]"):
        prepare(cfg)


@pytest.mark.parametrize("bits", [4, 8])
def test_qlora_quantizes_the_decoder_only_and_trains(qlora_ready, run_config, bits, tmp_path):
    import bitsandbytes as bnb

    from vlmtune.model.merge import merge_run

    cfg = run_config(qlora_ready, name=f"q{bits}", method={"kind": "qlora", "bits": bits},
                     data={"max_samples": 4}, train={"max_steps": 10})
    model, _, family = prepare(cfg)
    quantized = {family.role_of(n.replace("base_model.model.", "").rsplit(".base_layer", 1)[0])
                 for n, m in model.named_modules() if isinstance(m, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt))}
    assert quantized == {"language"}
    assert count_parameters(model)["trainable"] > 0
    run = train(cfg)
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert losses[-1] < losses[0]
    if bits == 4:
        report = merge_run(run, tmp_path / "merged", dequantize=True)
        assert report["merged_into"] == "dequantized base"
        assert "quantized_merge_max_abs_diff" in report


def test_gradient_checkpointing_gives_the_same_loss(qwen, run_config):
    plain = train(run_config(qwen, name="plain", train={"max_steps": 2}))
    ckpt = train(run_config(qwen, name="ckpt", train={"max_steps": 2, "gradient_checkpointing": True}))

    def losses(run):
        return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
                if "loss" in json.loads(line)]

    assert losses(plain) == pytest.approx(losses(ckpt), abs=1e-5)


def test_mix_general_adds_the_requested_share(qwen, run_config, shapes_data):
    from vlmtune.config import build_config
    from vlmtune.data.mix import n_general
    from vlmtune.errors import ConfigError

    general = str(shapes_data / "train_grounding.jsonl")
    cfg = run_config(qwen, data={"max_samples": 8, "general": general, "mix_general": 0.2},
                     train={"max_steps": 1})
    stats = json.loads((train(cfg) / "data.json").read_text())["train"]
    assert n_general(8, 0.2) == 2 and stats["general_mixed"] == 2 and stats["samples"] == 10
    with pytest.raises(ConfigError, match="data.mix_general: needs data.general"):
        build_config({**cfg.model_dump(), "data": {**cfg.data.model_dump(), "general": None}})


def test_vision_and_projector_take_their_own_learning_rate(qwen, run_config):
    """train.vision_lr / projector_lr (ms-swift's vit_lr / aligner_lr): full tower weights and
    adapters on the tower in one group at their rate; train.lr's group first (the logged rate)."""
    from vlmtune.model.methods import param_groups

    cfg = run_config(qwen, method={"lora_on": ["vision", "language"]}, trainable={"projector": True},
                     train={"lr": 1e-3, "vision_lr": 2e-5, "projector_lr": 1e-4})
    model, _, family = prepare(cfg)
    groups = param_groups(model, family, 1e-3, {"vision": 2e-5, "projector": 1e-4})
    assert [g["lr"] for g in groups] == [1e-3, 2e-5, 1e-4]
    names = {id(p): n for n, p in model.named_parameters()}
    by_lr = {g["lr"]: [names[id(p)] for p in g["params"]] for g in groups}
    assert all(".visual." in n and ".merger." not in n and "lora_" in n for n in by_lr[2e-5])
    assert all(".merger." in n and "modules_to_save" in n for n in by_lr[1e-4])
    assert all(".visual." not in n and "lora_" in n for n in by_lr[1e-3])
    assert sum(map(len, by_lr.values())) == sum(p.requires_grad for p in model.parameters())
    assert len(param_groups(model, family, 1e-3, {})) == 1  # none set: one group


def test_a_tiny_vision_rate_leaves_the_tower_where_it_was(qwen, run_config):
    import torch
    from transformers import AutoModelForImageTextToText

    from vlmtune.model.load import load_base

    cfg = run_config(qwen, method={"kind": "full"}, train={"max_steps": 3, "lr": 1e-3, "vision_lr": 1e-30})
    run = train(cfg)
    rates = [json.loads(x)["lr"] for x in (run / "metrics.jsonl").open() if '"lr"' in x]
    assert rates and max(rates) > 1e-6  # the logged rate is train.lr's group, not the tower's
    base, _, family = load_base(cfg.model)
    before = base.state_dict()
    moved: dict[str, float] = {}  # largest change per role
    for name, value in AutoModelForImageTextToText.from_pretrained(run / "model").state_dict().items():
        role = family.role_of(name) or "language"
        moved[role] = max(moved.get(role, 0.0), (value - before[name]).abs().max().item())
    assert moved["vision"] < 1e-20 and moved["projector"] > 1e-6 and moved["language"] > 1e-6, moved
