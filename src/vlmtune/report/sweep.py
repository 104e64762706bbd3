"""The report's sweep section: what a rank / learning-rate search (``vlmtune sweep``) found.

Why: a sweep answers two questions a grid of hand-picked variants cannot: the smallest
LoRA rank that does as well as the best (within noise: the paired difference on the same
test items is below ``Z`` standard errors, :mod:`vlmtune.report.stats`), and the best
learning rate for each method. This is the measured answer to "does my task need a high
rank" beside the rank need read from a full fine-tune's ΔW spectrum. Read from
``sweep.json`` (the search and each trial's fate) and the trials' run directories only.

Example:
    >>> sweep_answers(Path("runs/shapes-sweep"))  # doctest: +SKIP
    ['smallest rank within noise of the best: r=4 (exact match 0.61; best 0.63 at r=16, ...)']
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vlmtune.config import MethodConfig
from vlmtune.report.plots import Plot, _figure, _png
from vlmtune.report.read import RunData, load_grid_runs, primary_metric, tasks_of
from vlmtune.report.stats import beyond_noise, difference
from vlmtune.report.summary import _scores, display

SWEEP_FILE = "sweep.json"
SWEEP_HEADER = ["trial", "status", "validations", "last val loss"]


def sweep_view(grid_dir: Path, runs: list[RunData] | None = None) -> dict[str, Any] | None:
    """The sweep's trials joined with their run dirs' scores; None when ``grid_dir`` is no sweep."""
    path = Path(grid_dir) / SWEEP_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    runs = runs if runs is not None else load_grid_runs(grid_dir)
    by_name = {r.name: r for r in runs}
    tasks = tasks_of(runs)
    task = tasks[0] if tasks else None
    metric = primary_metric(runs, task) if task else None
    trials = []
    for t in record["trials"]:
        run = by_name.get(t["name"])
        summary = run.task_summary(task) if run and task else {}
        score = summary.get(metric) if metric else None
        trials.append({**t, "score": float(score) if isinstance(score, (int, float)) else None,
                       "per_sample": _scores(run.rows(task), metric) if run and task else {},
                       "config": run.config if run else None})
    keys = [s.split("=", 1)[0] for s in record["search"]]
    return {"record": record, "task": task, "metric": metric, "keys": keys, "trials": trials}


def _method(trial: dict[str, Any]) -> str:
    """The searched kind, else the trial's typed config, else the config default (no run dir)."""
    cfg = trial["config"]
    return str(trial["params"].get("method.kind") or (cfg.method if cfg else MethodConfig()).kind)


def _lr(trial: dict[str, Any]) -> float | None:
    cfg = trial["config"]
    value = trial["params"].get("train.lr", cfg.train.lr if cfg else None)
    return float(value) if value is not None else None


def answers(view: dict[str, Any]) -> list[str]:
    """Smallest rank within noise of the best, and the best learning rate per method."""
    scored = [t for t in view["trials"] if t["score"] is not None]
    counts = {s: sum(t["status"] == s for t in view["trials"]) for s in ("finished", "stopped", "failed")}
    out = [f"{len(view['trials'])} trials ({', '.join(view['record']['search'])}): {counts['finished']} finished, "
           f"{counts['stopped']} stopped early by ASHA on validation loss, {counts['failed']} failed."]
    if not scored:
        return out + ["No trial was evaluated on the test set: no rank or learning rate to recommend."]
    name = display(view["metric"])
    best = max(scored, key=lambda t: t["score"])
    if "method.r" in view["keys"]:
        out.append(_rank_answer(scored, best, name))
        unscored = sorted({int(t["params"]["method.r"]) for t in view["trials"]}
                          - {int(t["params"]["method.r"]) for t in scored})
        if unscored:
            out.append(f"ranks with no trial evaluated on the test set (all stopped early or failed): "
                       f"{', '.join(map(str, unscored))}.")
    for method in sorted({_method(t) for t in scored}):
        top = max((t for t in scored if _method(t) == method), key=lambda t: t["score"])
        out.append(f"best learning rate for {method}: {_lr(top):.3g} ({name} {top['score']:.3g}, trial {top['name']}).")
    return out


def _rank_answer(scored: list[dict[str, Any]], best: dict[str, Any], name: str) -> str:
    best_at: dict[int, dict[str, Any]] = {}
    for t in scored:
        r = int(t["params"]["method.r"])
        if r not in best_at or t["score"] > best_at[r]["score"]:
            best_at[r] = t
    for r in sorted(best_at):
        t = best_at[r]
        d = difference(best["per_sample"], t["per_sample"], a_value=best["score"], b_value=t["score"])
        if t is best or not beyond_noise(d):
            noise = f" ± {d.noise:.2g}" if d.noise is not None else " (noise unknown)"
            versus = "it is the best" if t is best else \
                f"best {best['score']:.3g} at r={best['params']['method.r']}, difference {d.value:.2g}{noise}"
            return f"smallest rank within noise of the best: r={r} ({name} {t['score']:.3g}; {versus})."
    return "no rank within noise of the best"  # unreachable: the best trial's rank qualifies


def rows(view: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = SWEEP_HEADER[:1] + view["keys"] + SWEEP_HEADER[1:] + [display(view["metric"])]
    body = []
    for t in view["trials"]:
        cells = [t["name"]] + [_cell(t["params"].get(k)) for k in view["keys"]]
        loss = t.get("val_loss")
        body.append(cells + [t["status"] + (f": {t['error']}" if t.get("error") else ""), str(t["validations"]),
                             f"{loss:.4g}" if isinstance(loss, (int, float)) and math.isfinite(loss) else "—",
                             f"{t['score']:.3g}" if t["score"] is not None else "—"])
    return header, body


def _cell(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def plots(view: dict[str, Any]) -> list[Plot]:
    """Task metric vs rank and vs learning rate; ASHA-stopped trials by their last val loss."""
    out = []
    scored = [t for t in view["trials"] if t["score"] is not None]
    name = display(view["metric"])
    if "method.r" in view["keys"] and scored:
        fig, ax = _figure()
        ranks = [int(t["params"]["method.r"]) for t in scored]
        ax.scatter(ranks, [t["score"] for t in scored], color="#1f77b4")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("LoRA rank r (log scale)")
        ax.set_ylabel(name)
        ax.set_title(f"sweep: {name} vs rank")
        out.append(Plot("sweep-metric-vs-rank", "metric vs rank", _png(fig),
                        f"{view['task']} {name} of every trial evaluated on the test set, by rank."))
    lrs = [(t, _lr(t)) for t in view["trials"] if _lr(t) is not None]
    if scored and "train.lr" in view["keys"]:
        fig, ax = _figure()
        for method in sorted({_method(t) for t, _ in lrs}):
            pts = [(lr, t["score"]) for t, lr in lrs if t["score"] is not None and _method(t) == method]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=method)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel(name)
        ax.set_title(f"sweep: {name} vs learning rate")
        ax.legend(fontsize=8)
        out.append(Plot("sweep-metric-vs-lr", "metric vs learning rate", _png(fig),
                        f"{view['task']} {name} of every evaluated trial, by learning rate and method."))
    losses = [(lr, t) for t, lr in lrs if isinstance(t.get("val_loss"), (int, float)) and math.isfinite(t["val_loss"])]
    if losses:
        fig, ax = _figure()
        for status, marker in (("finished", "o"), ("stopped", "x")):
            pts = [(lr, t["val_loss"]) for lr, t in losses if t["status"] == status]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=status)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel("last validation loss")
        ax.set_title("sweep: validation loss vs learning rate")
        ax.legend(fontsize=8)
        out.append(Plot("sweep-val-loss-vs-lr", "validation loss vs learning rate", _png(fig),
                        "each trial's last validation loss; x: stopped early by ASHA."))
    return out


def sweep_answers(grid_dir: Path) -> list[str]:
    """The sweep's answers as lines (for the terminal)."""
    view = sweep_view(grid_dir)
    return answers(view) if view else []
