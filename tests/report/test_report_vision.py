"""The report's vision-tower section and verdict sentence, from fake run dirs."""

from __future__ import annotations

import json
import shutil

import yaml

from vlmtune.config import build_config
from vlmtune.report import build_report
from vlmtune.report.read import load_grid_runs
from vlmtune.report.summary import summarize
from vlmtune.report.vision import matched_pairs, vision_mode, vision_rows, vision_verdict

SHARE = {"time_fraction": 0.35, "activation_bytes": 3 * 2**20, "activation_fraction": 0.4, "param_fraction": 0.25}


def _grid_with_vision_variant(fake_grid, tmp_path, gain: float):
    """The fake grid plus ``lora-r16-vision``: lora-r16 with LoRA on the vision tower too,
    scoring ``gain`` more IoU on every grounding item."""
    grid = tmp_path / "grid"
    shutil.copytree(fake_grid, grid)
    src, dst = grid / "lora-r16", grid / "lora-r16-vision"
    shutil.copytree(src, dst)
    config = yaml.safe_load((dst / "config.yaml").read_text())
    config["name"] = "lora-r16-vision"
    config["method"]["lora_on"] = ["language", "vision"]
    (dst / "config.yaml").write_text(yaml.safe_dump(config))
    rows = [json.loads(line) for line in (dst / "predictions.jsonl").read_text().splitlines()]
    for row in rows:
        if row["task"] == "grounding" and row.get("split") != "general":
            row["scores"]["iou"] += gain
    (dst / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = json.loads((dst / "metrics.json").read_text())
    metrics["tasks"]["grounding"]["iou"] += gain
    (dst / "metrics.json").write_text(json.dumps(metrics))
    for name, share in (("lora-r16", {**SHARE, "time_fraction": 0.12, "activation_bytes": 0,
                                      "activation_fraction": 0.0}), ("lora-r16-vision", SHARE)):
        resources = json.loads((grid / name / "resources.json").read_text())
        (grid / name / "resources.json").write_text(json.dumps({**resources, "vision_share": share}))
    (dst / "vision_probe.json").write_text(json.dumps({"tasks": {"grounding": {
        "metric": "iou", "vision_effect_tuned_language": {"value": 0.08, "noise": 0.03}}}}))
    record = yaml.safe_load((grid / "grid.yaml").read_text())
    record["variants"].append({"name": "lora-r16-vision", "trains": True})
    (grid / "grid.yaml").write_text(yaml.safe_dump(record))
    return grid


def test_vision_modes():
    def cfg(**data):
        return build_config({"name": "v", "model": {"path": "m"}, **data})

    assert vision_mode(cfg(method={"kind": "lora"}), trains=True) == "frozen"
    assert vision_mode(cfg(method={"kind": "lora"}, trainable={"vision": True}), trains=True) == "full"
    assert vision_mode(cfg(method={"kind": "full"}, trainable={"vision": False}), trains=True) == "frozen"
    assert vision_mode(cfg(method={"kind": "full"}), trains=True) == "full"
    assert vision_mode(cfg(method={"kind": "lora", "lora_on": ["language", "vision"]}), trains=True) == "LoRA"
    assert vision_mode(cfg(method={"kind": "lora"}), trains=False) is None


def test_only_configs_that_differ_in_vision_alone_are_paired(fake_grid, tmp_path):
    runs = load_grid_runs(_grid_with_vision_variant(fake_grid, tmp_path, 0.2))
    pairs = [(a.name, b.name) for a, b in matched_pairs(runs)]
    assert pairs == [("lora-r16-vision", "lora-r16")]  # full trains vision too, but has no matched frozen twin
    labels = {r.name: r.label for r in runs}
    assert (labels["lora-r16"], labels["lora-r16-vision"]) == ("LoRA r=16", "LoRA r=16 on vision too")


def test_trained_vision_beyond_noise_is_a_bottleneck_and_section_renders(fake_grid, tmp_path):
    grid = _grid_with_vision_variant(fake_grid, tmp_path, 0.2)
    view = summarize(load_grid_runs(grid))
    (sentence,) = vision_verdict(view, "grounding")
    assert sentence.startswith("Training the vision tower (lora-r16-vision) adds +0.2 IoU over frozen vision "
                               "(lora-r16)") and "the vision encoder is a bottleneck" in sentence
    assert "35% of its step time (12% when frozen)" in sentence
    rows = {r[0]: r for r in vision_rows(view)}
    assert rows["lora-r16-vision"][1:] == ["LoRA", "35%", "3.0 MiB (40% of saved)", "25%", "+0.08 ± 0.03 IoU"]
    assert rows["lora-r16"][1] == "frozen" and rows["full"][1] == "full" and "baseline" not in rows
    paths = build_report(grid)
    html, md = paths["html"].read_text(), paths["md"].read_text()
    assert 'id="vision-table"' in html and "## Vision tower" in md
    assert "the vision encoder is a bottleneck" in html and "the vision encoder is a bottleneck" in md
    assert "| lora-r16-vision | LoRA | 35% |" in md


def test_equal_scores_say_the_encoder_is_not_the_bottleneck(fake_grid, tmp_path):
    view = summarize(load_grid_runs(_grid_with_vision_variant(fake_grid, tmp_path, 0.0)))
    (sentence,) = vision_verdict(view, "grounding")
    assert "within noise of frozen vision (lora-r16)" in sentence and "not the bottleneck" in sentence


def test_no_vision_share_no_section(built_report):
    assert 'id="vision"' not in built_report["html"].read_text()
    assert "## Vision tower" not in built_report["md"].read_text()


def test_no_bottleneck_claim_when_nothing_learned(unlearned_grid, tmp_path):
    """Frozen and trained vision tie, but neither beats the constant-answer prior: no claim."""
    from vlmtune.report.render import verdicts

    view = summarize(load_grid_runs(_grid_with_vision_variant(unlearned_grid, tmp_path, 0.0)))
    lines = [line for line in verdicts(view) if "vision" in line]
    assert lines == ["Training the vision tower (lora-r16-vision) vs frozen vision (lora-r16): inconclusive: no "
                     "variant learned the task (none beats the untuned baseline and the constant-answer prior "
                     "beyond noise)."], lines
