"""Mixture-of-experts decoders: LoRA adapts attention by default (experts frozen), the experts'
fused weights too with ``method.experts`` (PEFT target_parameters), and the merged model
equals base + adapter; FLOPs count the active experts' width."""

from __future__ import annotations

import pytest
import torch

MOE = "qwen3_vl_moe"


def test_active_intermediate_counts_top_k_experts():
    from transformers import AutoConfig

    from vlmtune.families.shapes import active_intermediate

    text = AutoConfig.for_model(MOE).text_config
    assert active_intermediate(text) == text.moe_intermediate_size * text.num_experts_per_tok
    assert active_intermediate(AutoConfig.for_model("qwen3_vl").text_config) == \
        AutoConfig.for_model("qwen3_vl").text_config.intermediate_size


@pytest.mark.slow
def test_lora_on_experts_trains_and_merges(tiny_factory, run_config, tmp_path):
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForImageTextToText

    from vlmtune.model.merge import logits_of, merge_run, probe_batch
    from vlmtune.model.methods import prepare
    from vlmtune.train import train

    path = tiny_factory(MOE)
    default = run_config(path, name="attn", train={"max_steps": 1})
    model, _, _ = prepare(default)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and not any("experts" in n for n in trainable)

    cfg = run_config(path, name="experts", method={"experts": True}, data={"max_samples": 2},
                     train={"max_steps": 6, "batch_size": 2, "checkpoint_every": 6})
    model, processor, fam = prepare(cfg)
    assert any("experts" in n and "lora" in n for n, p in model.named_parameters() if p.requires_grad)
    run = train(cfg)
    assert merge_run(run, tmp_path / "merged")["max_abs_diff"] < 1e-4
    batch = probe_batch(cfg, processor, fam, AutoConfig.from_pretrained(path), n=2)
    plain = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(path), run / "adapter").eval()
    merged = AutoModelForImageTextToText.from_pretrained(tmp_path / "merged").eval()
    base = AutoModelForImageTextToText.from_pretrained(path).eval()
    assert torch.allclose(logits_of(plain, batch), logits_of(merged, batch), atol=1e-4)
    assert not torch.allclose(logits_of(base, batch), logits_of(merged, batch), atol=1e-4)
