"""Speed of vlmtune's training options, measured on this machine (not a test).

Trains the same LoRA run on the embedded tiny-shapes model and the synthetic shapes
data with each option on and off, and prints wall time, samples/s, MFU and the final
loss from each run's resources.json (the losses must agree: no option changes them).

    PYTHONPATH=src python bench/speed.py --out /tmp/speed [--samples 160 --epochs 3 --threads 2]

Also times the collator alone (the processor re-run on every batch), to show what share
of a step is input preparation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

VARIANTS = {
    "baseline": {"vision_cache": "off"},
    "vision_cache": {"vision_cache": "memory"},
    "packing": {"vision_cache": "off", "packing": True},
    "group_by_length": {"vision_cache": "off", "group_by_length": True},
    "cache+packing": {"vision_cache": "memory", "packing": True},
}


def config(out: Path, data: Path, name: str, args: argparse.Namespace, train: dict) -> object:
    from vlmtune.config import build_config

    return build_config({
        "name": name, "model": {"path": "vlmtune/tiny-shapes"},
        "method": {"kind": "lora", "r": 16, "alpha": 32, "dropout": 0.0},
        "data": {"train": str(data / f"train_{args.task}.jsonl"), "max_samples": args.samples, "max_length": 256},
        "train": {"epochs": args.epochs, "batch_size": args.batch, "lr": 2e-3, "checkpoint_every": 10_000,
                  "out_dir": str(out / "runs"), "seed": 0, "log_every": 1000, **train}})


def time_collate(cfg: object) -> dict:
    from vlmtune.data.collate import Collator
    from vlmtune.methods import prepare
    from vlmtune.train import load_split

    model, processor, family = prepare(cfg)
    data = load_split(cfg, cfg.data.train, processor, family, model.config)
    collate = Collator(processor, cfg.data.max_length)
    start = time.perf_counter()
    batches = 0
    for i in range(0, len(data), cfg.train.batch_size):
        collate([data[j] for j in range(i, min(i + cfg.train.batch_size, len(data)))])
        batches += 1
    return {"collate_s_per_batch": (time.perf_counter() - start) / batches}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=160)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--task", default="grounding")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--only", nargs="*", default=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from vlmtune.data.synth import synth
    from vlmtune.train import train

    data = args.out / "data"
    if not (data / f"train_{args.task}.jsonl").is_file():
        synth(data, tasks=(args.task,), n=max(2 * args.samples, 100), seed=0, image_size=64)
    rows = {}
    for name in args.only:
        run = train(config(args.out, data, name, args, VARIANTS[name]), overwrite=True)
        res = json.loads((run / "resources.json").read_text())
        rows[name] = {k: res[k] for k in ("wall_time_s", "samples_per_s", "tokens_per_s", "mfu",
                                          "flops_per_step", "final_train_loss")}
        rows[name]["vision_cache"] = res["vision_cache"]
    rows["collate"] = time_collate(config(args.out, data, "collate", args, {}))
    base = rows.get("baseline", {}).get("wall_time_s")
    print(f"threads={args.threads} samples={args.samples} epochs={args.epochs} batch={args.batch}")
    for name, row in rows.items():
        if name == "collate":
            continue
        speed = f" x{base / row['wall_time_s']:.2f}" if base else ""
        print(f"{name:16s} {row['wall_time_s']:7.1f}s{speed}  {row['samples_per_s']:6.1f} samples/s  "
              f"MFU {100 * row['mfu']:5.2f}%  final loss {row['final_train_loss']:.6f}")
    print(f"collator alone: {rows['collate']['collate_s_per_batch'] * 1000:.1f} ms/batch")
    (args.out / "speed.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
