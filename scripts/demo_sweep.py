"""The demo grid's learning-rate sweep (on the validation set) and its seed repeats.

Why: a grid that runs every method at one learning rate compares learning rates as much as
methods: LoRA wants a rate ~10x higher than full fine-tuning, and a rank-2 adapter may want
another again. So each trained variant of ``zoo/demo-grid.yaml`` is trained at several rates
and scored on the demo data's *validation* split (grounding IoU, plus the validation loss
the training loop reports); the best rate per method is what the shipped grid uses, and
the card records this sweep. The test split is not looked at while choosing.

``grid`` mode then runs the whole demo grid (with the rates given) for one training seed
and prints each variant's test IoU, the constant-answer prior and the verdict; run it for
two seeds to see whether the result holds. ``lessons`` mode runs every lesson
(``vlmtune demo --lesson all``) with the training seed given.

Usage:
    OMP_NUM_THREADS=1 python scripts/demo_sweep.py sweep --model /tmp/ts --out /tmp/sweep \\
        --lrs lora-r16=1e-3,2e-3,4e-3 --lrs full=1e-4,3e-4,1e-3
    OMP_NUM_THREADS=1 python scripts/demo_sweep.py grid --model /tmp/ts --out /tmp/seed0 --seed 0
    python scripts/demo_sweep.py lessons --out /tmp/lessons-s1 --seed 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import yaml


def _grid_file(out: Path, model: str | None, seed: int, *, name: str, variants: list[dict] | None = None,
               test: str = "test", epochs: float | None = None, lrs: dict[str, float] | None = None) -> Path:
    from vlmtune.zoo.demo import demo_grid, prepare_data

    data = out / "data"
    prepare_data(data)
    grid = demo_grid(data, out, java=False)
    grid["name"] = name
    base = grid["base"]
    if model:
        base["model"]["path"] = model
    base["train"]["seed"] = seed
    if epochs:
        base["train"]["epochs"] = epochs
    if test != "test":
        base["eval"]["test"] = str(data / f"{test}_grounding.jsonl")
        base["eval"].pop("general", None)
    chosen = variants if variants is not None else grid["variants"]
    for v in chosen:
        if lrs and v["name"] in lrs:
            v.setdefault("train", {})
            v["train"] = {**v["train"], "lr": lrs[v["name"]]} if isinstance(v["train"], dict) else v["train"]
    grid["variants"] = chosen
    path = out / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def _parse_lrs(items: list[str]) -> dict[str, list[float]]:
    out = {}
    for item in items:
        name, _, values = item.partition("=")
        out[name] = [float(v) for v in values.split(",")]
    return out


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Each (variant, lr): train on the demo's train split, score IoU on its val split."""
    from vlmtune.compare.run import run_grid
    from vlmtune.compare.grid import load_grid

    shipped = {v["name"]: v for v in yaml.safe_load(
        (Path(__file__).parents[1] / "src/vlmtune/zoo/demo-grid.yaml").read_text())["variants"]}
    record: dict[str, Any] = {"settings": vars(args), "runs": []}
    for name, lrs in _parse_lrs(args.lrs).items():
        for lr in lrs:
            variant = json.loads(json.dumps(shipped[name]))
            variant["train"] = {**(variant.get("train") or {}), "lr": lr}
            variant["name"] = f"{name}-lr{lr:g}"
            path = _grid_file(args.out, args.model, args.seed, name=f"sweep-s{args.seed}", variants=[variant],
                              test="val", epochs=args.epochs)
            t0 = time.perf_counter()
            run_grid(load_grid(path))
            run = args.out / f"sweep-s{args.seed}" / variant["name"]
            metrics = json.loads((run / "metrics.json").read_text())
            resources = json.loads((run / "resources.json").read_text())
            row = {"variant": name, "lr": lr, "val_iou": metrics["tasks"]["grounding"]["iou"],
                   "val_prior_iou": metrics["prior"]["grounding"]["iou"],
                   "final_val_loss": resources["final_val_loss"], "wall_time_s": round(time.perf_counter() - t0, 1)}
            record["runs"].append(row)
            print(json.dumps(row), flush=True)
    best = {}
    for row in record["runs"]:
        if row["variant"] not in best or row["val_iou"] > best[row["variant"]]["val_iou"]:
            best[row["variant"]] = row
    record["best_lr"] = {name: row["lr"] for name, row in best.items()}
    print(json.dumps({"best_lr": record["best_lr"]}), flush=True)
    return record


def grid(args: argparse.Namespace) -> dict[str, Any]:
    """The whole demo grid for one seed; test IoU per variant, the prior and the verdict."""
    from vlmtune.zoo.demo import run_local

    lrs = {k: v[0] for k, v in _parse_lrs(args.lrs).items()}
    path = _grid_file(args.out, args.model, args.seed, name=f"demo-s{args.seed}", epochs=args.epochs, lrs=lrs)
    t0 = time.perf_counter()
    outcome = run_local(path, jobs=args.jobs)  # as `vlmtune demo` runs it
    record: dict[str, Any] = {"settings": vars(args), "wall_time_s": round(time.perf_counter() - t0, 1),
                              "variants": {}}
    for v in outcome.grid.variants:
        metrics = json.loads((v.run_dir / "metrics.json").read_text())
        record["variants"][v.name] = {"iou": metrics["tasks"]["grounding"]["iou"],
                                      "general": metrics.get("general", {})}
        record["prior_iou"] = metrics["prior"]["grounding"]["iou"]
    md = outcome.report.get("md")
    if md:
        text = Path(md).read_text()
        record["verdict"] = text[text.find("## Verdict"):][:3000] if "## Verdict" in text else ""
    print(json.dumps(record, indent=1, default=str), flush=True)
    return record


def lessons(args: argparse.Namespace) -> dict[str, Any]:
    """Every lesson (``vlmtune demo --lesson all``, or ``--lesson NAME``) with the training seed set to ``--seed``."""
    from rich.console import Console

    from vlmtune.zoo import lessons as shipped

    lesson_grid = shipped.lesson_grid

    def seeded(name: str, data: Path, out_dir: Path) -> dict:
        grid = lesson_grid(name, data, out_dir)
        grid["base"]["train"]["seed"] = args.seed
        return grid

    shipped.lesson_grid = seeded
    t0 = time.perf_counter()
    outcomes = shipped.run_lessons(args.lesson, args.out, console=Console(stderr=True), jobs=args.jobs)
    record = {"settings": vars(args), "wall_time_s": round(time.perf_counter() - t0, 1),
              "findings": {o.name: o.finding for o in outcomes}}
    print(json.dumps(record, indent=1, default=str), flush=True)
    return record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("sweep", "grid", "lessons"))
    p.add_argument("--model", default=None, help="model dir (default: the grid's, vlmtune/tiny-shapes)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=float, default=None, help="override the grid's train.epochs")
    p.add_argument("--lrs", action="append", default=[], help="VARIANT=lr1,lr2,... (grid mode: the first)")
    p.add_argument("--lesson", default="all", help="lessons mode: one lesson's name, or all")
    p.add_argument("--jobs", type=int, default=None, help="grid mode: variants at once (default: as vlmtune demo)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    record = {"sweep": sweep, "grid": grid, "lessons": lessons}[args.mode](args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.mode}-s{args.seed}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
