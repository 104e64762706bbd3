"""Two vlmtune configurations of the bench run, A/B in one process (not a test).

On a shared machine absolute timings mostly measure the neighbours; this runs the bench's
vlmtune training (``worker_vlmtune.base_config`` on a bench work directory's model and
data) with override set A, then B, then B, then A, ... and prints the CPU seconds of each
``train()`` call, the per-pair ratios, each run's peak-RSS growth and how far each run's
per-step losses are from the TRL run of the same work directory (when it has one).

    python bench/run.py --work /tmp/bench              # once: data, model, both trainings
    PYTHONPATH=src python bench/ab.py /tmp/bench --a train.packing=false --b train.packing=true

``--pairs`` sets how many A/B pairs run (default 2); ``--epochs`` shortens each run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Hyper, peak_rss_bytes, set_threads, warm_imports  # noqa: E402
from worker_vlmtune import BEST_SETTINGS, base_config, settings  # noqa: E402


def one_run(work: Path, overrides: list[str], epochs: float) -> dict:
    from vlmtune.config import apply_overrides, build_config
    from vlmtune.train.loop import train

    spec = {"model": str(work / "model"), "train": str(work / "data" / "bench_train.jsonl"),
            "root": str(work / "data"), "runs": str(work / "runs-ab")}
    base, _, _ = settings(BEST_SETTINGS)
    cfg = apply_overrides(build_config(base_config(spec, Hyper(epochs=epochs))), base + overrides)
    start, cpu = time.perf_counter(), time.process_time()
    run = train(cfg, overwrite=True)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {"cpu_s": cpu, "wall_s": wall, "losses": [r["loss"] for r in rows if "loss" in r],
            "load": open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else []}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("work", type=Path, help="a bench --work directory (model/, data/, trl.result.json)")
    p.add_argument("--a", nargs="*", default=[], help="vlmtune overrides of run A (KEY=VALUE)")
    p.add_argument("--b", nargs="*", default=[], help="vlmtune overrides of run B")
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    set_threads(args.threads)
    warm_imports(str(args.work / "model"))
    trl_file = args.work / "trl.result.json"
    trl = json.loads(trl_file.read_text())["losses"] if trl_file.is_file() and args.epochs == 3.0 else None
    results: dict[str, list[dict]] = {"A": [], "B": []}
    for pair in range(args.pairs):
        for name in ("A", "B") if pair % 2 == 0 else ("B", "A"):
            rss = peak_rss_bytes()
            row = one_run(args.work, args.a if name == "A" else args.b, args.epochs)
            row["peak_rss_growth_mib"] = (peak_rss_bytes() - rss) / 2**20  # 0 once an earlier run set the peak
            if trl is not None:
                row["max_loss_diff_vs_trl"] = max(abs(x - y) for x, y in zip(row["losses"], trl))
            results[name].append(row)
            print(json.dumps({"run": name, **{k: v for k, v in row.items() if k != "losses"}}), flush=True)
    ratios = [a["cpu_s"] / b["cpu_s"] for a, b in zip(results["A"], results["B"])]
    print(f"A {args.a}\nB {args.b}\nCPU seconds A/B per pair: {[round(r, 3) for r in ratios]} "
          f"(median {statistics.median(ratios):.3f})")
    diff = max(abs(x - y) for a, b in zip(results["A"], results["B"]) for x, y in zip(a["losses"], b["losses"]))
    print(f"largest per-step loss difference between A and B: {diff:.2e}")


if __name__ == "__main__":
    main()
