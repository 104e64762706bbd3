"""The sweep section's answers from hand-made trial run dirs: the smallest rank within noise
of the best (paired differences on the same items), the best learning rate per method, and
stopped trials listed but never recommended."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from vlmtune.report import build_report
from vlmtune.report.sweep import answers, sweep_view


def _trial(root: Path, name: str, r: int, lr: float, scores: list[float] | None, val_loss: float) -> dict:
    run = root / name
    run.mkdir(parents=True)
    # a config as vlmtune writes it (the report reads it typed: a model is required)
    (run / "config.yaml").write_text(yaml.safe_dump({"name": name, "model": {"path": "tiny"},
                                                     "method": {"kind": "lora", "r": r},
                                                     "train": {"lr": lr}, "eval": {"metrics": ["exact_match"]}}))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 4, "loss": 1.0, "val_loss": val_loss}) + "\n")
    if scores is not None:
        rows = [{"id": f"s{i}", "task": "vqa", "prediction": "x", "references": ["x"], "images": [],
                 "scores": {"exact_match": s}} for i, s in enumerate(scores)]
        (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (run / "metrics.json").write_text(json.dumps(
            {"tasks": {"vqa": {"n": len(scores), "exact_match": sum(scores) / len(scores)}}}))
    return {"name": name, "params": {"method.r": r, "train.lr": lr},
            "status": "finished" if scores is not None else "stopped", "error": None,
            "validations": 2 if scores is not None else 1, "val_loss": val_loss}


def test_smallest_rank_within_noise_and_best_lr(tmp_path):
    best = [1.0 if i % 5 else 0.0 for i in range(20)]               # 0.80
    close = list(best)
    close[1] = 0.0                                                   # 0.75: one item worse, within noise
    trials = [_trial(tmp_path, "t000-r2-lr0.001", 2, 1e-3, [0.0] * 20, 2.0),   # far below: beyond noise
              _trial(tmp_path, "t001-r4-lr0.003", 4, 3e-3, close, 1.2),
              _trial(tmp_path, "t002-r8-lr0.01", 8, 1e-2, best, 1.1),
              _trial(tmp_path, "t003-r16-lr1e-05", 16, 1e-5, None, 3.0)]       # stopped by ASHA
    (tmp_path / "sweep.json").write_text(json.dumps({"search": ["method.r=2,4,8,16", "train.lr=log:1e-5..1e-2"],
                                                      "trials": trials}))
    view = sweep_view(tmp_path)
    lines = answers(view)
    assert lines[0].startswith("4 trials (method.r=2,4,8,16, train.lr=log:1e-5..1e-2): 3 finished, 1 stopped early")
    assert lines[1].startswith("smallest rank within noise of the best: r=4 (exact match 0.75; best 0.8 at r=8, "
                               "difference 0.05 ± 0.1).")  # paired: se 0.05, 2 se
    assert lines[2] == "ranks with no trial evaluated on the test set (all stopped early or failed): 16."
    assert lines[3] == "best learning rate for lora: 0.01 (exact match 0.8, trial t002-r8-lr0.01)."

    md = build_report(tmp_path)["md"].read_text()
    assert "## Sweep" in md and "| t003-r16-lr1e-05 | 16 | 1e-05 | stopped | 1 | 3 | — |" in md
    assert (tmp_path / "sweep-metric-vs-rank.png").is_file() and (tmp_path / "sweep-val-loss-vs-lr.png").is_file()
