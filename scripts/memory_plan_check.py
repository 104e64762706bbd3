"""Compare the memory plan with measured CPU memory on tiny real-architecture models.

Why: the plan is arithmetic; this checks it against what training really adds to a
process (see ``vlmtune.diagnose.memory_measure`` for the protocol: warm-up, baseline RSS,
reset of the kernel's peak, a few real steps, peak RSS - baseline). Each (family, method)
runs in a fresh subprocess so allocator arenas from one run do not hide another's.

Usage:
    python scripts/memory_plan_check.py [--families qwen2_vl,gemma3] [--methods full,lora,qlora4,qlora8]
                                        [--batch 8] [--words 150] [--hidden 64] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
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


def run_one(model: str, data: str, method: str, batch: int, steps: int, out_dir: str) -> dict:
    """Measure and predict one method in this process (called in a subprocess)."""
    from vlmtune.config import build_config
    from vlmtune.diagnose.memory_measure import predicted_vs_measured

    cfg = build_config({"name": f"mem-{method}", "model": {"path": model}, "method": METHOD_SECTIONS[method],
                        "data": {"train": data, "max_length": 4096},
                        "train": {"batch_size": batch, "out_dir": out_dir}})
    return predicted_vs_measured(cfg, steps)


def check(families: list[str], methods: list[str], batch: int, words: int, hidden: int, steps: int) -> list[dict]:
    from vlmtune.diagnose.memory_measure import write_long_samples
    from vlmtune.testing import build_tiny

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_long_samples(Path(tmp) / "data", n=batch, words=words)
        for family in families:
            model = build_tiny(family, Path(tmp) / family, hidden=hidden, kv_heads=2)
            for method in methods:
                args = [sys.executable, __file__, "--one", json.dumps([str(model), str(data), method, batch, steps, tmp])]
                done = subprocess.run(args, capture_output=True, text=True)
                if done.returncode:
                    rows.append({"family": family, "method": method, "failed": done.stderr.strip().splitlines()[-1:]})
                    continue
                rows.append({"family": family, **json.loads(done.stdout.strip().splitlines()[-1])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="qwen2_vl")
    parser.add_argument("--methods", default="full,lora,qlora4,qlora8")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--words", type=int, default=150)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON line")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        result = run_one(*json.loads(args.one))
        print(json.dumps({k: v for k, v in result.items() if k != "plan"} | {"plan": result["plan"]}))
        return
    rows = check(args.families.split(","), args.methods.split(","), args.batch, args.words, args.hidden, args.steps)
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "plan"} for r in rows]))
        return
    print(f"{'family':<12}{'method':<8}{'seq':>6}{'batch':>6}{'baseline MiB':>14}{'measured MiB':>14}"
          f"{'predicted MiB':>15}{'error':>8}")
    for r in rows:
        if "failed" in r:
            print(f"{r['family']:<12}{r['method']:<8} failed: {r['failed']}")
            continue
        print(f"{r['family']:<12}{r['method']:<8}{r['seq']:>6}{r['batch']:>6}{r['baseline'] / 2**20:>14.1f}"
              f"{r['delta'] / 2**20:>14.1f}{r['predicted'] / 2**20:>15.1f}{r['error']:>+8.1%}")


if __name__ == "__main__":
    main()
