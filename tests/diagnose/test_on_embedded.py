"""Every diagnostic of issue 6 on the embedded default, ``vlmtune/tiny-shapes``.

The other tests in this folder use tiny real-architecture checkpoints built from configs;
these run the same diagnostics on the shipped model, through the zoo name, as a user's
first session would (a few optimizer steps each: what is checked is that each diagnostic
runs on it and says something coherent, not the model's quality).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vlmtune.cli import app
from vlmtune.config import build_config, dump_config

pytestmark = pytest.mark.slow
ZOO = "vlmtune/tiny-shapes"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from vlmtune.data.synth import synth

    root = tmp_path_factory.mktemp("embedded")
    synth(root, tasks=("vqa", "mc", "mc_text", "grounding"), n=30, seed=1, image_size=64)
    return root


def _config(tmp_path, root, **sections):
    base = {"name": sections.pop("name", "run"), "model": {"path": ZOO},
            "method": {"kind": "lora", "r": 8, "alpha": 16, "dropout": 0.0},
            "data": {"train": str(root / "train_grounding.jsonl"), "max_length": 256},
            "train": {"max_steps": 2, "batch_size": 4, "lr": 1e-3, "out_dir": str(tmp_path / "runs"),
                      "log_every": 1, "checkpoint_every": 100},
            "eval": {"test": str(root / "test_grounding.jsonl"), "max_samples": 3, "max_new_tokens": 16,
                     "metrics": {"grounding": ["iou"]}}}
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return build_config(base)


def test_plan_counts_the_shipped_model_exactly():
    from transformers import AutoModelForImageTextToText

    from vlmtune.zoo import resolve

    result = CliRunner().invoke(app, ["plan", "--model", ZOO, "--gpu-mem", "1GiB", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    real = AutoModelForImageTextToText.from_pretrained(resolve(ZOO))
    assert sum(plan["params"].values()) == sum(p.numel() for p in real.parameters())
    assert {p["method"] for p in plan["plans"]} == {"full", "lora", "qlora8", "qlora4"}
    assert all(p["fits"] for p in plan["plans"])  # a few MB of weights fit 1 GiB


def test_format_check_with_the_shipped_template(data):
    result = CliRunner().invoke(app, ["data", "check", "--train", str(data / "train_mc_text.jsonl"),
                                      "--eval", str(data / "test_mc.jsonl"), "--model", ZOO, "--json"])
    assert result.exit_code == 0, result.output
    findings = json.loads(result.stdout)
    assert findings[0]["severity"] == "error" and "option text" in findings[0]["message"]


def test_rank_and_vision_probe_on_a_full_run(tmp_path, data):
    from vlmtune.diagnose.rank import analyse_run
    from vlmtune.diagnose.vision_probe import probe_run
    from vlmtune.train.loop import train

    run = train(_config(tmp_path, data, name="full", method={"kind": "full"}))
    rank = analyse_run(run)
    assert rank["matrices"] > 0 and rank["unchanged"] < rank["matrices"]
    energies = list(rank["median_energy"].values())
    assert energies == sorted(energies) and 0 < energies[0] <= energies[-1] <= 1.0
    probe = probe_run(run, max_samples=2)
    assert probe["vision_changed"] and "grounding" in probe["tasks"]
    share = json.loads((run / "resources.json").read_text())["vision_share"]
    assert share["param_fraction"] > 0 and share["time_fraction"] > 0


def test_learning_curve_on_the_shipped_model(tmp_path, data):
    from vlmtune.compare.curve import learning_curve

    path = tmp_path / "cfg.yaml"
    path.write_text(dump_config(_config(tmp_path, data, train={"max_steps": 1})))
    result = learning_curve(path, [4, 8], out=tmp_path / "curve")
    points = result["tasks"]["grounding"]["points"]
    assert [p["n"] for p in points] == [4, 8] and [p["trained_on"] for p in points] == [4, 8]
    assert (tmp_path / "curve" / "learning_curve.png").is_file() and result["answer"]


def test_mix_general_replays_general_data(tmp_path, data):
    from vlmtune.train.loop import train

    cfg = _config(tmp_path, data, name="mix", data={"general": str(data / "train_vqa.jsonl"), "mix_general": 0.5})
    run = train(cfg)
    stats = json.loads((run / "data.json").read_text())["train"]
    assert stats["general_mixed"] > 0
