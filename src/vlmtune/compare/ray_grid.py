"""``vlmtune compare GRID.yaml --ray``: every variant of a grid as a Ray task.

Why: a grid's variants are independent runs, so on several GPUs or machines they can run
at once; Ray schedules them by the resources each asks for (``ray.cpus_per_variant``,
``ray.gpus_per_variant``) on one machine or a cluster, with the same code. Nothing about
a variant changes: each task calls :func:`vlmtune.compare.run.attempt_variant`, the
function the serial grid calls, on the same ordinary run directory, so the report is the
serial one. Run directories must be on a path every node reaches (a shared filesystem).

Faults:
* a worker process or node that dies takes its task with it; Ray starts the task again
  (up to ``ray.max_retries`` times) and it resumes from the run's last checkpoint, as
  ``vlmtune train --resume`` would; the variant's log (``<grid dir>/logs/<variant>.log``)
  says which attempt resumed from which checkpoint;
* a variant that fails on bad input (any exception in the task) is not retried: it is
  reported with its one-line error while the others finish;
* Ctrl-C cancels every task (their workers are killed) and leaves each run directory as a
  kill would: resumable by running the same command again.

Example:
    >>> outcome = run_grid_ray(load_grid("grid.yaml"))  # doctest: +SKIP
    >>> outcome.status  # doctest: +SKIP
    {'baseline': 'done', 'lora-r8': 'done', 'full': 'done'}
"""

from __future__ import annotations

import os
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape

from vlmtune.compare.cluster import ray_session, variant_resources
from vlmtune.compare.grid import Grid, Variant
from vlmtune.compare.progress import Board, progress_table
from vlmtune.compare.run import (GridOutcome, attempt_variant, finish_grid, preflight_grid, raise_failures,
                                  start_grid)
from vlmtune.ownership import DirLock
from vlmtune.rundir import RunDir

__all__ = ["run_grid_ray", "log_path"]

SUBMITTED = "submitted"  # the line the driver appends to a variant's log when it submits the task


def log_path(grid: Grid, variant: Variant) -> Path:
    """Where a variant's task writes what it prints (training progress, resume notes, errors)."""
    return grid.dir / "logs" / f"{variant.name}.log"


def run_grid_ray(grid: Grid, *, address: str | None = None, console: Console | None = None,
                 build: bool = True, num_cpus: int | None = None, gpu_mem: str | None = None) -> GridOutcome:
    """Run the grid's unfinished variants as Ray tasks, show their progress, write the report.

    ``address`` overrides the grid's ``ray.address``; ``num_cpus`` caps a local Ray;
    ``gpu_mem`` flags the variants the memory plan says will not fit, as the serial grid does.
    """
    console = console or Console(stderr=True)
    grid.dir.mkdir(parents=True, exist_ok=True)
    with DirLock(grid.dir):  # one writer per grid (the variants' tasks lock their own run dirs)
        outcome, todo = start_grid(grid, console)
        if gpu_mem:
            preflight_grid(grid, gpu_mem, console)
        if todo:
            with ray_session(address or grid.ray.address, num_cpus=num_cpus) as ray:
                _run_tasks(ray, grid, todo, outcome, console)
        finish_grid(outcome, console, build)
        return raise_failures(outcome)


def _run_tasks(ray: Any, grid: Grid, todo: list[Variant], outcome: GridOutcome, console: Console) -> None:
    spec = grid.ray
    board = ray.remote(num_cpus=0)(Board).remote([v.name for v in todo])
    resources = variant_resources(ray, spec.cpus_per_variant, spec.gpus_per_variant)
    task = ray.remote(_variant_task)
    threads = max(1, int(spec.cpus_per_variant))
    refs = {}
    for variant in sorted(todo, key=submission_order):
        log = log_path(grid, variant)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as handle:  # attempts count from here (_attempt)
            handle.write(f"{SUBMITTED} {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        options = {**resources, "max_retries": spec.max_retries, "retry_exceptions": False,
                   "name": f"vlmtune:{grid.name}/{variant.name}"}
        refs[task.options(**options).remote(variant, board, str(log), threads)] = variant
    title = (f"{grid.name} on Ray: {len(todo)} variants, each {resources['num_cpus']:g} CPU "
             f"{resources['num_gpus']:g} GPU (logs: {grid.dir / 'logs'})")
    pending = list(refs)
    try:
        with Live(progress_table(title, ray.get(board.snapshot.remote())), console=console,
                  refresh_per_second=2) as live:
            while pending:
                ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
                for ref in ready:
                    _settle(ray, board, refs[ref], ref, outcome, spec.max_retries)
                live.update(progress_table(title, ray.get(board.snapshot.remote())))
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)  # kills the worker: the run dir is left as after kill -9
        console.print(f"[yellow]cancelled {len(pending)} variant(s)[/yellow]: "
                      f"{', '.join(refs[r].name for r in pending)}; run the same command again to resume them")
        raise
    for name, error in outcome.errors.items():
        console.print(f"[red]{name} failed:[/red] {escape(error)}", highlight=False)


def submission_order(variant: Variant) -> tuple:
    """Longest first, so that the last task to start is a short one (a shorter grid when
    there are fewer slots than variants): full fine-tunes, then adapters by rank (highest
    first), then variants that only evaluate; grid order breaks ties (the sort is stable)."""
    if not variant.trains:
        return (2, 0)
    method = variant.cfg.method
    return (0, 0) if method.kind in ("full", "freeze") else (1, -(method.r or 0))


def _settle(ray: Any, board: Any, variant: Variant, ref: Any, outcome: GridOutcome, retries: int) -> None:
    """Record a finished task: its own one-line error, or Ray's when its worker kept dying."""
    try:
        error = ray.get(ref)
    except ray.exceptions.RayError as err:  # retries used up, node lost, or cancelled
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        error = f"{type(err).__name__} after {retries + 1} attempt(s): {first}"
        board.update.remote(variant.name, "failed", error=error)
    outcome.status[variant.name] = "failed" if error else "done"
    if error:
        outcome.errors[variant.name] = error


def _variant_task(variant: Variant, board: Any, log: str, threads: int) -> str | None:
    """One variant in a Ray worker: bring its run dir to finished; None, or its one-line error."""
    import ray
    import torch

    node = ray.util.get_node_ip_address()
    attempt = _attempt(Path(log))
    # Not ray.get(board.start...): a task blocked in ray.get lends its CPU back to Ray, which
    # then starts another task there, and every variant of the grid ends up running at once.
    board.start.remote(variant.name, os.getpid(), node)
    torch.set_num_threads(threads)
    with open(log, "a", buffering=1, encoding="utf-8") as handle, redirect_stdout(handle), \
            redirect_stderr(handle):
        print(f"attempt {attempt}: pid {os.getpid()} on {node}, {threads} thread(s), run dir {variant.run_dir}, "
              f"started {time.time():.3f}")
        if attempt > 1:
            print(_resume_note(variant))
        error = attempt_variant(variant, _reporting_train(variant.name, board),
                                _reporting_evaluate(variant.name, board))
        print(f"ended {time.time():.3f}")
        print(f"failed: {error}" if error else "done")
    board.update.remote(variant.name, "failed" if error else "done", error=error)
    return error


def _attempt(log: Path) -> int:
    """This task's attempt: 1 + the attempts logged since the grid run submitted it (a retry
    after its worker died is 2; running the grid again starts at 1)."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.exists() else []
    starts = [k for k, line in enumerate(lines) if line.startswith(SUBMITTED)]
    since = lines[starts[-1] + 1:] if starts else lines
    return 1 + sum(1 for line in since if line.startswith("attempt "))


def _resume_note(variant: Variant) -> str:
    from vlmtune.train.checkpoint import latest_checkpoint

    last = latest_checkpoint(RunDir(variant.run_dir).checkpoints)
    if last is None:
        return "the previous attempt's worker died before its first checkpoint: starting over"
    return f"the previous attempt's worker died: resuming from checkpoint {last}"


def _reporting_train(name: str, board: Any) -> Any:
    """The real training, telling the board its step after each optimizer step."""
    from vlmtune.train.loop import train

    def run(cfg: Any, **kwargs: Any) -> Path:
        board.update.remote(name, "training", step=0)
        return train(cfg, on_step=lambda done, total, _row: board.update.remote(name, "training", step=done,
                                                                                  total=total), **kwargs)

    return run


def _reporting_evaluate(name: str, board: Any) -> Any:
    from vlmtune.evaluate.run import evaluate

    def run(cfg: Any, **kwargs: Any) -> dict:
        board.update.remote(name, "evaluating")
        return evaluate(cfg, **kwargs)

    return run
