"""The report's plots as PNG bytes: quality vs cost, loss curves, forgetting.

Why: the trade-offs (quality per trainable parameter, per GiB of memory) are easier to see
than to read. Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot,
no display, no global state), so reports build on headless machines and in threads.
Error bars are ±2 standard errors: the noise band the verdict uses.

Example:
    >>> plots = draw_all(summarize(load_grid_runs(Path("runs/g"))))  # doctest: +SKIP
    >>> [p.key for p in plots]  # doctest: +SKIP
    ['metric-vs-params-grounding', 'metric-vs-memory-grounding', 'loss-curves', 'forgetting']
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from matplotlib.figure import Figure

from vlmtune.report.summary import GridView, display
from vlmtune.report.stats import Z

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22"]


@dataclass(frozen=True)
class Plot:
    key: str  # file stem: report uses <key>.png next to report.md
    title: str
    png: bytes
    caption: str


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _figure() -> tuple[Figure, object]:
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _color(view: GridView, name: str) -> str:
    names = [r.name for r in view.runs]
    return _COLORS[names.index(name) % len(_COLORS)] if name in names else "#333333"


def metric_vs_cost(view: GridView, task: str, cost: str) -> Plot | None:
    """Task metric against trainable parameters (``cost="params"``, log x) or peak memory."""
    metric = display(view.metric[task])
    points, lines = [], []
    for e in view.entries[task]:
        if e.score is None:
            continue
        x = e.trainable if cost == "params" else (e.peak_bytes / 2**30 if e.peak_bytes else None)
        if e.trained and x:
            points.append((e, x))
        elif not e.trained:
            lines.append(e)
    if not points:
        return None
    fig, ax = _figure()
    for k, (e, x) in enumerate(points):
        est = view.estimate(task, e.name)
        err = Z * est.se if est and est.se is not None else None
        ax.errorbar([x], [e.score], yerr=None if err is None else [err], fmt="o", capsize=4,
                    color=_color(view, e.name), label=e.label)
        ax.annotate(e.label, (x, e.score), textcoords="offset points",
                    xytext=(6, 6 if k % 2 == 0 else -12), fontsize=8)
    for e in lines:
        ax.axhline(e.score, linestyle="--", color=_color(view, e.name), label=f"{e.label} (no training)")
    prior = view.prior.get(task)
    if prior is not None and prior.score is not None:
        ax.axhline(prior.score, linestyle=":", color="0.4", label=f"constant answer {prior.label}")
    if cost == "params":
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters (log scale)")
    else:
        ax.set_xlabel("peak memory (GiB)")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8, loc="best")
    what = "trainable parameters" if cost == "params" else "peak memory"
    title = f"{task}: {metric} vs {what}"
    ax.set_title(title)
    return Plot(f"metric-vs-{cost}-{task}", title, _png(fig),
                f"{metric} on {task} against {what}; dashed lines: variants without training; "
                + ("dotted: one constant answer to every item (the prior); " if prior is not None else "")
                + f"bars: ±{Z:g} standard errors.")


def loss_curves(view: GridView) -> Plot | None:
    """Training loss per logged step for every trained variant; validation loss as markers."""
    curves = [r for r in view.runs if any("loss" in row for row in r.log)]
    if not curves:
        return None
    fig, ax = _figure()
    for run in curves:
        color = _color(view, run.name)
        train = [(row["step"], row["loss"]) for row in run.log if "loss" in row]
        ax.plot([s for s, _ in train], [v for _, v in train], color=color, label=run.label)
        val = [(row["step"], row["val_loss"]) for row in run.log if "val_loss" in row]
        if val:
            ax.plot([s for s, _ in val], [v for _, v in val], "s--", color=color, markersize=5,
                    label=f"{run.label} (val)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (cross-entropy per answer token)")
    ax.set_title("loss curves")
    ax.legend(fontsize=8, loc="best")
    return Plot("loss-curves", "loss curves", _png(fig),
                "training loss per logged step (solid) and validation loss (squares, dashed).")


def forgetting(view: GridView) -> Plot | None:
    """General-set metric minus the baseline's, per variant (below zero = forgetting)."""
    bars = [(r, view.general_delta(r.name)) for r in view.runs]
    bars = [(r, d) for r, d in bars if d is not None]
    if not bars:
        return None
    fig, ax = _figure()
    xs = list(range(len(bars)))
    errs = [Z * d.se if d.se is not None else 0.0 for _, d in bars]
    ax.bar(xs, [d.value for _, d in bars], yerr=errs, capsize=4,
           color=[_color(view, r.name) for r, _ in bars])
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(xs)
    ax.set_xticklabels([r.label for r, _ in bars], rotation=20, ha="right", fontsize=8)
    metric = display(view.general_metric)
    ax.set_ylabel(f"Δ general {metric} vs baseline")
    title = f"forgetting: general {view.general_task} {metric} minus the baseline's"
    ax.set_title(title, fontsize=10)
    return Plot("forgetting", "forgetting", _png(fig),
                f"{title}; below zero = the variant lost general ability; bars: ±{Z:g} standard errors.")


def draw_all(view: GridView) -> list[Plot]:
    plots = []
    for task in view.tasks:
        plots += [metric_vs_cost(view, task, "params"), metric_vs_cost(view, task, "memory")]
    plots += [loss_curves(view), forgetting(view)]
    return [p for p in plots if p is not None]
