"""The memory plan against published GPU measurements, for any config (remote code and
text LMs included), with every memory setting a flag. Pure arithmetic on vendored
config.json files: ~3 s in all."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vlmtune.cli import app
from vlmtune.diagnose.memory_plan import Workload, model_shapes, plan_method
from vlmtune.diagnose.memory_validate import evaluate_published, markdown_table, summary

DATA = Path(__file__).parent / "data"
CONFIGS = DATA / "model-configs"  # public config.json files, copied from shared/model-configs (see README there)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rows():
    return evaluate_published(DATA / "published_memory.json")


def test_every_published_row_is_answered_with_its_source(rows):
    assert len(rows) >= 20
    assert {r["method"] for r in rows} >= {"full", "lora", "qlora4"}
    assert any("VL" in r["model"] for r in rows) and any("VL" not in r["model"] for r in rows)
    for r in rows:
        assert re.fullmatch(r"[0-9a-f]{40}", r["source"]["commit"]) and r["source"]["line"] > 0, r
        assert (CONFIGS / r["model"]).is_file()
        assert r["predicted"] > 0


def test_published_rows_error_bound(rows):
    """Goal (issue 21): median |error| <= 10% and >= 80% of rows within 15%: both met
    (7.2%; 58 of 72 rows, 81%), the share by one row, so the measured 58 of 72 is the floor.
    What stays outside: ms-swift's LoRA/QLoRA rows of Qwen-7B-Chat (-19% to -60%, cause not
    established), lit-gpt's config-hub QLoRA rows of Llama 2 7B and Llama 3.2 3B (-18%,
    -26%) and Qwen-7B full at 256 tokens (+16%): docs/memory_plan.md, "What still misses"."""
    s = summary(rows)
    assert s["median_abs_error"] <= 0.10, s  # goal met
    assert s["within_15"] >= 0.80, s  # goal met
    assert s["within_15"] >= 58 / 72, s  # measured floor (58 of 72)
    authors = [r for r in rows if r["source"]["repo"] in ("QwenLM/Qwen", "QwenLM/Qwen-VL")]
    assert summary(authors)["within_15"] >= 0.85 and summary(authors)["max_abs_error"] < 0.2
    others = [r for r in rows if r["source"]["repo"] != "modelscope/ms-swift"]
    assert summary(others)["within_15"] >= 52 / 55, summary(others)  # 52 of 55 without ms-swift
    assert {r["model"] for r in rows} >= {"meta-llama-Llama-2-7b-hf.json", "microsoft-phi-1_5.json",
                                          "meta-llama-Llama-3.2-3B-Instruct.json", "Qwen-Qwen-VL-Chat.json"}


def test_published_gb_are_converted_to_gib(rows):
    row = next(r for r in rows if r["setup"] == "litgpt-llama2-7b-lora" and r["source"]["line"] == 56)
    assert row["measured"] == round(21.30e9 / 2**30, 2)  # lit-gpt prints max_memory_allocated() / 1e9


def test_docs_show_the_recomputed_table(rows):
    assert markdown_table(rows) in (ROOT / "docs" / "memory_plan.md").read_text()


def test_remote_code_and_text_configs_are_read_as_data():
    qwen_vl = model_shapes(str(CONFIGS / "Qwen-Qwen-VL-Chat.json"))  # auto_map: QWenLMHeadModel
    assert not qwen_vl.exact and qwen_vl.model_type == "qwen"
    assert 9.5e9 < qwen_vl.total < 9.8e9 and 1.8e9 < qwen_vl.by_role["vision"] < 2.0e9  # ViT-bigG from "visual"
    assert qwen_vl.vision["tokens_per_image"] == 256 and qwen_vl.intermediate == 11008  # QWenMLP halves it
    qwen7 = model_shapes(str(CONFIGS / "Qwen-Qwen-7B.json"))
    assert qwen7.total == 7_721_324_544 and qwen7.by_role["vision"] == 0  # Qwen-7B's checkpoint count
    llama = model_shapes(str(CONFIGS / "meta-llama-Llama-3.2-3B-Instruct.json"))  # text LM, exact on meta
    assert llama.exact and llama.total == 3_212_749_824 and llama.head_params == 0  # tied head


def test_settings_change_the_terms_they_should():
    shapes = model_shapes(str(CONFIGS / "Qwen-Qwen2.5-VL-7B-Instruct.json"))
    base = Workload(seq=1024)
    lora, full = plan_method(shapes, base, "lora"), plan_method(shapes, base, "full")

    def with_(method="lora", **kw):
        return plan_method(shapes, dataclasses.replace(base, **kw), method)

    assert 2 * with_("full", optim="adamw8bit").optimizer == full.optimizer  # fp32 master + 2 x 1 B vs 4 + 2 x 4
    sharded = with_("full", gpus=4, zero=3)
    assert sharded.weights < full.weights / 3 and sharded.optimizer == full.optimizer // 4
    assert with_("full", gpus=4, zero=2).weights == full.weights
    assert with_(attn="eager").activations > lora.activations > with_(attn="flash", batch=1).activations - 1
    assert with_(gradient_checkpointing=True, activation_offload=True).activations < \
        with_(gradient_checkpointing=True).activations
    assert with_(modules_to_save=["lm_head"]).trainable == lora.trainable + shapes.head_params
    assert with_(lora_targets="all-linear").trainable >= lora.trainable > with_(lora_targets=["q_proj"]).trainable
    gptq, nf4 = with_("qlora4", quant="gptq4"), with_("qlora4")
    assert gptq.weights < nf4.weights  # GPTQ keeps the rest 16-bit; PEFT upcasts bitsandbytes' rest to fp32
    assert with_("qlora4", kbit_upcast=False).weights < nf4.weights
    old_bnb = with_("qlora4", bnb_keeps_inputs=True)  # bitsandbytes < 0.43.2 keeps each 4-bit matmul's input
    h, i, a = shapes.hidden, shapes.intermediate, 4  # a: PEFT's upcast makes the stream fp32
    assert old_bnb.activations - nf4.activations == 1024 * (shapes.layers * a * (2 * h + i) - a * h)
    assert with_("qlora4", quant="gptq4", bnb_keeps_inputs=True).activations == gptq.activations
    assert with_("dora").trainable > lora.trainable and with_("freeze").trainable == shapes.by_role["projector"]
    assert with_(answer_tokens=20).logits == 20 * shapes.vocab * 12  # the LM head runs only where a label follows
    assert with_(loss="hf", answer_tokens=20).logits == 1024 * shapes.vocab * 14  # full logits, upcast to fp32
    assert with_(loss="chunked", seq=4096).logits * 4 == with_(seq=4096).logits  # one 1024-token chunk at a time
    assert with_(measure="allocated").peak < with_(measure="reserved").peak < lora.peak  # device adds the context
    one = with_("full", seq=8192, master_weights=False)  # activations outgrow the AdamW step's scratch
    accum = with_("full", seq=8192, master_weights=False, grad_accum=4)  # .grad alive through later micro-batches
    assert accum.allocated == one.weights + one.optimizer + one.gradients + \
        max(one.activations + one.logits + one.vision_activations, one.optimizer_scratch) > one.allocated
    assert with_("full", grad_accum=4).allocated == full.allocated  # the step's scratch still dominates
    assert with_("full", grad_accum=4, gpus=2, zero=2).allocated == with_("full", gpus=2, zero=2).allocated
    flash = with_(attn="flash")  # GQA (28 query heads, 4 KV heads); lit-gpt copies K/V to every query head
    q, kv = shapes.heads * shapes.head_dim, shapes.kv_heads * shapes.head_dim
    repeated = with_(attn="flash", repeat_kv=True)
    assert repeated.activations - flash.activations == 1024 * shapes.layers * 2 * 2 * (q - kv)


def test_bitsandbytes_dequantized_weights_and_a_quantized_head():
    """A 4-bit matmul dequantizes its weight for the product; only where that coexists with
    the logits (a 4-bit LM head, Lightning Fabric) or outgrows them does the peak rise."""
    shapes = model_shapes(str(CONFIGS / "mistralai-Mistral-7B-v0.1.json"))  # untied head, 32000 x 4096
    base = Workload(seq=512, batch=2, attn="flash", loss="model", images=0, kbit_upcast=False)

    def qlora(**kw):
        return plan_method(shapes, dataclasses.replace(base, **kw), "qlora4")

    plain, head = qlora(), qlora(quantize_head=True)
    assert plain.dequantized == 0  # a decoder Linear's dequantized copy is smaller than the logits it follows
    assert head.dequantized == shapes.head_params * 2 and qlora(quantize_head=True, bnb_fp16_state=True).dequantized \
        == shapes.head_params * 4  # fp16 dequantized, then copied to bf16
    assert plain.weights - head.weights == shapes.head_params * 2 - (shapes.head_params // 2 + shapes.head_params // 64
                                                                      + shapes.head_params * 4 // (64 * 256))
    assert qlora(quantize_head=True, quant="gptq4").dequantized == 0
    lora = plan_method(shapes, dataclasses.replace(base, quantize_head=True, bnb_fp16_state=True), "lora")
    assert lora.dequantized == 0 and lora.weights == plan_method(shapes, base, "lora").weights


@pytest.mark.parametrize("config", ["Qwen-Qwen-VL-Chat.json", "meta-llama-Llama-3.2-3B-Instruct.json",
                                    "Qwen-Qwen2.5-VL-7B-Instruct.json"])
def test_cli_plans_qlora_for_any_config(config):
    result = CliRunner().invoke(app, ["plan", "--model", str(CONFIGS / config), "--method", "qlora4", "--json",
                                      "--gradient-checkpointing", "--optim", "paged_adamw8bit", "--gpu-mem", "24GiB"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)["plans"][0]
    assert plan["method"] == "qlora4" and plan["fits"] is True
    assert {"peak", "weights", "activations", "logits", "optimizer", "gradients"} <= set(plan)


def test_cli_plan_reads_a_run_config(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"name: r\nmodel: {{path: {CONFIGS / 'Qwen-Qwen2.5-VL-7B-Instruct.json'}}}\n"
                   "method: {kind: qlora, r: 32}\ndata: {max_length: 512}\n"
                   "train: {batch_size: 3, gradient_checkpointing: true}\n")
    result = CliRunner().invoke(app, ["plan", str(cfg), "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)["plans"][0]
    assert (plan["method"], plan["seq"], plan["batch"]) == ("qlora4", 512, 3)
    flagged = json.loads(CliRunner().invoke(app, ["plan", str(cfg), "--json", "--batch", "1"]).stdout)["plans"][0]
    assert flagged["batch"] == 1 and flagged["peak"] < plan["peak"]
    accumulating = CliRunner().invoke(app, ["plan", str(cfg), "--json", "--grad-accum", "4"])
    single = CliRunner().invoke(app, ["plan", str(cfg), "--json"])
    assert json.loads(accumulating.stdout)["plans"][0]["peak"] > json.loads(single.stdout)["plans"][0]["peak"]


def test_cli_plan_bad_input_is_one_line():
    from vlmtune.errors import InputError

    result = CliRunner().invoke(app, ["plan", "--model", str(CONFIGS / "Qwen-Qwen-7B.json"), "--optim", "lion"])
    assert isinstance(result.exception, InputError) and result.exception.exit_code == 2
    assert str(result.exception).startswith("--optim: unknown optim 'lion'") and "\n" not in str(result.exception)


def test_cli_plan_from_data_lengths(tiny_factory, shapes_data):
    """--data: lengths through the model's processor; plans at the longest, p95 and p50."""
    from vlmtune.diagnose.data_lengths import data_lengths

    model = tiny_factory("qwen2_vl", hidden=64, kv_heads=2)
    data = shapes_data / "train_mixed.jsonl"
    stats = data_lengths(str(model), str(data), max_length=4096, root=str(shapes_data))
    cases = stats["cases"]
    assert cases["longest"] >= cases["p95"] >= cases["p50"] > 10 and stats["images"] == 2
    assert stats["samples"] == len(data.read_text().splitlines())
    result = CliRunner().invoke(app, ["plan", "--model", str(model), "--data", str(data), "--data-root",
                                      str(shapes_data), "--seq", "4096", "--method", "lora", "--json"])
    assert result.exit_code == 0, result.output
    plans = json.loads(result.stdout)["plans"]
    assert [(p["case"], p["seq"]) for p in plans] == [(c, cases[c]) for c in ("longest", "p95", "p50")]
    assert plans[0]["peak"] >= plans[1]["peak"] >= plans[2]["peak"]
    answers = stats["answers"]
    assert 0 < answers["p50"] <= answers["longest"] < cases["longest"]
    assert plans[0]["logits"] == answers["longest"] * model_shapes(str(model)).vocab * 12


def test_plan_from_data_sizes_a_dynamic_resolution_tower_by_its_image_tokens(tiny_factory, shapes_data):
    """Qwen2-VL's config has no image size: --data plans the tower at the side the processor gave
    the data's images (from their image tokens), not at the 448-px fallback."""
    from vlmtune.diagnose.data_lengths import data_lengths, side_from_tokens

    model = tiny_factory("qwen2_vl", hidden=64, kv_heads=2)
    data = shapes_data / "train_vqa.jsonl"
    shapes = model_shapes(str(model))
    stats = data_lengths(str(model), str(data), max_length=4096, root=str(shapes_data))
    side = side_from_tokens(shapes, stats["image_tokens"])
    patch, merge = shapes.vision["patch"], shapes.vision["merge"]
    assert (side // patch) ** 2 == stats["image_tokens"] * merge ** 2 and side <= 64 + 2 * patch * merge

    def full_plan(*extra):
        result = CliRunner().invoke(app, ["plan", "--model", str(model), "--method", "full", "--json", *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["plans"][0]

    on_data = full_plan("--data", str(data), "--data-root", str(shapes_data), "--seq", "4096")
    at_side = full_plan("--seq", str(on_data["seq"]), "--image-size", str(side),
                        "--answer-tokens", str(stats["answers"]["longest"]))
    fallback = full_plan("--seq", str(on_data["seq"]), "--answer-tokens", str(stats["answers"]["longest"]))
    assert on_data["vision_activations"] == at_side["vision_activations"] > 0
    assert fallback["vision_activations"] > 10 * on_data["vision_activations"]
    assert side_from_tokens(model_shapes(str(CONFIGS / "google-gemma-3-4b-it.json")), 16) is None  # fixed 896 px
