"""train.compile (vlmtune.train.compile): the decoder layers' MLPs and norms are compiled in place,
one step's gradients equal the eager ones up to rounding, training runs and checkpoints keep
their parameter names."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from vlmtune.train.compile import compile_decoder_layers, decoder_layers
from vlmtune.families import get_family
from vlmtune.train.loop import train


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if "loss" in line]


@pytest.mark.parametrize("family", ["qwen2_vl", "gemma3", "mllama"])
def test_compiled_training_runs_and_saves_plain_names(family, tiny_factory, run_config):
    path = tiny_factory(family)

    def run(name, compiled):
        cfg = run_config(path, name=name, data={"max_samples": 8, "val": None},
                         train={"max_steps": 3, "batch_size": 4, "compile": compiled})
        return train(cfg)

    eager, compiled = run("eager", False), run("compiled", True)
    a, b = _losses(eager), _losses(compiled)
    assert len(a) == len(b) == 3
    assert abs(a[0] - b[0]) <= 1e-6 * abs(a[0])  # same weights, same batch: the forward agrees
    assert max(abs(x - y) / abs(x) for x, y in zip(a, b)) <= 1e-2, (a, b)  # Adam amplifies rounding
    res = json.loads((compiled / "resources.json").read_text())
    assert res["compiled_modules"] > 0 and json.loads((eager / "resources.json").read_text())["compiled_modules"] == 0
    names = lambda run: sorted(load_file(run / "adapter" / "adapter_model.safetensors"))  # noqa: E731
    assert names(compiled) == names(eager)  # in-place compilation: no _orig_mod in saved names


def test_one_steps_gradients_equal_eager_up_to_rounding(tiny_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from vlmtune.train.fused_lora import fuse_lora

    path = tiny_factory("qwen2_vl")
    ids = torch.randint(5, 100, (2, 40), generator=torch.Generator().manual_seed(0))

    def step(compiled):
        torch.manual_seed(0)
        model = get_peft_model(AutoModelForImageTextToText.from_pretrained(path),
                               LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj", "down_proj"]))
        for name, p in model.named_parameters():
            if "lora_B" in name:  # non-zero B, so every LoRA matrix gets a gradient
                torch.nn.init.normal_(p, std=0.02)
        fuse_lora(model)
        if compiled:
            assert compile_decoder_layers(model, get_family("qwen2_vl")) > 0
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        return out.loss.item(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    (loss_e, grads_e), (loss_c, grads_c) = step(False), step(True)
    assert loss_c == pytest.approx(loss_e, rel=1e-6) and grads_e.keys() == grads_c.keys() and grads_e
    for name, g in grads_e.items():
        assert (g - grads_c[name]).abs().max() <= 1e-5 * g.abs().max(), name


def test_only_non_attention_children_of_language_layers_are_compiled(tiny_factory):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_factory("qwen2_vl"))
    family = get_family(model.config.model_type)
    layers = decoder_layers(model, family)
    assert layers and all(layer in list(model.model.language_model.layers) for layer in layers)
    count = compile_decoder_layers(model, family)
    assert count == 3 * len(layers)  # mlp, input_layernorm, post_attention_layernorm
    assert all(getattr(layer.mlp, "_compiled_call_impl", None) is not None for layer in layers)
    assert all(getattr(layer.self_attn, "_compiled_call_impl", None) is None for layer in layers)
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in model.model.visual.modules())
    with torch.no_grad():
        model(input_ids=torch.tensor([[1, 2, 3]]))  # runs
