"""The zoo recipe runs end to end at toy sizes and writes a checkpoint that loads normally."""

from __future__ import annotations

import json

from vlmtune.zoo.build import BuildPlan, build

TOY = BuildPlan(n_scenes=40, steps=2, focus_steps=2, batch_size=4, focus_batch_size=4, text_hidden=64, text_layers=2, text_heads=1,
                text_kv_heads=1, text_ffn=128, vision_hidden=32, vision_layers=2, vision_heads=1,
                vision_mlp_ratio=2, vocab_size=400)


def test_build_writes_loadable_checkpoint(tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out = tmp_path / "tiny"
    (out).mkdir()
    (out / "README.md").write_text("card")  # a rebuild into the shipped dir keeps the card
    record = build(out, plan=TOY, work=tmp_path / "work", eval_per_task=2)

    model = AutoModelForImageTextToText.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    assert model.config.model_type == "qwen2_vl" and model.config.text_config.use_cache
    assert model.config.text_config.hidden_size == 64 and model.config.vision_config.embed_dim == 32
    assert processor.tokenizer.pad_token is not None and processor.chat_template
    assert (out / "README.md").read_text() == "card"
    saved = json.loads((out / "build.json").read_text())
    assert saved["plan"]["steps"] == saved["plan"]["focus_steps"] == 2
    assert saved["total_params"] == record["total_params"]
    assert set(saved["scores"]) == {"vqa", "mc", "grounding", "caption"}
    assert saved["scores"]["vqa"]["n"] == 2


def test_training_data_never_teaches_grounding(tmp_path):
    from vlmtune.zoo.build import synth_data

    files = synth_data(BuildPlan(n_scenes=20), tmp_path)
    tasks = {json.loads(line)["task"] for line in files["train"].read_text().splitlines()}
    assert tasks == {"caption", "vqa", "mc"}
    assert (files["test_root"] / "test_grounding.jsonl").is_file()


def test_focus_mix_thins_captions_only(tmp_path):
    from vlmtune.zoo.build import focus_mix, synth_data

    plan = BuildPlan(n_scenes=50, caption_every=4)
    files = synth_data(plan, tmp_path)
    rows = [json.loads(line) for line in focus_mix(files["train"], plan).read_text().splitlines()]
    counts = {t: sum(r["task"] == t for r in rows) for t in plan.tasks}
    assert counts == {"caption": 10, "vqa": 40, "mc": 40}


def test_fit_budget_scales_both_stages():
    from vlmtune.zoo.build import fit_budget

    plan = fit_budget(BuildPlan(steps=100, focus_steps=300), 200)
    assert (plan.steps, plan.focus_steps) == (50, 150)
    assert fit_budget(BuildPlan(steps=1, focus_steps=1), 10_000).steps == 1
