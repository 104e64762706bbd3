"""The embedded default grid: valid as shipped, and runs end to end on a small budget."""

from __future__ import annotations

import json

import pytest
import yaml

from vlmtune.zoo import demo
from vlmtune.compare.grid import load_grid
from vlmtune.compare.ray_grid import log_path, submission_order


@pytest.mark.parametrize("java", [True, False])
def test_shipped_demo_grid_validates(tmp_path, java):
    grid = demo.demo_grid(tmp_path / "data", tmp_path, java=java)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    loaded = load_grid(path)
    names = [v.name for v in loaded.variants]
    assert names == ["baseline", "3-shot", "lora-r2", "lora-r16", "full"]
    kinds = {v.name: v.cfg.method.kind for v in loaded.variants}
    assert kinds["lora-r16"] == "lora" and kinds["full"] == "full"
    assert ("caption" in loaded.variants[0].cfg.eval.metrics) == java


@pytest.mark.slow
def test_demo_runs_end_to_end_on_a_small_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "SYNTH", {**demo.SYNTH, "n": 40})
    shipped = demo.demo_grid

    def small(data, out_dir, *, java):
        grid = shipped(data, out_dir, java=java)
        grid["base"]["train"].update(max_steps=2)
        grid["base"]["eval"].update(max_samples=3, max_new_tokens=8)
        return grid

    monkeypatch.setattr(demo, "demo_grid", small)
    outcome = demo.run_demo(tmp_path, jobs=2)  # side by side on a local Ray, as on 2 cores
    assert set(outcome.status.values()) == {"done"}
    logs = {v.name: log_path(outcome.grid, v).read_text() for v in outcome.grid.variants}
    assert all(", 1 thread(s)," in text and text.rstrip().endswith("done") for text in logs.values()), logs
    html = outcome.report["html"].read_text()
    for name in ("baseline", "3-shot", "lora-r2", "lora-r16", "full"):
        assert name in html
        assert (tmp_path / "demo" / name / "metrics.json").is_file()
    assert json.loads((tmp_path / "demo" / "full" / "resources.json").read_text())["artefact"] == "model"
    assert (tmp_path / "demo" / "full" / "rank.json").is_file()  # compare analyses the full variant
    assert 'id="rank-table"' in html and "rank need:" in html
    again = demo.run_demo(tmp_path, jobs=1)  # re-running resumes, serially too: nothing is redone
    assert set(again.status.values()) == {"skipped"}


def test_local_jobs_one_per_core_up_to_the_trained_variants(tmp_path, monkeypatch):
    grid = demo.demo_grid(tmp_path / "data", tmp_path, java=False)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    loaded = load_grid(path)
    monkeypatch.setattr(demo.os, "cpu_count", lambda: 64)
    assert demo.local_jobs(loaded) == 3  # lora-r2, lora-r16, full
    monkeypatch.setattr(demo.os, "cpu_count", lambda: 2)
    assert demo.local_jobs(loaded) == 2 and demo.local_jobs(loaded, 1) == 1
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # not installed
    assert demo.local_jobs(loaded) == 1


def test_ray_submits_the_longest_variants_first(tmp_path):
    grid = demo.demo_grid(tmp_path / "data", tmp_path, java=False)
    grid["variants"].insert(2, {"name": "lora-r64", "method": {"kind": "lora", "r": 64, "alpha": 128}})
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    order = [v.name for v in sorted(load_grid(path).variants, key=submission_order)]
    assert order == ["full", "lora-r64", "lora-r16", "lora-r2", "baseline", "3-shot"]
