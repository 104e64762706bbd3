"""``vlmtune diagnose curve``: the task metric against the training-set size — would more data help?

Why: before labelling more data, a team wants to know whether the curve still rises. One
config is trained and evaluated at each size in ``sizes`` (``data.max_samples``), through
the compare machinery: a grid file ``curve-grid.yaml`` is written into the output dir and
run, so every size is an ordinary run dir and re-running resumes (finished sizes are
skipped). Then ``learning_curve.json`` + ``learning_curve.png`` get the metric per size with
±2 standard errors from the per-item scores (:mod:`vlmtune.report.stats`) and one sentence:
the change over the last step of the curve against its noise (paired, same test items).

``data.max_samples`` takes the *first* N samples of ``data.train``: the subsets are nested
(n=100 contains n=50), which keeps the curve smooth, but an ordered file (by task, source
or difficulty) gives a biased curve: shuffle it once beforehand. Training length follows
the config: with ``train.epochs`` small sizes train fewer steps, with ``train.max_steps``
every size trains the same number of steps.

Example:
    >>> result = learning_curve("cfg.yaml", [50, 100, 200, 400])  # doctest: +SKIP
    >>> result["answer"]  # doctest: +SKIP
    'Probably yes: going from n=200 to n=400 raised IoU by +0.081 (noise ±0.03).'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vlmtune.atomic import write_bytes, write_json, write_text
from vlmtune.config import RunConfig, load_config
from vlmtune.errors import InputError
from vlmtune.report.stats import Z, beyond_noise, difference, mean_se
from vlmtune.report.summary import display
from vlmtune.report.verdict import num
from vlmtune.rundir import RunDir, read_json
# Function-level imports: matplotlib and the grid runner load only when a curve is drawn or run (CLI
# start-up).

GRID_FILE = "curve-grid.yaml"


def parse_sizes(text: str) -> list[int]:
    """``"50,100,200"`` -> ``[50, 100, 200]`` (sorted, unique, each >= 1)."""
    try:
        sizes = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise InputError(f"must be comma-separated integers, got {text!r}", field="--sizes") from None
    if not sizes or sizes[0] < 1:
        raise InputError(f"need at least one size >= 1, got {text!r}", field="--sizes")
    return sizes


def _count_samples(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def write_grid(cfg: RunConfig, sizes: list[int], out: Path) -> Path:
    """The grid file of the curve: ``base`` = the config, one variant ``n<size>`` per size."""
    if not cfg.data.train:
        raise InputError("data.train: no training set given", field="data.train")
    available = _count_samples(cfg.data.train)
    if sizes[-1] > available:
        raise InputError(f"size {sizes[-1]} exceeds the {available} samples of the training set",
                         file=cfg.data.train, field="--sizes")
    base = cfg.model_dump(mode="json")
    base.pop("name")
    base["train"].pop("out_dir")
    grid = {"name": out.name, "out_dir": str(out.parent), "base": base,
            "variants": [{"name": f"n{n}", "data": {"max_samples": n}} for n in sizes]}
    out.mkdir(parents=True, exist_ok=True)
    path = out / GRID_FILE
    write_text(path, "# written by vlmtune diagnose curve; re-run the command to resume\n"
               + yaml.safe_dump(grid, sort_keys=False))
    return path


def learning_curve(config: str | Path, sizes: list[int], *, out: str | Path | None = None,
                   overrides: list[str] | None = None, run: bool = True, **grid_kwargs: Any) -> dict[str, Any]:
    """Train + evaluate at each size, then write learning_curve.json/.png into ``out``.

    ``grid_kwargs`` pass to :func:`vlmtune.compare.run.run_grid` (``train_fn``, ``evaluate_fn``,
    ``console``, ``build``); ``run=False`` only reads the finished runs.
    """
    from vlmtune.compare.run import load_grid, run_grid

    cfg = load_config(config, overrides or [])
    out = Path(out) if out else Path(cfg.train.out_dir) / f"{cfg.name}-curve"
    grid = load_grid(write_grid(cfg, sizes, out))
    if run:
        run_grid(grid, **{"build": False, **grid_kwargs})
    result = curve_points(out, [v.name for v in grid.variants], sizes)
    write_json(out / "learning_curve.json", result)
    write_bytes(out / "learning_curve.png", plot_curve(result))
    result["plot"] = str(out / "learning_curve.png")
    return result


def curve_points(out: Path, names: list[str], sizes: list[int]) -> dict[str, Any]:
    """Per task: metric, one point per size (value, s.e., ±noise) and the answer."""
    from vlmtune.report.read import load_run, primary_metric, tasks_of

    runs = [load_run(out / name, True) for name in names]
    tasks: dict[str, Any] = {}
    for task in tasks_of(runs):
        metric = primary_metric(runs, task)
        points = []
        for n, run in zip(sizes, runs):
            scores = {str(r["id"]): float(r["scores"][metric]) for r in run.rows(task)
                      if isinstance((r.get("scores") or {}).get(metric), (int, float))}
            est = mean_se(list(scores.values()))
            trained_on = ((read_json(RunDir(run.path).data) or {}).get("train") or {}).get("samples", n)
            points.append({"n": n, "trained_on": trained_on,
                           "value": run.task_summary(task).get(metric, est.value), "se": est.se,
                           "noise": est.noise, "scores": scores})
        tasks[task] = {"metric": metric, "points": points, "answer": answer(points, display(metric))}
        for p in points:
            p.pop("scores")
    return {"dir": str(out), "sizes": sizes, "z": Z, "tasks": tasks,
            "answer": " ".join(t["answer"] for t in tasks.values())}


def answer(points: list[dict[str, Any]], metric: str) -> str:
    """"Would more data help?" from the last step of the curve against its paired noise."""
    if len(points) < 2:
        return "One size only: no curve to read (give at least two sizes)."
    a, b = points[-2], points[-1]
    d = difference(b["scores"], a["scores"], a_value=b["value"], b_value=a["value"])
    step = f"going from n={a['n']} to n={b['n']} changed {metric} by {d.value:+.3g}"
    noise = "noise unknown" if d.noise is None else f"noise ±{num(d.noise)}"
    if beyond_noise(d) and d.value > 0:
        return f"Probably yes: {step} ({noise}); the curve still rises, more data should help."
    if beyond_noise(d):
        return f"No: {step} ({noise}); more data made it worse (check the data order and the training length)."
    return (f"Probably not much: {step} ({noise}), within noise; the curve has flattened for this "
            "model and method (more data may need a larger model or another method).")


def plot_curve(result: dict[str, Any]) -> bytes:
    """PNG: metric vs training samples (log x) with ±2 s.e. bars, one line per task."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for task, t in result["tasks"].items():
        xs = [p["n"] for p in t["points"]]
        ys = [p["value"] for p in t["points"]]
        err = [p["noise"] or 0.0 for p in t["points"]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4, label=f"{task} ({display(t['metric'])})")
    ax.set_xscale("log")
    ax.set_xticks(result["sizes"], [str(n) for n in result["sizes"]])
    ax.minorticks_off()
    ax.set_xlabel("training samples (data.max_samples)")
    ax.set_ylabel("test metric")
    ax.set_title(f"learning curve (±{result['z']:g} s.e.)")
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
