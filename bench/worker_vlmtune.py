"""Bench worker: train with vlmtune's loop (``vlmtune.train.loop.train`` on a RunConfig).

Run by ``run.py`` in its own process: ``python bench/worker_vlmtune.py SPEC.json OUT.json``.
The timed window is the ``train()`` call: model loading, the data pre-pass, every step,
checkpoint and adapter saving — everything a user waits for after giving the config.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (LORA_TARGETS, Hyper, answer_loss, peak_rss_bytes, read_spec, set_threads,  # noqa: E402
                    warm_imports, write_result)

# The loop's speed settings that keep the math of the TRL run (same batches, same order),
# applied when this vlmtune has them (older ones do not). Packing keeps the micro-batches and
# their order (each becomes one padding-free row, attention per sample), so the per-step
# losses still match TRL's (to ~1e-6 here). group_by_length is faster but trains on other
# batches (bench --vlmtune-set train.group_by_length=true: 1.42x TRL samples/s, answer loss
# 37% higher after 3 epochs on this data).
BEST_SETTINGS = {"train.vision_cache": "auto", "train.packing": True, "train.group_by_length": False}


def base_config(spec: dict, hp: Hyper) -> dict:
    return {
        "name": "vlmtune",
        "model": {"path": spec["model"], "dtype": "float32"},
        "method": {"kind": "lora", "r": hp.r, "alpha": hp.alpha, "dropout": hp.dropout,
                   "targets": LORA_TARGETS, "lora_on": ["language"]},
        "data": {"train": spec["train"], "root": spec["root"], "max_length": hp.max_length},
        "train": {"epochs": hp.epochs, "batch_size": hp.batch_size, "grad_accum": 1, "lr": hp.lr,
                  "schedule": hp.schedule, "warmup_ratio": hp.warmup_ratio, "weight_decay": hp.weight_decay,
                  "max_grad_norm": hp.max_grad_norm, "seed": hp.seed, "out_dir": spec["runs"],
                  "checkpoint_every": 10**6, "keep_checkpoints": 1, "log_every": 1, "precision": "fp32"},
    }


def settings(wanted: dict) -> tuple[list[str], dict, list[str]]:
    """Overrides for the settings this vlmtune's RunConfig has; the names it lacks."""
    from vlmtune.config import RunConfig

    applied, missing = {}, []
    for key, value in wanted.items():
        section, field = key.split(".", 1)
        fields = RunConfig.model_fields[section].annotation.model_fields
        if field in fields:
            applied[key] = value
        else:
            missing.append(key)
    return [f"{k}={json.dumps(v)}" for k, v in applied.items()], applied, missing


def main(spec_path: str, out_path: str) -> None:
    spec = read_spec(spec_path)
    set_threads(spec["threads"])
    hp = Hyper(**spec["hyper"])
    from vlmtune.config import apply_overrides, build_config
    from vlmtune.train.measure import machine_info
    from vlmtune.train.loop import train

    overrides, applied, missing = settings({**BEST_SETTINGS, **spec.get("vlmtune_settings", {})})
    cfg = apply_overrides(build_config(base_config(spec, hp)), overrides)
    warm_imports(spec["model"])
    rss_ready = peak_rss_bytes()
    start, cpu = time.perf_counter(), time.process_time()
    run = train(cfg, overwrite=True)
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    rss = peak_rss_bytes()
    resources = json.loads((run / "resources.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    per_epoch = max(1, len(losses) // max(1, round(hp.epochs)))
    samples = round(resources["samples_per_s"] * resources["wall_time_s"])
    result = {
        "trainer": "vlmtune", "settings_applied": applied, "settings_unavailable": missing,
        "wall_s": seconds, "cpu_s": cpu_s, "samples": samples, "samples_per_s": samples / seconds,
        "samples_per_cpu_s": samples / cpu_s,
        "loop_s": resources["wall_time_s"], "loop_samples_per_s": resources["samples_per_s"],
        "steps": resources["steps"], "peak_rss_bytes": rss, "rss_before_train_bytes": rss_ready,
        "trainable_params": resources["trainable_params"], "total_params": resources["total_params"],
        "final_loss": losses[-1], "last_epoch_mean_loss": sum(losses[-per_epoch:]) / len(losses[-per_epoch:]),
        "losses": losses, "resources": {k: resources.get(k) for k in (
            "flops_per_step", "achieved_flops_per_s", "peak_flops_per_s", "mfu")},
        "machine": machine_info(), "run": str(run),
    }
    if spec.get("mfu", True):
        from flops import count, matmul_peak

        result["peak"] = matmul_peak()
        result["flops"] = count(cfg)
    from vlmtune.model.trained import load_trained

    model, processor, _, _ = load_trained(run)
    result["post_loss"] = answer_loss(model, processor, spec["train"], spec["root"], limit=spec["loss_samples"],
                                      batch_size=hp.batch_size, max_length=hp.max_length)
    write_result(out_path, result)


if __name__ == "__main__":
    main(*sys.argv[1:3])
