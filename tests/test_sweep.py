"""``vlmtune sweep``: 6 trials of a tiny Qwen2-VL on a local Ray (2 workers) with ASHA on
validation loss; some trials stop early, the finished ones are evaluated, and the report
gains a sweep section. Parsing ``--search`` is tested without Ray."""

from __future__ import annotations

import json

import pytest

from vlmtune.compare.search import Axis, check_axes, parse_search, trial_name
from vlmtune.errors import ConfigError


def test_parse_search_forms():
    assert parse_search("method.r=1,2,4,8,16,64") == Axis("method.r", values=[1, 2, 4, 8, 16, 64])
    assert parse_search("train.lr=log:1e-5..1e-3") == Axis("train.lr", low=1e-5, high=1e-3, log=True)
    assert parse_search("train.lr=1e-4..3e-4") == Axis("train.lr", low=1e-4, high=3e-4)
    assert parse_search("method.kind=lora,dora").values == ["lora", "dora"]
    assert trial_name({"method.r": 8, "train.lr": 0.000316}, 3) == "t003-r8-lr0.00032"


@pytest.mark.parametrize("text, expected", [
    ("method.r", r"--search method.r: expected key=v1,v2"),
    ("train.lr=log:0..1e-3", r"train.lr: need 0 < LOW < HIGH"),
    ("train.lr=log:1e-3", r"log: takes a range"),
    ("method.r=2,2", r"need distinct values"),
])
def test_parse_search_errors(text, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_search(text)


def test_search_keys_are_checked_against_the_config(run_config, tmp_path):
    cfg = run_config(tmp_path / "model")
    check_axes(cfg, [parse_search("method.r=2,8"), parse_search("train.lr=log:1e-4..1e-2")])
    with pytest.raises(ConfigError, match=r"^--search method.rank=2: .*unknown key"):
        check_axes(cfg, [parse_search("method.rank=2,8")])
    with pytest.raises(ConfigError, match=r"^--search method.r=0: .*must be >= 1"):
        check_axes(cfg, [parse_search("method.r=0,8")])


@pytest.mark.slow
def test_asha_sweep_stops_some_trials_and_writes_the_sweep_section(tmp_path, tiny_factory, run_config,
                                                                   shapes_data):
    ray = pytest.importorskip("ray", reason="pip install 'vlmtune[ray]'")
    from vlmtune.compare.sweep import run_sweep
    from vlmtune.report import build_report

    cfg = run_config(tiny_factory("qwen2_vl"), name="shapes",
                     train={"max_steps": 6, "eval_every": 2, "checkpoint_every": 2, "batch_size": 2},
                     method={"dropout": 0.0}, eval={"max_samples": 4})
    axes = [parse_search("method.r=2,8"), parse_search("train.lr=log:1e-4..1e-1")]
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        record = run_sweep(cfg, axes, samples=3, concurrent=True, out=tmp_path / "sweep")
    finally:
        ray.shutdown()
    trials = record["trials"]
    assert len(trials) == 6 and len({t["name"] for t in trials}) == 6
    statuses = [t["status"] for t in trials]
    assert "failed" not in statuses, trials
    assert "stopped" in statuses and "finished" in statuses, statuses
    for t in trials:
        run = tmp_path / "sweep" / t["name"]
        assert (run / "config.yaml").is_file() and (run / "metrics.jsonl").is_file()  # ordinary run dirs
        assert t["params"]["method.r"] in (2, 8) and 1e-4 <= t["params"]["train.lr"] <= 1e-1
        if t["status"] == "stopped":
            assert t["validations"] < 3 and not (run / "metrics.json").exists()
        else:
            assert t["validations"] == 3 and (run / "adapter").is_dir() and (run / "metrics.json").is_file()
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text())["trials"] == trials

    paths = build_report(tmp_path / "sweep")  # what `vlmtune report SWEEP_DIR` does
    md = paths["md"].read_text()
    assert "## Sweep" in md and "stopped early by ASHA" in md
    assert "smallest rank within noise of the best: r=" in md and "best learning rate for lora: " in md
    for key in ("sweep-metric-vs-rank", "sweep-metric-vs-lr", "sweep-val-loss-vs-lr"):
        assert (tmp_path / "sweep" / f"{key}.png").is_file()


def test_cli_sweep_bad_search_is_one_line(tmp_path, run_config):
    import subprocess
    import sys

    import yaml

    cfg = run_config(tmp_path / "model", train={"eval_every": 2})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    code = "from vlmtune.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", code, "sweep", str(path), "--search", "method.r=1,2",
                           "--search", "train.lr=log:1e-3..1e-5"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --search train.lr=log:1e-3..1e-5: train.lr: need 0 < LOW < HIGH, got 0.001..1e-05"
    no_ray = "import sys; sys.modules['ray'] = None; " + code
    done = subprocess.run([sys.executable, "-c", no_ray, "sweep", str(path), "--search", "method.r=1,2"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: vlmtune sweep needs Ray: pip install 'vlmtune[ray]' (or pip install 'ray[tune]>=2.9')"
