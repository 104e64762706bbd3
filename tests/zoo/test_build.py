"""The zoo recipe runs end to end at toy sizes and writes a checkpoint that loads normally."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest

from vlmtune.zoo.build import BuildPlan, Stage, build
from vlmtune.zoo.vision_pretrain import VisionStage

TOY = BuildPlan(n_scenes=40, stages=(Stage(2, 1e-3, batch_size=4), Stage(2, 1e-4, batch_size=4, caption_every=4)),
                vision=VisionStage(2, batch_size=4, warmup_steps=1), vision_held_out=8,
                text_hidden=64, text_layers=2, text_heads=1, text_kv_heads=1, text_ffn=128, vision_hidden=32,
                vision_layers=2, vision_heads=1, vision_mlp_ratio=2, vocab_size=400)


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
    assert [stage["steps"] for stage in saved["plan"]["stages"]] == [2, 2]
    assert saved["total_params"] == record["total_params"]
    assert set(saved["scores"]) == {"vqa", "mc", "where", "grounding", "caption"}
    assert saved["scores"]["vqa"]["n"] == 2
    assert sum(t["n"] for t in saved["scores"]["mc"]["by_type"].values()) == 2
    # the second held-out set: another synth seed, other scenes
    assert saved["second_seed"]["seed"] == 1 and saved["second_seed"]["scores"]["vqa"]["n"] == 2
    assert (tmp_path / "work/data/heldout-seed1/test_vqa.jsonl").read_text() != \
        (tmp_path / "work/data/heldout/test_vqa.jsonl").read_text()
    assert saved["vision_stage"]["steps"] == 2 and saved["vision_stage"]["held_out"]["images"] == 4


def test_training_data_never_teaches_grounding(tmp_path):
    from vlmtune.zoo.build import synth_data

    files = synth_data(BuildPlan(n_scenes=20), tmp_path)
    tasks = {json.loads(line)["task"] for line in files["train"].read_text().splitlines()}
    assert tasks == {"caption", "vqa", "mc", "where"}
    assert (files["test_root"] / "test_grounding.jsonl").is_file()


def test_stage_mix_thins_captions_and_repeats_short_answers(tmp_path):
    from vlmtune.zoo.build import stage_mix, synth_data

    files = synth_data(BuildPlan(n_scenes=50), tmp_path)
    rows = [json.loads(line) for line in stage_mix(files["train"], Stage(1, 1e-3, caption_every=4, repeat_short=3), 2)
            .read_text().splitlines()]
    counts = {t: sum(r["task"] == t for r in rows) for t in ("caption", "vqa", "mc", "where")}
    assert counts == {"caption": 10, "vqa": 120, "mc": 120, "where": 40}
    assert len({r["id"] for r in rows}) == len(rows)  # repeats get their own ids
    rows = [json.loads(line) for line in stage_mix(files["train"], Stage(1, 1e-3, caption_every=4, repeat_mc=3), 3)
            .read_text().splitlines()]
    assert {t: sum(r["task"] == t for r in rows) for t in ("caption", "vqa", "mc")} == {"caption": 10, "vqa": 40,
                                                                                       "mc": 120}
    none = stage_mix(files["train"], Stage(1, 1e-3, caption_every=0), 1).read_text().splitlines()
    assert {json.loads(line)["task"] for line in none} == {"vqa", "mc", "where"}
    rows = [json.loads(line) for line in stage_mix(files["train"], Stage(1, 1e-3, repeat_where=3), 5)
            .read_text().splitlines()]
    assert {t: sum(r["task"] == t for r in rows) for t in ("vqa", "where")} == {"vqa": 40, "where": 120}


def test_stage_mixes_of_one_index_do_not_overwrite_each_other(tmp_path):
    """Two builds (or experiments) sharing a work directory may mix stage k differently."""
    from vlmtune.zoo.build import stage_mix, synth_data

    files = synth_data(BuildPlan(n_scenes=20), tmp_path)
    plain = stage_mix(files["train"], Stage(1, 1e-3), 4)
    text = plain.read_text()
    more_mc = stage_mix(files["train"], Stage(1, 1e-3, repeat_mc=3), 4)
    assert more_mc != plain and plain.read_text() == text
    assert len(more_mc.read_text().splitlines()) > len(text.splitlines())


def test_stage_mix_curriculum_keeps_small_scenes(tmp_path):
    from vlmtune.zoo.build import scene_sizes, stage_mix, synth_data

    files = synth_data(BuildPlan(n_scenes=60), tmp_path)
    sizes = scene_sizes(files["train"])
    assert set(sizes.values()) == {1, 2, 3}
    rows = [json.loads(line) for line in stage_mix(files["train"], Stage(1, 1e-3, max_shapes=1), 1)
            .read_text().splitlines()]
    singles = [image for image, n in sizes.items() if n == 1]
    assert {r["images"][0] for r in rows} == set(singles) and len(rows) == 4 * len(singles)
    assert all(r["answers"][1].startswith("There is one shape") for r in rows if r["task"] == "caption")


def test_language_stages_keep_the_pretrained_tower_frozen_unless_asked(tmp_path):
    from vlmtune.zoo.build import run_config

    frozen = run_config(BuildPlan(), tmp_path, tmp_path / "t.jsonl", tmp_path)
    assert frozen.trains_role("language")
    assert not frozen.trains_role("projector") and not frozen.trains_role("vision")
    trained = run_config(BuildPlan(train_projector=True, train_vision=True), tmp_path, tmp_path / "t.jsonl", tmp_path)
    assert trained.trains_role("projector") and trained.trains_role("vision")


def test_fit_budget_scales_every_stage():
    from vlmtune.zoo.budget import fit_budget

    plan = fit_budget(BuildPlan(stages=(Stage(100, 1e-3), Stage(300, 1e-4))), 200)
    assert [s.steps for s in plan.stages] == [50, 150]
    assert fit_budget(BuildPlan(stages=(Stage(1, 1e-3),)), 10_000).stages[0].steps == 1


def test_read_plan_rebuilds_the_recorded_recipe(tmp_path):
    """The shipped build.json is today's recipe; a build.json that
    predates the where task, the position target and the second seed comes back without
    them, whatever today's defaults are."""
    from importlib.resources import files

    from vlmtune.errors import InputError
    from vlmtune.zoo.build import read_plan

    shipped = files("vlmtune.zoo") / "tiny-shapes" / "build.json"
    assert read_plan(shipped) == BuildPlan()  # its last stage ran with --threads 1 (the default)
    old = json.loads(json.dumps(asdict(BuildPlan())))
    old.update(tasks=["caption", "vqa", "mc"], stages=[{"steps": 400, "lr": 3e-4}, {"steps": 2400, "lr": 3e-4,
                                                                                    "repeat_mc": 3}])
    old.pop("second_seed")
    old["vision"].pop("position")
    (tmp_path / "old.json").write_text(json.dumps({"plan": old}))
    plan = read_plan(tmp_path / "old.json")
    assert plan.tasks == ("caption", "vqa", "mc") and plan.second_seed is None and not plan.vision.position
    assert [(s.steps, s.repeat_mc) for s in plan.stages] == [(400, 1), (2400, 3)]
    written = tmp_path / "build.json"
    written.write_text(json.dumps({"plan": json.loads(json.dumps(asdict(BuildPlan())))}))
    assert read_plan(written) == BuildPlan()  # round trip of today's defaults
    written.write_text('{"plan": {"stages": [{"steps": 1}]}}')
    with pytest.raises(InputError, match="build.json"):
        read_plan(written)


@pytest.mark.slow  # three toy builds: ~20 s idle
def test_resume_keeps_finished_stages_and_continues_a_started_one(tmp_path, monkeypatch):
    """A build stopped in its last stage: --resume keeps stage 0 and stage 1 (not retrained),
    continues stage 2 from its checkpoint, and ends with the uninterrupted build's weights."""
    from dataclasses import replace

    from safetensors.torch import load_file

    from vlmtune.train import checkpoint as ckpt
    from vlmtune.zoo import vision_pretrain

    plan = replace(TOY, stages=(Stage(2, 1e-3, batch_size=4), Stage(4, 1e-4, batch_size=4)), second_seed=None)
    straight = build(tmp_path / "a", plan=plan, work=tmp_path / "wa", eval_per_task=0)

    real_save = ckpt.save_checkpoint

    def crash_at_step_2_of_stage_2(folder, at, *args, **kwargs):
        path = real_save(folder, at, *args, **kwargs)
        if "stage2" in str(folder) and at == 2:
            raise KeyboardInterrupt
        return path

    from vlmtune.zoo import build as build_module

    monkeypatch.setattr(build_module, "run_config", _checkpoint_every(build_module.run_config, 2))
    monkeypatch.setattr(ckpt, "save_checkpoint", crash_at_step_2_of_stage_2)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path / "b", plan=plan, work=tmp_path / "wb", eval_per_task=0)
    monkeypatch.setattr(ckpt, "save_checkpoint", real_save)
    calls = []
    monkeypatch.setattr(vision_pretrain, "pretrain_vision", lambda *a, **k: calls.append("stage0"))
    stage1_loss = (tmp_path / "wb/runs/stage1/metrics.jsonl").read_text()
    resumed = build(tmp_path / "b", plan=plan, work=tmp_path / "wb", eval_per_task=0, resume=True)
    assert calls == [] and resumed["resumed"]
    assert resumed["vision_stage"]["held_out"] == straight["vision_stage"]["held_out"]
    assert (tmp_path / "wb/runs/stage1/metrics.jsonl").read_text() == stage1_loss  # kept, not retrained
    a, b = load_file(str(tmp_path / "a/model.safetensors")), load_file(str(tmp_path / "b/model.safetensors"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6


def _checkpoint_every(run_config, every: int):
    def patched(*args, **kwargs):
        cfg = run_config(*args, **kwargs)
        cfg.train.checkpoint_every = every
        return cfg
    return patched


@pytest.mark.slow  # three toy builds: ~20 s idle
def test_continue_from_trains_only_the_added_stage(tmp_path):
    """--from: a finished 1-stage build extended by a second stage ends with the weights of the
    straight 2-stage build, and its record keeps the first stage's numbers; a build of another
    recipe, or one not shorter than the plan, is refused with one clear error."""
    from safetensors.torch import load_file

    from vlmtune.errors import InputError

    two = replace(TOY, second_seed=None)
    one = replace(two, stages=two.stages[:1])
    straight = build(tmp_path / "a", plan=two, work=tmp_path / "wa", eval_per_task=0)
    first = build(tmp_path / "b", plan=one, work=tmp_path / "wb", eval_per_task=0)
    stage1_log = (tmp_path / "wb/runs/stage1/metrics.jsonl").read_text()
    extended = build(tmp_path / "b", plan=two, work=tmp_path / "wb", eval_per_task=0, continue_from=tmp_path / "b")
    assert (tmp_path / "wb/runs/stage1/metrics.jsonl").read_text() == stage1_log  # not retrained
    assert [p.name for p in sorted((tmp_path / "wb/runs").iterdir())] == ["stage1", "stage2"]
    assert extended["stage_wall_time_s"][0] == first["stage_wall_time_s"][0]
    assert extended["final_train_loss"][0] == first["final_train_loss"][0]
    assert extended["continued_from"]["stages_kept"] == 1
    assert extended["vision_stage"] == first["vision_stage"]
    a, b = load_file(str(tmp_path / "a/model.safetensors")), load_file(str(tmp_path / "b/model.safetensors"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    with pytest.raises(InputError, match="another recipe"):
        build(tmp_path / "c", plan=replace(two, text_layers=3), work=tmp_path / "wc", eval_per_task=0,
              continue_from=tmp_path / "a")
    with pytest.raises(InputError, match="not the first stages"):
        build(tmp_path / "c", plan=two, work=tmp_path / "wc", eval_per_task=0, continue_from=tmp_path / "a")


def test_zoo_build_names_its_recipes(tmp_path, monkeypatch):
    """--model picks a shipped size's recipe (the small one: ~half the parameters, same stages);
    an unknown name is one line, exit 2, and nothing is written."""
    import sys

    from vlmtune import cli
    from vlmtune.zoo.build import PLANS

    small, large = PLANS["tiny-shapes-small"], PLANS["tiny-shapes"]
    assert large == BuildPlan() and small.text_hidden < large.text_hidden and small.tasks == large.tasks
    monkeypatch.setattr(sys, "argv", ["vlmtune", "zoo", "build", "--model", "nope", "--out", str(tmp_path / "o"),
                                      "--work", str(tmp_path / "w")])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2 and not (tmp_path / "o").exists() and not (tmp_path / "w").exists()
