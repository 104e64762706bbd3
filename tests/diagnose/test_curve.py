"""Learning curve: a resumable grid over data.max_samples, points with noise, and the answer."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vlmtune.atomic import write_json
from vlmtune.config import dump_config
from vlmtune.compare.curve import GRID_FILE, answer, learning_curve, parse_sizes
from vlmtune.errors import InputError

N_TEST = 40


def _fake_fns(gain_at):
    """train/evaluate stand-ins: IoU rises with the training size up to ``gain_at``, then flat."""
    calls = []

    def train_fn(cfg, overwrite=False, resume=False):
        run = cfg.run_dir
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text(dump_config(cfg))
        write_json(run / "resources.json", {"trainable_params": 1})
        write_json(run / "data.json", {"train": {"samples": cfg.data.max_samples}})
        calls.append(cfg.data.max_samples)
        return run

    def evaluate_fn(cfg, run=None, out=None):
        level = min(cfg.data.max_samples, gain_at) / 100
        rows = [{"id": f"g{i}", "task": "grounding", "scores": {"iou": level + 0.05 * (i % 3 - 1)}}
                for i in range(N_TEST)]
        (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        write_json(out / "metrics.json", {"tasks": {"grounding": {"n": N_TEST, "iou": level}}})

    return train_fn, evaluate_fn, calls


@pytest.fixture
def curve_config(tmp_path, run_config, tiny_factory, shapes_data):
    cfg = run_config(tiny_factory("qwen2_vl"), train_file="train_grounding.jsonl", train={"max_steps": 2},
                     eval={"test": str(shapes_data / "test_grounding.jsonl"), "metrics": {"grounding": ["iou"]}})
    path = tmp_path / "cfg.yaml"
    path.write_text(dump_config(cfg))
    return path


def test_curve_runs_each_size_resumes_and_answers(tmp_path, curve_config):
    train_fn, evaluate_fn, calls = _fake_fns(gain_at=20)
    out = tmp_path / "curve"
    result = learning_curve(curve_config, [5, 10, 20], out=out, train_fn=train_fn, evaluate_fn=evaluate_fn)
    assert calls == [5, 10, 20]
    points = result["tasks"]["grounding"]["points"]
    assert [p["n"] for p in points] == [5, 10, 20] and [p["trained_on"] for p in points] == [5, 10, 20]
    assert [p["value"] for p in points] == pytest.approx([0.05, 0.10, 0.20])
    assert all(p["se"] > 0 for p in points)
    assert result["answer"].startswith("Probably yes") and "n=10 to n=20" in result["answer"]
    assert (out / GRID_FILE).is_file() and (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "learning_curve.json").read_text())["tasks"]["grounding"]["metric"] == "iou"
    again = learning_curve(curve_config, [5, 10, 20], out=out, train_fn=train_fn, evaluate_fn=evaluate_fn)
    assert calls == [5, 10, 20] and again["answer"] == result["answer"]  # finished sizes are skipped


def test_flat_curve_says_more_data_will_not_help(tmp_path, curve_config):
    train_fn, evaluate_fn, _ = _fake_fns(gain_at=10)
    result = learning_curve(curve_config, [5, 10, 20], out=tmp_path / "flat", train_fn=train_fn,
                            evaluate_fn=evaluate_fn)
    assert result["answer"].startswith("Probably not much")


def test_answer_needs_two_points_and_sees_a_fall():
    assert "One size only" in answer([{"n": 5, "value": 0.1, "scores": {}}], "IoU")
    up = {"n": 10, "value": 0.5, "scores": {f"i{k}": 0.5 + 0.01 * (k % 2) for k in range(20)}}
    down = {"n": 20, "value": 0.2, "scores": {f"i{k}": 0.2 + 0.01 * (k % 2) for k in range(20)}}
    assert answer([up, down], "IoU").startswith("No:")


def test_sizes_are_checked(tmp_path, curve_config):
    assert parse_sizes("400, 50,100,50") == [50, 100, 400]
    for bad in ("a,b", "0,5", ""):
        with pytest.raises(InputError, match="--sizes"):
            parse_sizes(bad)
    with pytest.raises(InputError, match="exceeds the 24 samples"):
        learning_curve(curve_config, [10, 1000], out=tmp_path / "big")


def test_cli_curve_trains_and_evaluates_tiny_model(tmp_path, curve_config):
    from vlmtune.cli import app

    out = tmp_path / "cli-curve"
    result = CliRunner().invoke(app, ["diagnose", "curve", str(curve_config), "--sizes", "4,8", "--out", str(out),
                                      "eval.max_samples=6"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "learning_curve.json").read_text())
    assert [p["n"] for p in saved["tasks"]["grounding"]["points"]] == [4, 8]
    assert (out / "n8" / "adapter").is_dir() and (out / "learning_curve.png").is_file()
