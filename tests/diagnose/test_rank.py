"""Rank analysis on synthetic full runs whose update rank is known."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from vlmtune.diagnose.rank import PROJECTIONS, analyse_run, energy_curve


def _fake_full_run(base, run, rank: int | None, seed: int = 0):
    """Copy ``base`` to run/model and add to every language projection a random update of
    ``rank`` (None: full rank)."""
    (run / "model").mkdir(parents=True)
    for f in base.iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy(f, run / "model" / f.name)
    g = torch.Generator().manual_seed(seed)
    weights = {}
    for name, w in load_file(str(base / "model.safetensors")).items():
        parts = name.split(".")
        if w.dim() == 2 and parts[-2] in PROJECTIONS and "visual" not in name:
            out_dim, in_dim = w.shape
            k = min(out_dim, in_dim) if rank is None else rank
            w = w + torch.randn(out_dim, k, generator=g) @ torch.randn(k, in_dim, generator=g) * 0.01
        weights[name] = w.contiguous()
    save_file(weights, str(run / "model" / "model.safetensors"), metadata={"format": "pt"})
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "full", "model": {"path": str(base)},
                                                     "method": {"kind": "full"}}))
    return run


def test_energy_curve_of_a_rank_one_matrix():
    energy, s = energy_curve(torch.outer(torch.arange(1.0, 5.0), torch.ones(3)))
    assert energy["1"] == pytest.approx(1.0) and energy["64"] == pytest.approx(1.0)
    assert s[1] < 1e-9 * s[0]


def test_rank_two_update_is_fully_captured_at_r2(tiny_factory, tmp_path):
    run = _fake_full_run(tiny_factory("qwen2_vl", hidden=64, kv_heads=2), tmp_path / "run", rank=2)
    summary = analyse_run(run)
    assert summary["matrices"] == 14 and summary["unchanged"] == 0  # 2 layers x 7 projections
    assert summary["median_energy"]["2"] == pytest.approx(1.0, abs=1e-6)
    assert summary["median_energy"]["1"] < 0.99
    assert "low-rank" in summary["verdict"]
    assert json.loads((run / "rank.json").read_text())["median_energy"]["2"] == pytest.approx(1.0, abs=1e-6)
    assert (run / "rank_spectrum.png").stat().st_size > 1000


def test_full_rank_update_keeps_little_energy_at_small_rank(tiny_factory, tmp_path):
    run = _fake_full_run(tiny_factory("qwen2_vl", hidden=64, kv_heads=2), tmp_path / "run", rank=None)
    summary = analyse_run(run, rank=2)
    assert summary["median_energy"]["2"] < 0.3
    assert summary["median_energy"]["64"] == pytest.approx(1.0)  # capped at min(shape) <= 64
    assert "high-rank" in summary["verdict"]


def test_adapter_run_is_refused_clearly(tmp_path):
    from vlmtune.errors import RunDirError

    (tmp_path / "adapter").mkdir()
    with pytest.raises(RunDirError, match="full fine-tune"):
        analyse_run(tmp_path)


def test_cli_diagnose_rank(tiny_factory, tmp_path):
    from typer.testing import CliRunner

    from vlmtune.cli import app

    base = tiny_factory("qwen2_vl", hidden=64, kv_heads=2)
    run = _fake_full_run(base, tmp_path / "run", rank=2)
    result = CliRunner().invoke(app, ["diagnose", "rank", "--full-run", str(run), "--base", str(base), "--rank", "2"])
    assert result.exit_code == 0, result.output
    assert "r=2: 100%" in result.output and (run / "rank.json").is_file()
