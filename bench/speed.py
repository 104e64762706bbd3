"""Speed of vlmtune's training options, measured on this machine (not a test).

Trains the same LoRA run on the embedded tiny-shapes model and the synthetic shapes
data (captions, VQA, grounding and text-only samples mixed, so lengths vary) with each
option on and off, and prints the process CPU seconds of each run's training steps (on a
shared machine wall time mostly measures the neighbours), wall time, samples/s, MFU and
the final loss from resources.json (the losses must agree: no option changes them).
Each variant runs ``--repeat`` times, interleaved; the fastest run counts.

    PYTHONPATH=src python bench/speed.py --out /tmp/speed [--samples 64 --epochs 3 --threads 1]

Also times the collator alone (the processor re-run on every batch), to show what share
of a step is input preparation.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
from pathlib import Path

import torch

VARIANTS = {
    "baseline": {"vision_cache": "off", "input_cache_max_bytes": 0},
    "input_cache": {"vision_cache": "off"},
    "vision_cache": {"vision_cache": "memory"},
    "packing": {"vision_cache": "off", "packing": True},
    "group_by_length": {"vision_cache": "off", "group_by_length": True},
    "caches_grouping": {"vision_cache": "memory", "group_by_length": True},
    "caches_packing": {"vision_cache": "memory", "packing": True},
}
TASKS = ("caption", "vqa", "grounding", "text")


def config(out: Path, data: Path, name: str, args: argparse.Namespace, train: dict) -> object:
    from vlmtune.config import build_config

    return build_config({
        "name": name, "model": {"path": "vlmtune/tiny-shapes"},
        "method": {"kind": "lora", "r": 16, "alpha": 32, "dropout": 0.0},
        "data": {"train": str(data / f"train_{args.data}.jsonl"), "max_samples": args.samples, "max_length": 256},
        "train": {"epochs": args.epochs, "batch_size": args.batch, "lr": 2e-3, "checkpoint_every": 10_000,
                  "out_dir": str(out / "runs"), "seed": 0, "log_every": 1000, **train}})


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def time_collate(cfg: object) -> dict:
    from vlmtune.data.collate import Collator
    from vlmtune.model.methods import prepare
    from vlmtune.train.loop import load_split

    model, processor, family = prepare(cfg)
    data = load_split(cfg, cfg.data.train, processor, family, model.config)
    collate = Collator(processor, cfg.data.max_length)
    start = _cpu()
    batches = 0
    for i in range(0, len(data), cfg.train.batch_size):
        collate([data[j] for j in range(i, min(i + cfg.train.batch_size, len(data)))])
        batches += 1
    return {"collate_s_per_batch": (_cpu() - start) / batches}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=160)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default="mix", help="mix (lengths vary) or one task: caption, vqa, grounding, text")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from vlmtune.data.synth import synth
    from vlmtune.train.loop import train

    data = args.out / "data"
    if not (data / "train_mix.jsonl").is_file():
        synth(data, tasks=TASKS, n=max(args.samples, 100), seed=0, image_size=64)
        lines = [line for task in TASKS for line in (data / f"train_{task}.jsonl").read_text().splitlines()]
        random.Random(0).shuffle(lines)
        (data / "train_mix.jsonl").write_text("\n".join(lines) + "\n")
    rows: dict[str, dict] = {}
    for _ in range(args.repeat):
        for name in args.only:
            run = train(config(args.out, data, name, args, VARIANTS[name]), overwrite=True)
            res = json.loads((run / "resources.json").read_text())
            cpu = res["train_cpu_s"]  # the training steps only (not loading and encoding)
            if name in rows and rows[name]["cpu_s"] <= cpu:
                continue
            rows[name] = {"cpu_s": cpu, **{k: res[k] for k in ("wall_time_s", "samples_per_s", "tokens_per_s", "mfu",
                                                                "flops_per_step", "final_train_loss")},
                          "vision_cache": res["vision_cache"]}
    rows["collate"] = time_collate(config(args.out, data, "collate", args, {}))
    base = rows.get("baseline", {}).get("cpu_s")
    print(f"data={args.data} threads={args.threads} samples={args.samples} epochs={args.epochs} batch={args.batch} "
          f"(best of {args.repeat})")
    for name, row in rows.items():
        if name == "collate":
            continue
        speed = f" x{base / row['cpu_s']:.2f}" if base else ""
        print(f"{name:16s} cpu {row['cpu_s']:6.1f}s{speed}  wall {row['wall_time_s']:6.1f}s  "
              f"{row['samples_per_s']:5.1f} samples/s  {row['flops_per_step'] / 1e9:6.2f} GFLOP/step  "
              f"MFU {100 * row['mfu']:5.2f}%  final loss {row['final_train_loss']:.6f}")
    print(f"collator alone: {rows['collate']['collate_s_per_batch'] * 1000:.1f} ms/batch")
    (args.out / "speed.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
