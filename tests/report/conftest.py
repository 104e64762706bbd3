"""Fake but realistic grid directories for the report tests: every artefact the report
reads (config.yaml, metrics.jsonl, resources.json, data.json, predictions.jsonl with small
PNG images, metrics.json), with per-sample scores drawn so the grid tells a clear story:
full fine-tuning wins but breaks format and forgets; LoRA/QLoRA tie; 3-shot helps a bit."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from vlmtune.config import build_config, dump_config

N_TEST, N_GENERAL = 40, 30
PRIOR_IOU = 0.25  # the constant-answer prior (vlmtune.evaluate.prior): above the untuned baseline, below the fine-tunes

# name: (trains, method/eval overrides, mean IoU, format compliance, general accuracy,
#        trainable params, peak GiB)
STORY = {
    "baseline": (False, {}, 0.20, 0.95, 0.60, None, None),
    "3-shot": (False, {"eval": {"shots": 3}}, 0.30, 0.95, 0.60, None, None),
    "lora-r8": (True, {"method": {"kind": "lora", "r": 8}}, 0.58, 0.95, 0.58, 100_000, 1.0),
    "lora-r16": (True, {"method": {"kind": "lora", "r": 16}}, 0.60, 0.95, 0.59, 200_000, 1.05),
    "qlora-r16": (True, {"method": {"kind": "qlora", "r": 16}}, 0.59, 0.95, 0.58, 200_000, 0.5),
    "full": (True, {"method": {"kind": "full"}}, 0.95, 0.75, 0.30, 10_000_000, 3.0),
}
# The same grid where nothing learns the task: every variant at or below the prior (0.25),
# the fine-tunes only a little above the untuned baseline (session 4's grounding demo).
UNLEARNED = {**STORY, "3-shot": (*STORY["3-shot"][:2], 0.21, *STORY["3-shot"][3:]),
             **{name: (*STORY[name][:2], iou, *STORY[name][3:])
                for name, iou in (("lora-r8", 0.20), ("lora-r16", 0.23), ("qlora-r16", 0.22), ("full", 0.26))}}


def _png(path: Path, seed: int) -> None:
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    img = Image.new("RGB", (64, 64), (250, 250, 250))
    x, y = rng.randint(4, 40), rng.randint(4, 40)
    ImageDraw.Draw(img).ellipse([x, y, x + 20, y + 20], fill=(220, 30, 30))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def _rows(name: str, task: str, n: int, mean: float, compliance: float, metric: str, images: Path | None,
          seed: int, split: str | None) -> list[dict]:
    rng = random.Random(f"{name}-{task}-{seed}")
    rows = []
    for i in range(n):
        ok = i < round(compliance * n)
        value = min(1.0, max(0.0, rng.gauss(mean, 0.1))) if ok else 0.0
        if metric == "exact_match":
            value = float(rng.random() < mean)
        rid = f"{task[0]}{i:03d}"
        row = {"id": rid, "task": task,
               "images": [str(images / f"{rid}.png")] if images else [],
               "prompt": f"<|user|> Where is the red circle? ({rid})", "references": ["[10, 10, 30, 30]"],
               "prediction": "[12, 11, 29, 31]" if ok else "the circle is on the left",
               "scores": {metric: value}, "format_ok": ok if metric == "iou" else True,
               "latency_s": 0.05 + 0.01 * (name == "full")}
        if split:
            row["split"] = split
        rows.append(row)
    return rows


def _summary(rows: list[dict], metric: str) -> dict:
    n = len(rows)
    return {"n": n, metric: sum(r["scores"][metric] for r in rows) / n, "format": "box",
            "format_compliance": sum(r["format_ok"] for r in rows) / n}


def write_fake_run(grid_dir: Path, name: str, images: Path, *, base: dict, story: dict = STORY) -> Path:
    trains, extra, iou, compliance, general, trainable, peak = story[name]
    run = grid_dir / name
    run.mkdir(parents=True)
    data = json.loads(json.dumps(base))
    for key, value in extra.items():
        data.setdefault(key, {}).update(value)
    cfg = build_config({**data, "name": name, "train": {"out_dir": str(grid_dir)}})
    (run / "config.yaml").write_text(dump_config(cfg))
    test = _rows(name, "grounding", N_TEST, iou, compliance, "iou", images, 0, None)
    gen = _rows(name, "vqa", N_GENERAL, general, 1.0, "exact_match", None, 1, "general")
    prior_rng = random.Random("prior")  # the same constant answer in every run (one training set)
    for row in test:
        row["prior_scores"] = {"iou": min(1.0, max(0.0, prior_rng.gauss(PRIOR_IOU, 0.1)))}
    prior = {"answer": "[10, 10, 30, 30]", "rule": "the median training box", "n": len(test),
             "iou": sum(r["prior_scores"]["iou"] for r in test) / len(test)}
    metrics = {"tasks": {"grounding": _summary(test, "iou")}, "general": {"vqa": _summary(gen, "exact_match")},
               "prior": {"grounding": prior},
               "samples_per_s": 12.5, "latency_s_mean": 0.05 + 0.01 * (name == "full"),
               "shots": cfg.eval.shots, "model": cfg.model.path, "adapter": cfg.method.uses_adapter and trains}
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test + gen))
    (run / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if trains:
        _write_training(run, name, cfg, trainable, peak)
    return run


def _write_training(run: Path, name: str, cfg, trainable: int, peak: float) -> None:
    steps = 20
    start = {"full": 2.0, "lora-r8": 2.4, "lora-r16": 2.3, "qlora-r16": 2.35}[name]
    lines = [{"step": s, "loss": start * (0.85 ** s) + 0.1, "lr": 1e-4, "grad_norm": 1.0, "epoch": s / steps,
              "samples_per_s": 4.0, "tokens_per_s": 400.0} for s in range(1, steps + 1)]
    lines += [{"step": 10, "val_loss": start * 0.3}, {"step": steps, "val_loss": start * 0.2}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    adapter = cfg.method.uses_adapter
    total = 12_000_000
    resources = {"method": cfg.method.kind, "family": "qwen2_vl", "wall_time_s": 42.0 + (name == "full") * 100,
                 "steps": steps, "samples_per_s": 4.0, "tokens_per_s": 400.0,
                 "peak_memory": {"kind": "rss_peak", "bytes": int(peak * 2**30)},
                 "trainable_params": trainable, "total_params": total,
                 "trainable_pct": 100.0 * trainable / total,
                 "trainable_by_role": {"language": trainable}, "artefact": "adapter" if adapter else "model",
                 "artefact_bytes": trainable * 4, "adapter_bytes": trainable * 4 if adapter else None,
                 "final_train_loss": lines[steps - 1]["loss"], "final_val_loss": start * 0.2,
                 "mfu": 0.42 if name == "full" else None, "machine": {"device": "cpu"}}
    (run / "resources.json").write_text(json.dumps(resources, indent=2))
    (run / "data.json").write_text(json.dumps({"train": {"samples": 80, "skipped": {}}, "val": None}))


BASE = {"model": {"path": "vlmtune/tiny-shapes"}, "data": {"train": "data/train.jsonl"},
        "eval": {"test": "data/test.jsonl", "general": "data/general.jsonl",
                 "metrics": {"grounding": ["iou"], "vqa": ["exact_match"]}},
        "train": {"max_steps": 20}}


def make_fake_grid(root: Path, story: dict = STORY) -> Path:
    images = root / "data" / "img"
    for i in range(N_TEST):
        _png(images / f"g{i:03d}.png", i)
    grid_dir = root / "runs" / "shapes-grid"
    for name in story:
        write_fake_run(grid_dir, name, images, base=BASE, story=story)
    record = {"name": "shapes-grid", "variants": [{"name": n, "trains": story[n][0]} for n in story]}
    (grid_dir / "grid.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    return grid_dir


@pytest.fixture(scope="session")
def fake_grid(tmp_path_factory) -> Path:
    """A finished six-variant grid dir (read-only for tests: copy it before changing it)."""
    return make_fake_grid(tmp_path_factory.mktemp("fake-grid"))


@pytest.fixture(scope="session")
def unlearned_grid(tmp_path_factory) -> Path:
    """The same grid where no variant beats the constant-answer prior (read-only)."""
    return make_fake_grid(tmp_path_factory.mktemp("unlearned-grid"), UNLEARNED)


@pytest.fixture(scope="session")
def built_report(fake_grid) -> dict[str, Path]:
    from vlmtune.report import build_report

    return build_report(fake_grid)
