"""``vlmtune compare GRID.yaml``: train and evaluate every variant of a grid, then report.

Why: the questions vlmtune answers (does the untuned model do it, is LoRA enough, what does
full fine-tuning cost) need the options side by side on the same data. Each variant gets
its own ordinary run directory (``out_dir/<grid>/<variant>``), so any of them can be
inspected, merged or re-evaluated alone, and the report reads only those directories.

Re-running a grid resumes it: a variant whose run dir has ``metrics.json`` (and
``resources.json`` when it trains) is skipped; a trained but unevaluated one is only
evaluated; a half-trained one resumes from its last checkpoint. A failing variant does not
stop the others; the grid reports the failures at the end.

Example:
    >>> outcome = run_grid(load_grid("grid.yaml"))  # doctest: +SKIP
    >>> outcome.report["html"]  # doctest: +SKIP
    PosixPath('runs/shapes-grid/report.html')
"""

from __future__ import annotations

import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from vlmtune.atomic import write_text
from vlmtune.compare.grid import Grid, Variant, load_grid
from vlmtune.config import dump_config
from vlmtune.errors import VlmtuneError
from vlmtune.ownership import DirLock, is_empty, mark
from vlmtune.rundir import GRID, RunDir
# Function-level imports: training, evaluation, trackers and the report load only when a grid runs:
# `vlmtune compare --help` and report-only paths stay light; tests swap the defaults.

if TYPE_CHECKING:
    from vlmtune.train.tracking import Tracking

__all__ = ["GridOutcome", "Grid", "Variant", "load_grid", "run_grid", "is_finished", "summary_table",
           "start_grid", "attempt_variant", "finish_grid", "raise_failures"]

TrainFn = Callable[..., Path]
_FULL_REPORT_ONLY = ("trainable params", "train samples/s", "MFU", "size on disk", "latency")  # terminal is narrow
EvaluateFn = Callable[..., dict]


@dataclass
class GridOutcome:
    grid: Grid
    status: dict[str, str] = field(default_factory=dict)  # variant -> done|skipped|failed
    errors: dict[str, str] = field(default_factory=dict)
    report: dict[str, Path] = field(default_factory=dict)


def is_finished(variant: Variant) -> bool:
    """Evaluated, and (when it trains) trained to the end."""
    run = variant.run_dir
    paths = RunDir(run)
    return paths.metrics.is_file() and (not variant.trains or paths.resources.is_file())


def _default_train() -> TrainFn:
    from vlmtune.train.loop import train

    return train


def _default_evaluate() -> EvaluateFn:
    from vlmtune.evaluate.run import evaluate

    return evaluate


def run_variant(variant: Variant, train_fn: TrainFn, evaluate_fn: EvaluateFn) -> None:
    """Bring one variant to finished from whatever state its run dir is in."""
    cfg, run = variant.cfg, variant.run_dir
    if variant.trains:
        if not RunDir(run).resources.is_file():
            run = Path(train_fn(cfg, overwrite=False, resume=not is_empty(run)))
        analyse_rank_need(run)
        evaluate_fn(cfg, run=run, out=run)
    else:
        fresh = is_empty(run)
        run.mkdir(parents=True, exist_ok=True)
        if fresh:
            mark(run, "run")
        if not RunDir(run).config.is_file():
            write_text(RunDir(run).config, dump_config(cfg))
        evaluate_fn(cfg, run=None, out=run)
    track_evaluation(variant)


def track_evaluation(variant: Variant) -> None:
    """The variant's scores (``metrics.json``) to its tracked run: the training run reopened,
    or a new one for an evaluation-only variant (a child of the grid's run inside a grid)."""
    from vlmtune.train.tracking import for_run as trackers_for

    tracking = trackers_for(variant.cfg, variant.run_dir, kind="train" if variant.trains else "eval",
                            remote_only=True)
    if not tracking.names or not RunDir(variant.run_dir).metrics.is_file():
        return
    tracking.open()
    try:
        tracking.summary(RunDir(variant.run_dir).metrics, "eval")
    finally:
        tracking.close()


def _grid_tracking(grid: Grid) -> Tracking | None:
    """One parent run for the grid when any variant reports to MLflow, W&B or trackio."""
    names = sorted({n for v in grid.variants for n in v.cfg.train.report_to if n != "tensorboard"})
    if not names:
        return None
    from vlmtune.train.tracking import Tracking, check_installed as check_trackers

    check_trackers(names)
    params = {"grid.source": str(grid.source.resolve()), "grid.variants": ",".join(v.name for v in grid.variants)}
    return Tracking(names, grid.dir, grid.name, grid.variants[0].cfg.train.project, kind="grid",
                    params=params).open()


RANK_NEED_MAX_BYTES = 4 * 2**30  # tuned + base weights are both read into memory for the SVDs


def analyse_rank_need(run: Path, console: Console | None = None) -> None:
    """After a full variant trains: its rank need (``rank.json``, for the report's section).

    Skipped for adapter runs, when already done, and for models above
    ``RANK_NEED_MAX_BYTES`` on disk (run ``vlmtune diagnose rank --full-run`` by hand there).
    Never fails the variant: a diagnostic is not worth a lost run.
    """
    from vlmtune.atomic import dir_bytes
    from vlmtune.report.diagnostics import RANK_FILE

    model = RunDir(run).model
    if not model.is_dir() or (run / RANK_FILE).is_file():
        return
    console = console or Console(stderr=True)
    size = dir_bytes(model)
    if size > RANK_NEED_MAX_BYTES:
        console.print(f"rank need not analysed ({size / 2**30:.1f} GiB of weights): "
                      f"vlmtune diagnose rank --full-run {run}")
        return
    try:
        from vlmtune.diagnose.rank import analyse_run

        console.print(f"rank need: {analyse_run(run)['verdict']}")
    except Exception as err:  # noqa: BLE001 - report the failure, keep the variant
        console.print(f"[yellow]rank need not analysed: {_describe(err)}[/yellow]")


def _config_drift(variant: Variant) -> list[str]:
    """Dotted keys whose value differs between the grid and the finished run's config.yaml."""
    path = RunDir(variant.run_dir).config
    if not path.is_file():
        return []
    try:
        saved = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return ["config.yaml (unreadable)"]
    return _diff(saved, variant.cfg.model_dump(mode="json"))


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = list(dict.fromkeys([*a, *b]))
        return [d for k in keys for d in _diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [f"{prefix[:-1]}: {a!r} -> {b!r}"]


def start_grid(grid: Grid, console: Console) -> tuple[GridOutcome, list[Variant]]:
    """Record the grid in its directory; mark finished variants skipped; return the rest in order."""
    fresh = is_empty(grid.dir)  # absent, or holding only the lock run_grid just took
    grid.dir.mkdir(parents=True, exist_ok=True)
    if fresh:
        mark(grid.dir, "grid")
    write_text(grid.dir / GRID, yaml.safe_dump(_grid_record(grid), sort_keys=False))
    outcome, todo = GridOutcome(grid), []
    for k, variant in enumerate(grid.variants, 1):
        if not is_finished(variant):
            todo.append(variant)
            continue
        drift = _config_drift(variant)
        note = (f" [yellow](config changed since: {'; '.join(drift[:3])}; delete {variant.run_dir} "
                f"to re-run it)[/yellow]") if drift else ""
        console.print(f"[bold][{k}/{len(grid.variants)}][/bold] {variant.name}: finished, skipped{note}")
        outcome.status[variant.name] = "skipped"
    return outcome, todo


def attempt_variant(variant: Variant, train_fn: TrainFn, evaluate_fn: EvaluateFn) -> str | None:
    """Run one variant: None when it finished, else its one-line error (Ctrl-C propagates).

    Serial and Ray grids both go through here, so a variant fails the same way in both.
    """
    try:
        run_variant(variant, train_fn, evaluate_fn)
    except KeyboardInterrupt:
        raise
    except Exception as err:  # one broken variant must not cost the others
        return _describe(err)
    return None


def finish_grid(outcome: GridOutcome, console: Console, build: bool, tracking: Tracking | None = None) -> None:
    """Write the report and the summary (and hand the report to the grid's tracked run)."""
    grid = outcome.grid
    if build:
        from vlmtune.report import build_report

        outcome.report = build_report(grid.dir)
        console.print(summary_table(grid.dir, outcome.status))
        console.print(f"report: {outcome.report['html']}  {outcome.report['md']}")
        for path in outcome.report.values() if tracking else ():
            tracking.artifact(path)


def raise_failures(outcome: GridOutcome) -> GridOutcome:
    """The outcome, or one error naming every failed variant."""
    if outcome.errors:
        raise VlmtuneError(f"{len(outcome.errors)} of {len(outcome.grid.variants)} variants failed: "
                           + "; ".join(f"{n}: {e}" for n, e in outcome.errors.items()))
    return outcome


def run_grid(grid: Grid, *, train_fn: TrainFn | None = None, evaluate_fn: EvaluateFn | None = None,
             console: Console | None = None, build: bool = True, gpu_mem: str | None = None) -> GridOutcome:
    """Run the unfinished variants in order, print a summary, write the report. With
    ``gpu_mem``, first plan every training variant and flag those that will not fit."""
    console = console or Console(stderr=True)
    train_fn = train_fn or _default_train()
    evaluate_fn = evaluate_fn or _default_evaluate()
    grid.dir.mkdir(parents=True, exist_ok=True)
    with DirLock(grid.dir):  # one writer per grid; each variant's run dir has its own lock
        outcome, todo = start_grid(grid, console)
        if gpu_mem:
            preflight_grid(grid, gpu_mem, console)
        tracking = _grid_tracking(grid)
        failed = True
        try:
            with tracking.parent_of_children() if tracking else nullcontext():
                _run_variants(todo, outcome, train_fn, evaluate_fn, console)
            finish_grid(outcome, console, build, tracking)
            failed = bool(outcome.errors)
        finally:
            if tracking:
                tracking.close(failed=failed)
        return raise_failures(outcome)


def _run_variants(todo: list[Variant], outcome: GridOutcome, train_fn: TrainFn, evaluate_fn: EvaluateFn,
                  console: Console) -> None:
    total = len(outcome.grid.variants)
    started = time.perf_counter()
    for variant in todo:
        head = f"[bold][{variant.index + 1}/{total}][/bold] {variant.name}"
        console.rule(f"{head}: {'train + eval' if variant.trains else 'eval only'} -> {variant.run_dir}")
        t0 = time.perf_counter()
        error = attempt_variant(variant, train_fn, evaluate_fn)
        if error is not None:
            outcome.status[variant.name], outcome.errors[variant.name] = "failed", error
            console.print(f"[red]{variant.name} failed:[/red] {escape(error)}", highlight=False)
            continue
        outcome.status[variant.name] = "done"
        console.print(f"{head}: done in {time.perf_counter() - t0:.0f}s "
                      f"({time.perf_counter() - started:.0f}s into the grid)")


def preflight_grid(grid: Grid, gpu_mem: str, console: Console) -> list[dict[str, Any]]:
    """The memory plan of each training variant against ``gpu_mem`` (``vlmtune plan``'s
    code), printed before anything runs and kept in ``preflight.json`` for the report."""
    import json

    from vlmtune.diagnose.memory_plan import parse_size
    from vlmtune.diagnose.preflight import preflight

    rows = preflight([(v.name, v.cfg) for v in grid.variants if v.trains], parse_size(gpu_mem))
    write_text(grid.dir / "preflight.json", json.dumps({"gpu_mem": gpu_mem, "variants": rows}, indent=1))
    for row in rows:
        if "error" in row:
            console.print(f"[yellow]{row['name']}: no memory plan ({row['error']})[/yellow]", highlight=False)
        elif not row["fits"]:
            console.print(f"[red]{row['name']} will not fit {gpu_mem}:[/red] the plan predicts "
                          f"{row['peak'] / 2**30:.1f} GiB ({row['method']}, seq {row['seq']} x batch {row['batch']})",
                          highlight=False)
        else:
            console.print(f"{row['name']}: fits {gpu_mem} (plan: {row['peak'] / 2**30:.1f} GiB)", highlight=False)
    return rows


def _describe(err: Exception) -> str:
    if isinstance(err, VlmtuneError):
        return str(err)
    last = traceback.extract_tb(err.__traceback__)[-1:] or None
    where = f" ({Path(last[0].filename).name}:{last[0].lineno})" if last else ""
    return f"{type(err).__name__}: {err}{where}"


def _grid_record(grid: Grid) -> dict[str, Any]:
    """What the report needs from the grid: variant order and which ones train."""
    record = {"name": grid.name, "source": str(grid.source.resolve()),
              "variants": [{"name": v.name, "trains": v.trains} for v in grid.variants]}
    return {**record, "lesson": grid.lesson} if grid.lesson else record


def summary_table(grid_dir: Path, status: dict[str, str] | None = None, width: int | None = None) -> Table:
    """The report's main numbers as a rich table, only the columns that fit ``width``
    (default: the terminal's) without breaking words (report/terminal.py)."""
    from vlmtune.report.read import load_grid_runs
    from vlmtune.report.summary import summarize
    from vlmtune.report.table import table_rows
    from vlmtune.report.terminal import fit_columns, needed_width

    runs = load_grid_runs(grid_dir)
    header, rows = table_rows(summarize(runs))
    if status:
        header = [header[0], "status", *header[1:]]
        rows = [[row[0], status.get(run.name, "-"), *row[1:]] for run, row in zip(runs, rows)]
    shown = [i for i, col in enumerate(header) if col not in _FULL_REPORT_ONLY]
    header, rows = [header[i] for i in shown], [[row[i] for i in shown] for row in rows]
    keep = fit_columns(header, rows, width or Console(stderr=True).width)
    table = Table(title=f"{Path(grid_dir).name} (all columns: report.html)", show_lines=False)
    for i in keep:  # cells whole on one line; only headers wrap, between words
        table.add_column(Text(header[i], no_wrap=False), no_wrap=True,
                         width=needed_width(header[i], [row[i] for row in rows]) - 3)
    for row in rows:
        table.add_row(*[row[i] for i in keep])
    return table


def compare(path: str | Path, **kwargs: Any) -> GridOutcome:
    """Load a grid file and run it (the CLI's ``vlmtune compare``)."""
    return run_grid(load_grid(path), **kwargs)
