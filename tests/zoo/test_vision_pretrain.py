"""Stage 0 of the zoo recipe: cell labels agree with the pixels; the stage trains only the
vision tower and projector, and writes a checkpoint that loads normally."""

from __future__ import annotations

import random

import numpy as np
import pytest

from vlmtune.data.synth_scene import COLOURS, KINDS, render_scene, sample_scene
from vlmtune.zoo.vision_pretrain import COLOUR_NAMES, VisionStage, cell_targets


@pytest.mark.parametrize("seed", range(20))
def test_cell_labels_match_the_pixels(seed):
    scene = sample_scene(random.Random(seed), 64)
    kind, colour, centre = cell_targets(scene, cell=16)
    pixels = np.asarray(render_scene(scene)).reshape(4, 16, 4, 16, 3).transpose(0, 2, 1, 3, 4).reshape(16, 256, 3)
    for cell in range(16):
        if colour[cell] == 0:
            assert kind[cell] == 0
            continue
        rgb = COLOURS[COLOUR_NAMES[colour[cell] - 1]]
        share = (pixels[cell] == rgb).all(-1).mean()
        assert share >= 0.05  # the labelled colour really covers the cell
        named = [s for s in scene.shapes if s.colour == COLOUR_NAMES[colour[cell] - 1]
                 and s.kind == KINDS[kind[cell] - 1]]
        assert named, (seed, cell)
    assert int(centre.sum()) <= len(scene.shapes)  # two centres may share a cell
    assert int(centre.sum()) >= 1


def test_cell_size_must_divide_the_image():
    scene = sample_scene(random.Random(0), 64)
    assert cell_targets(scene, cell=16)[0].shape == (16,)
    assert cell_targets(scene, cell=32)[0].shape == (4,)


def test_cell_position_restarts_per_image_and_ignores_empty_cells():
    import torch

    from vlmtune.zoo.vision_pretrain import cell_position

    scenes = [sample_scene(random.Random(seed), 64) for seed in range(2)]
    kind = torch.cat([cell_targets(s, cell=16)[0] for s in scenes])
    row, col = cell_position(kind, 4)
    assert row.shape == (32,) and bool(((row == -100) == (kind == 0)).all())
    for index in torch.nonzero(kind).flatten().tolist():
        cell = index % 16
        assert (row[index], col[index]) == (cell // 4, cell % 4)


@pytest.mark.parametrize("position", [False, True])
def test_stage_trains_tower_and_projector_only(tmp_path, position):
    import torch
    from transformers import AutoModelForImageTextToText

    from vlmtune.data.synth import split_scenes
    from vlmtune.zoo.build import BuildPlan, corpus_lines, init_checkpoint, synth_data
    from vlmtune.zoo.vision_pretrain import pretrain_vision

    plan = BuildPlan(n_scenes=40, text_hidden=64, text_layers=1, text_heads=1, text_kv_heads=1, text_ffn=128,
                     vision_hidden=32, vision_layers=1, vision_heads=1, vision_mlp_ratio=2, vocab_size=400)
    files = synth_data(plan, tmp_path / "data")
    init = init_checkpoint(plan, corpus_lines(files["train"]), tmp_path / "init")
    scenes = split_scenes("train", 40, seed=0)
    record = pretrain_vision(init, tmp_path / "out", scenes, split_scenes("val", 40, seed=0),
                             VisionStage(steps=3, batch_size=4, warmup_steps=1, position=position), seed=0)
    assert record["steps"] == 3
    assert set(record["held_out"]) == {"images", "kind", "colour", "count", *(["cell"] if position else [])}
    assert 0.0 <= record["held_out"].get("cell", 0.0) <= 1.0
    before = AutoModelForImageTextToText.from_pretrained(init).state_dict()
    after = AutoModelForImageTextToText.from_pretrained(tmp_path / "out").state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(".visual." in f".{name}" for name in changed)
    assert any("merger" in name for name in changed) and any("blocks" in name for name in changed)
    assert (tmp_path / "out" / "tokenizer.json").is_file() and (tmp_path / "out" / "chat_template.jinja").is_file()
