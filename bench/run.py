"""vlmtune vs TRL SFTTrainer + PEFT: same model, data and hyperparameters, one command.

    python bench/run.py            # the bench (~10-15 min on 2 cores)
    python bench/run.py --quick    # a tiny smoke run (~1-2 min)
    python bench/run.py --size real   # real 152k vocabulary, 448 px images (bench/model_real.py)

Steps: synthesise data (shapes world + two-image samples), build a Qwen2-VL of the chosen
size, train it with vlmtune and with TRL (each in its own process, so peak RSS is its
own), time batched vs one-by-one generation, write ``bench/results/<timestamp>.json`` and
``latest.json`` (``latest-real.json`` for ``--size real``). The last line of stdout is one
JSON object with the headline numbers.
bench/README.md describes the method: what is equal between the runs and what differs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import Hyper  # noqa: E402

GOALS = {"samples_per_s_ratio": (">=", 2.0), "peak_rss_ratio": ("<=", 0.7), "mfu": (">=", 0.5),
         "eval_speedup": (">=", 4.0)}
REAL_GOALS = {"samples_per_s_ratio": (">=", 1.6), "peak_rss_ratio": ("<=", 0.7)}  # issue 20
LOSS_TOLERANCE = 0.10  # relative difference of the two training losses called "close"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny model and data: a smoke test, not a measurement")
    p.add_argument("--epochs", type=float, help="training epochs of both runs (default 3; real: 2)")
    p.add_argument("--out", type=Path, default=HERE / "results", help="results directory (default bench/results)")
    p.add_argument("--size", choices=("quick", "small", "bench", "large", "real"),
                   help="model size (default bench); real: Qwen2-VL-7B's vocabulary and image processing, "
                        "448 px images, no eval, 2 epochs of batch 4 (with --quick: a smoke run of it)")
    p.add_argument("--pairs", type=int, default=1,
                   help="vlmtune/TRL worker pairs, run alternately (V T, T V, ...); ratios per pair (default 1)")
    p.add_argument("--scenes", type=int, help="shapes scenes before the 80/10/10 split (default 80)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of every worker (default 1)")
    p.add_argument("--batch-size", type=int, help="default 8 (real: 4)")
    p.add_argument("--eval-prompts", type=int, help="prompts in the eval comparison (default 32)")
    p.add_argument("--eval-batch-size", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--vlmtune-set", action="append", default=[], metavar="KEY=VALUE",
                   help="vlmtune config override for the vlmtune run (e.g. train.packing=false)")
    p.add_argument("--no-mfu", action="store_true", help="skip the FLOP count (saves ~3 training steps)")
    p.add_argument("--work", type=Path, help="scratch directory (default: a temporary one)")
    args = p.parse_args(argv)
    args.size = args.size or ("quick" if args.quick else "bench")
    real = args.size == "real"
    args.model_size = ("real-quick" if args.quick else "real") if real else args.size
    args.epochs = args.epochs or (1.0 if real and args.quick else 2.0 if real else 3.0)
    args.batch_size = args.batch_size or (4 if real else 8)
    args.image_size = (112 if args.quick else 448) if real else 64
    args.max_length = 1024 if real else 512  # two 448 px images are 512 image tokens
    args.no_eval = real  # the eval comparison (issue 20 part 3) runs on the standard bench
    args.no_mfu = args.no_mfu or real
    if real and args.scenes is None:
        args.scenes = 5 if args.quick else 10
    args.scenes = args.scenes or (10 if args.quick else 80)
    args.eval_prompts = args.eval_prompts or (8 if args.quick else 32)
    if args.quick:
        args.max_new_tokens = min(args.max_new_tokens, 8)
    return args


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def run_worker(name: str, spec: dict, work: Path, threads: int, tag: str = "") -> dict:
    """Run ``worker_<name>.py`` in a fresh process; its log goes to ``work/<name><tag>.log``."""
    stem = f"{name}{tag}"
    spec_path, out_path, log = work / f"{stem}.spec.json", work / f"{stem}.result.json", work / f"{stem}.log"
    spec_path.write_text(json.dumps(spec, indent=1))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent / "src"), os.environ.get("PYTHONPATH")]))}
    load = load_average()
    start = time.perf_counter()
    print(f"[bench] {stem}: running (log {log})", file=sys.stderr, flush=True)
    with log.open("w") as handle:
        code = subprocess.call([sys.executable, str(HERE / f"worker_{name}.py"), str(spec_path), str(out_path)],
                               stdout=handle, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise SystemExit(f"[bench] {name} worker failed (exit {code}); last lines of {log}:\n{tail}")
    result = json.loads(out_path.read_text())
    result["process_s"] = time.perf_counter() - start
    result["load_average_before"], result["load_average_after"] = load, load_average()
    print(f"[bench] {stem}: done in {result['process_s']:.0f} s", file=sys.stderr, flush=True)
    return result


def mfu_of(v: dict) -> tuple[float | None, dict]:
    """vlmtune's own MFU from resources.json when it reports one, else the bench's count."""
    own = v.get("resources", {})
    bench = None
    if "flops" in v:
        achieved = v["flops"]["flops_total"] / v["loop_s"]
        per_cpu = v["peak"].get("flops_per_cpu_s")
        bench = {"mfu": achieved / v["peak"]["flops_per_s"], "flops_per_step": v["flops"]["flops_per_step"],
                 "mfu_cpu": v["flops"]["flops_total"] / v["cpu_s"] / per_cpu if per_cpu else None,
                 "achieved_flops_per_s": achieved, "peak_flops_per_s": v["peak"]["flops_per_s"], **v["flops"]}
    if own.get("mfu") is not None:  # vlmtune's own measurement wins; the bench's is kept as a cross-check
        return float(own["mfu"]), {"source": "resources.json", **own, "bench_estimate": bench}
    if bench is None:
        return None, {"source": "not measured (--no-mfu)"}
    return bench["mfu"], {"source": "bench (FlopCounterMode + measured matmul peak)", **bench}


def goals(headline: dict, real: bool = False) -> dict:
    out = {}
    for key, (op, target) in (REAL_GOALS if real else GOALS).items():
        value = headline[key]
        met = value is not None and math.isfinite(value) and (value >= target if op == ">=" else value <= target)
        out[key] = {"target": f"{op} {target}", "value": value, "met": bool(met)}
    if real:
        return out
    out["eval_identical"] = {"target": "identical outputs", "value": headline["eval_identical"],
                             "met": bool(headline["eval_identical"])}
    return out


def table(result: dict) -> str:
    v, t, e, h = result["vlmtune"], result["trl"], result["eval"], result["headline"]
    rows = [
        ("samples/s (train call)", f"{v['samples_per_s']:.2f}", f"{t['samples_per_s']:.2f}",
         f"{h['samples_per_s_ratio']:.2f}x"),
        ("samples/s (loop only)", f"{v['loop_samples_per_s']:.2f}", f"{t['loop_samples_per_s']:.2f}",
         f"{result['loop_samples_per_s_ratio']:.2f}x"),
        ("samples per CPU-second (train call)", f"{v['samples_per_cpu_s']:.2f}", f"{t['samples_per_cpu_s']:.2f}",
         f"{result['samples_per_cpu_s_ratio']:.2f}x"),
        ("peak RSS (MiB)", f"{v['peak_rss_bytes'] / 2**20:.0f}", f"{t['peak_rss_bytes'] / 2**20:.0f}",
         f"{h['peak_rss_ratio']:.2f}x"),
        ("train loss, last-epoch mean", f"{v['last_epoch_mean_loss']:.4f}", f"{t['last_epoch_mean_loss']:.4f}", ""),
        ("train loss, final step", f"{v['final_loss']:.4f}", f"{t['final_loss']:.4f}", ""),
        ("answer loss after training", f"{v['post_loss']['loss']:.4f}", f"{t['post_loss']['loss']:.4f}", ""),
        ("trainable params", f"{v['trainable_params']:,}", f"{t['trainable_params']:,}", ""),
        ("MFU (vs measured fp32 matmul peak)", "n/a" if h["mfu"] is None else f"{100 * h['mfu']:.1f}%", "", ""),
        ("largest per-step loss difference", f"{result['max_step_loss_diff']:.2e}", "", ""),
    ]
    if e is not None:
        rows.append((f"eval, {e['prompts']} prompts: seconds batched (vlmtune) / one-by-one `generate`",
         f"{e['batched_s']:.1f}", f"{e['one_by_one_s']:.1f}", f"{h['eval_speedup']:.2f}x speedup"))
    lines = ["| | vlmtune | TRL | vlmtune/TRL |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    if e is not None:
        lines.append(f"| eval outputs identical | {e['n_identical']}/{e['prompts']} | | |")
    if len(result["pairs"]) > 1:
        lines.append(f"| samples/s ratio per alternated pair | {result['pair_ratios']} | | |")
    return "\n".join(lines)


def train_pairs(spec: dict, work: Path, threads: int, pairs: int) -> list[dict]:
    """vlmtune and TRL workers alternately (V T, T V, ...): on a shared machine a load change
    then hits both sides of the ratios, not one. Pair 0 keeps the standard file names."""
    out = []
    for i in range(pairs):
        tag = f".{i}" if i else ""
        order = ("vlmtune", "trl") if i % 2 == 0 else ("trl", "vlmtune")
        runs = {name: run_worker(name, {**spec, "runs": str(work / f"runs{'' if name == 'vlmtune' else '-trl'}{tag}")},
                                 work, threads, tag) for name in order}
        v, t = runs["vlmtune"], runs["trl"]
        out.append({"vlmtune": v, "trl": t, "samples_per_s_ratio": v["samples_per_s"] / t["samples_per_s"],
                    "peak_rss_ratio": v["peak_rss_bytes"] / t["peak_rss_bytes"],
                    "load_average": [v["load_average_before"], t["load_average_before"], t["load_average_after"]],
                    "max_step_loss_diff": max(abs(x - y) for x, y in zip(v["losses"], t["losses"]))})
    return out


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started, wall0 = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), time.perf_counter()
    import torch

    from data import make_data, summary
    from model import build_model
    from vlmtune.atomic import write_json
    from vlmtune.train.measure import machine_info

    torch.set_num_threads(args.threads)
    machine = {**machine_info(), "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
               "bench_threads": args.threads, "load_average_start": load_average()}
    work = args.work or Path(tempfile.mkdtemp(prefix="vlmtune-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    hp = replace(Hyper(), epochs=args.epochs, batch_size=args.batch_size, max_length=args.max_length)
    files = make_data(work / "data", n_scenes=args.scenes, eval_prompts=args.eval_prompts,
                      image_size=args.image_size)
    if args.size == "real":
        from model_real import build_real_model

        model_info = build_real_model(work / "model", args.model_size, files["train"], seed=hp.seed)
    else:
        model_info = build_model(work / "model", args.size, files["train"], seed=hp.seed)
    data_info = {"train": summary(files["train"]), "eval": summary(files["eval"]), "scenes": args.scenes}
    print(f"[bench] model {model_info['total_params'] / 1e6:.1f}M params, {data_info['train']['samples']} "
          f"training samples x {args.epochs:g} epochs, {args.threads} thread(s)", file=sys.stderr, flush=True)
    settings = dict(s.split("=", 1) for s in args.vlmtune_set)
    spec = {"model": str(work / "model"), "train": str(files["train"]), "eval": str(files["eval"]),
            "root": str(files["root"]), "hyper": hp.to_dict(), "threads": args.threads,
            "loss_samples": min(64, data_info["train"]["samples"]), "mfu": not args.no_mfu,
            "vlmtune_settings": {k: json.loads(v) if v[:1] in "[{0123456789tfn-" else v for k, v in settings.items()}}
    pairs = train_pairs(spec, work, args.threads, max(1, args.pairs))
    v, t = pairs[0]["vlmtune"], pairs[0]["trl"]
    e = None if args.no_eval else run_worker(
        "eval", {**spec, "run": v["run"], "eval_batch_size": args.eval_batch_size,
                 "max_new_tokens": args.max_new_tokens}, work, args.threads)
    mfu, mfu_detail = mfu_of(v)
    a, b = v["last_epoch_mean_loss"], t["last_epoch_mean_loss"]
    headline = {"samples_per_s_ratio": statistics.median(p["samples_per_s_ratio"] for p in pairs),
                "peak_rss_ratio": statistics.median(p["peak_rss_ratio"] for p in pairs), "mfu": mfu,
                "eval_speedup": None if e is None else e["speedup"], "loss_vlmtune": a, "loss_trl": b}
    result = {
        "started": started, "wall_s": time.perf_counter() - wall0, "quick": args.quick,
        "command": "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {**machine, "load_average_end": load_average()}, "model": model_info, "data": data_info,
        "hyper": hp.to_dict(), "headline": {**headline, "eval_identical": None if e is None else e["identical"]},
        "size": args.size, "pairs": [{k: x for k, x in p.items() if k not in ("vlmtune", "trl")} for p in pairs],
        "pair_ratios": [round(p["samples_per_s_ratio"], 3) for p in pairs],
        "max_step_loss_diff": max(p["max_step_loss_diff"] for p in pairs),
        "loop_samples_per_s_ratio": v["loop_samples_per_s"] / t["loop_samples_per_s"],
        "samples_per_cpu_s_ratio": v["samples_per_cpu_s"] / t["samples_per_cpu_s"],
        "losses_close": abs(a - b) <= LOSS_TOLERANCE * max(a, b),
        "post_loss_relative_difference": abs(v["post_loss"]["loss"] - t["post_loss"]["loss"])
        / max(v["post_loss"]["loss"], t["post_loss"]["loss"]),
        "vlmtune_settings": {"applied": v["settings_applied"], "unavailable": v["settings_unavailable"]},
        "mfu_detail": mfu_detail, "vlmtune": v, "trl": t, "eval": e, "work": str(work),
    }
    result["goals"] = goals(result["headline"], real=args.size == "real")
    result["table"] = table(result)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"{started}.json", result)
    write_json(args.out / ("latest-real.json" if args.size == "real" else "latest.json"), result)
    print(result["table"])
    for key, goal in result["goals"].items():
        print(f"goal {key}: {goal['target']}: {goal['value']} -> {'met' if goal['met'] else 'NOT met'}")
    print(f"wall time {result['wall_s']:.0f} s; results in {args.out / (started + '.json')}")
    print(json.dumps(headline))
    return result


if __name__ == "__main__":
    main()
