"""Compare the memory plan with measured CPU memory on tiny real-architecture models.

Why: the plan is arithmetic; this checks it against what training really adds to a
process (see ``vlmtune.diagnose.memory_measure`` for the protocol: warm-up, baseline RSS,
reset of the kernel's peak, a few real steps, peak RSS - baseline). Each (model, method)
runs in a fresh subprocess so allocator state from one run does not hide another's.

Three measurements (``--measure``, comma-separated; default ``fixed,inuse``):

* ``fixed`` (the validated number): peak RSS increase with ``MALLOC_MMAP_THRESHOLD_=4096``.
  glibc then gives every allocation of a page or more its own mapping and unmaps it on
  free, so RSS follows the bytes of live tensors (plus their page rounding). With glibc's
  defaults, allocations below the threshold come from the heap, where freed chunks stay
  resident: that is the allocator keeping memory, not the program needing it (the CPU
  analogue of CUDA's reserved vs ``max_memory_allocated``).
* ``default``: peak RSS increase with glibc as shipped. Its *dynamic* mmap threshold
  (mallopt(3): after an mmapped chunk is freed, the threshold rises to its size, up to
  32 MiB) moves later tensors into the heap, where freed chunks stay resident; on these
  small workloads that adds 25-60%. Not modelled (bounded, allocator-specific, absent on GPUs).
* ``inuse``: glibc as shipped, and the peak of malloc's in-use bytes (``mallinfo2``:
  ``uordblks + hblkhd``) sampled after every ATen op, above the baseline: what the
  program holds, independent of what the allocator keeps resident. A second check.

Usage:
    python scripts/memory_plan_check.py [--families qwen2_vl,llava] [--models vlmtune/tiny-shapes]
        [--methods full,lora,qlora4,qlora8] [--batch 1,8] [--words 150] [--hidden 64] [--steps 3]
        [--measure fixed,default,inuse] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

METHOD_SECTIONS = {
    "full": {"kind": "full"},
    "lora": {"kind": "lora", "r": 16, "dropout": 0.05},
    "qlora4": {"kind": "qlora", "r": 16, "bits": 4, "dropout": 0.05},
    "qlora8": {"kind": "qlora", "r": 16, "bits": 8, "dropout": 0.05},
}
FIXED_MMAP_THRESHOLD = "4096"  # one page
MEASURES = ("fixed", "default", "inuse")


def run_one(model: str, data: str, method: str, batch: int, steps: int, out_dir: str, in_use: bool = False) -> dict:
    """Measure and predict one method in this process (called in a subprocess)."""
    from vlmtune.config import build_config
    from vlmtune.diagnose.memory_measure import predicted_vs_measured

    cfg = build_config({"name": f"mem-{method}", "model": {"path": model}, "method": METHOD_SECTIONS[method],
                        "data": {"train": data, "max_length": 4096},
                        "train": {"batch_size": batch, "out_dir": out_dir}})
    return predicted_vs_measured(cfg, steps, track_in_use=in_use)


def measure(model: str, data: str, method: str, batch: int, steps: int, out_dir: str, how: str) -> dict:
    """One case in a fresh interpreter; ``how`` is one of :data:`MEASURES`."""
    env = dict(os.environ)
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if how == "fixed":
        env["MALLOC_MMAP_THRESHOLD_"] = FIXED_MMAP_THRESHOLD
    args = [sys.executable, __file__, "--one",
            json.dumps([model, data, method, batch, steps, out_dir, how == "inuse"])]
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    if done.returncode:
        return {"failed": done.stderr.strip().splitlines()[-1:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if how == "inuse":
        return {**result, "delta": result["in_use_delta"], "error": result["in_use_error"]}
    return result


def check(families: list[str], models: list[str], methods: list[str], batches: list[int], words: int,
          hidden: int, steps: int, measures: list[str]) -> list[dict]:
    from vlmtune.diagnose.memory_measure import write_long_samples
    from vlmtune.testing import build_tiny

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        targets = [(f, str(build_tiny(f, Path(tmp) / f, hidden=hidden, kv_heads=2))) for f in families if f]
        targets += [(m, m) for m in models if m]
        for batch in batches:
            data = str(write_long_samples(Path(tmp) / f"data{batch}", n=batch, words=words))
            for name, model in targets:
                for method in methods:
                    row: dict = {"model": name, "method": method}
                    for how in measures:
                        result = measure(model, data, method, batch, steps, tmp, how)
                        if "failed" in result:
                            row["failed"] = result["failed"]
                            break
                        row.update({k: result[k] for k in ("seq", "batch", "predicted", "peak_was_reset")})
                        row[f"measured_{how}"] = result["delta"]
                        row[f"error_{how}"] = result["error"]
                        if how != "inuse":
                            row[f"baseline_{how}"] = result["baseline"]
                    rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="qwen2_vl,llava", help="tiny families built here (build_tiny)")
    parser.add_argument("--models", default="vlmtune/tiny-shapes", help="model dirs or zoo names, comma-separated")
    parser.add_argument("--methods", default="full,lora,qlora4,qlora8")
    parser.add_argument("--batch", default="8", help="batch sizes, comma-separated (e.g. 1,4,8)")
    parser.add_argument("--words", type=int, default=150)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--measure", default="fixed,inuse", help=f"comma-separated, from {', '.join(MEASURES)}")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON line")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        result = run_one(*json.loads(args.one))
        print(json.dumps(result))
        return
    measures = [m for m in args.measure.split(",") if m]
    unknown = sorted(set(measures) - set(MEASURES))
    if unknown or not measures:
        parser.error(f"--measure: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(MEASURES)}")
    try:
        batches = [int(b) for b in args.batch.split(",") if b]
    except ValueError:
        parser.error(f"--batch: not a comma-separated list of integers: {args.batch!r}")
    rows = check(args.families.split(","), args.models.split(","), args.methods.split(","), batches,
                 args.words, args.hidden, args.steps, measures)
    if args.json:
        print(json.dumps(rows))
        return
    print("MiB added by training steps; error = predicted / measured - 1")
    header = f"{'model':<20}{'method':<8}{'seq':>5}{'batch':>6}{'predicted':>10}"
    for how in measures:
        header += f"{'RSS ' + how if how != 'inuse' else 'in-use':>14}{'error':>8}"
    print(header)
    for r in rows:
        if "failed" in r:
            print(f"{r['model']:<20}{r['method']:<8} failed: {r['failed']}")
            continue
        line = f"{r['model']:<20}{r['method']:<8}{r['seq']:>5}{r['batch']:>6}{r['predicted'] / 2**20:>10.1f}"
        for how in measures:
            line += f"{r[f'measured_{how}'] / 2**20:>14.1f}{r[f'error_{how}']:>+8.1%}"
        print(line)
    for how in measures:
        errors = [abs(r[f"error_{how}"]) for r in rows if "failed" not in r]
        if errors:
            print(f"max |error| ({how}): {max(errors):.1%} over {len(errors)} cases")


if __name__ == "__main__":
    main()
