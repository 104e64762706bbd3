"""``vlmtune sweep CONFIG.yaml --search key=values``: a rank / learning-rate search on Ray Tune.

Why: "which rank, which learning rate" is answered by measuring, but a full grid of ranks x
learning rates wastes most of its compute on trials that are visibly bad after a few
validations. Ray Tune's ASHA scheduler compares the trials at each validation
(``train.eval_every``) and stops the worse half at each rung; the survivors train to the end
and are evaluated on the test set. Each trial is an ordinary run directory
(``<out>/t003-r8-lr0.00032``), trained and evaluated by the function a grid variant uses
(:func:`vlmtune.compare.run.attempt_variant`), so a trial can be inspected, resumed, merged or
reported like any run. ``sweep.json`` records the search and every trial's fate (finished,
stopped early by ASHA, failed); ``vlmtune report`` adds a sweep section from it (smallest
rank within noise of the best, best learning rate per method, plots).

Without ``--ray`` the trials run one at a time on a local Ray; with it, as many at once as
the cluster's resources allow (``--cpus-per-trial``, ``--gpus-per-trial``).

Example:
    >>> summary = run_sweep(cfg, [parse_search("method.r=2,8"), parse_search("train.lr=log:1e-4..1e-2")],
    ...                     samples=2)  # doctest: +SKIP
    >>> [t["status"] for t in summary["trials"]]  # doctest: +SKIP
    ['finished', 'stopped', 'finished', 'stopped']
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from vlmtune.atomic import write_json, write_text
from vlmtune.compare.cluster import ray_session, variant_resources
from vlmtune.compare.grid import Variant
from vlmtune.compare.search import Axis, check_axes, trial_name, trial_overrides
from vlmtune.config import RunConfig, _merge, build_config, parse_overrides
from vlmtune.errors import ConfigError
from vlmtune.rundir import GRID, RunDir

__all__ = ["run_sweep", "SWEEP_FILE"]

SWEEP_FILE = "sweep.json"
REDUCTION = 2  # ASHA keeps the better half at each rung


def run_sweep(cfg: RunConfig, axes: list[Axis], *, samples: int = 1, concurrent: bool = False,
              address: str | None = None, out: Path | None = None, cpus_per_trial: float = 1.0,
              gpus_per_trial: float | None = None, max_retries: int = 2, seed: int = 0,
              num_cpus: int | None = None, console: Console | None = None) -> dict[str, Any]:
    """Run the search; write ``sweep.json`` and the report into the sweep directory."""
    console = console or Console(stderr=True)
    _check(cfg, axes, samples)
    sweep_dir = Path(out or Path(cfg.train.out_dir) / f"{cfg.name}-sweep").resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    record = {"name": sweep_dir.name, "dir": str(sweep_dir), "metric": "val_loss", "mode": "min", "samples": samples,
              "search": [_axis_text(a) for a in axes], "scheduler": _scheduler_record(cfg), "trials": []}
    with ray_session(address, num_cpus=num_cpus) as ray:
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.basic_variant import BasicVariantGenerator

        resources = variant_resources(ray, cpus_per_trial, gpus_per_trial)
        trainable = tune.with_resources(
            tune.with_parameters(_trial, base=cfg.model_dump(mode="json"), sweep_dir=str(sweep_dir),
                                 cwd=os.getcwd(), threads=max(1, int(cpus_per_trial))),
            {"cpu": resources["num_cpus"], "gpu": resources["num_gpus"]})
        scheduler = ASHAScheduler(time_attr="training_iteration", metric="val_loss", mode="min",
                                  max_t=record["scheduler"]["max_t"], grace_period=1, reduction_factor=REDUCTION)
        tuner = tune.Tuner(
            trainable, param_space={a.key: a.tune_domain(tune) for a in axes},
            tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=samples,
                                        max_concurrent_trials=None if concurrent else 1,
                                        reuse_actors=True,  # a finished trial's process takes the next one
                                        search_alg=BasicVariantGenerator(random_state=seed)),
            run_config=tune.RunConfig(name="tune", storage_path=str(sweep_dir), verbose=1,
                                      failure_config=tune.FailureConfig(max_failures=max_retries)))
        console.print(f"sweep {sweep_dir}: ASHA on val_loss, rungs every {cfg.train.eval_every} steps; "
                      f"each trial {resources['num_cpus']:g} CPU {resources['num_gpus']:g} GPU")
        results = tuner.fit()
        record["trials"] = sorted((_trial_record(r, sweep_dir) for r in results), key=lambda t: t["name"])
    write_json(sweep_dir / SWEEP_FILE, record)
    write_text(sweep_dir / GRID, yaml.safe_dump(
        {"name": sweep_dir.name, "variants": [{"name": t["name"], "trains": True} for t in record["trials"]]},
        sort_keys=False))
    return record


def _check(cfg: RunConfig, axes: list[Axis], samples: int) -> None:
    if not axes:
        raise ConfigError("give at least one --search key=values", file="vlmtune sweep")
    if samples < 1:
        raise ConfigError(f"must be >= 1, got {samples}", file="--samples")
    check_axes(cfg, axes)
    if not cfg.data.val:
        raise ConfigError("ASHA stops trials on validation loss: give a validation set", field="data.val")
    if not cfg.train.eval_every:
        raise ConfigError("ASHA compares trials at each validation: set it (e.g. a quarter of the steps)",
                          field="train.eval_every")


def _scheduler_record(cfg: RunConfig) -> dict[str, Any]:
    """ASHA's rungs: one per validation, the last one after the test-set evaluation."""
    steps = cfg.train.max_steps
    max_t = math.ceil(steps / cfg.train.eval_every) if steps else 1000
    return {"kind": "ASHA", "time_attr": "validations", "grace_period": 1, "reduction_factor": REDUCTION,
            "max_t": max_t, "eval_every": cfg.train.eval_every}


def _axis_text(axis: Axis) -> str:
    if axis.values is not None:
        return f"{axis.key}={','.join(map(str, axis.values))}"
    return f"{axis.key}={'log:' if axis.log else ''}{axis.low:g}..{axis.high:g}"


def _trial_record(result: Any, sweep_dir: Path) -> dict[str, Any]:
    metrics = result.metrics or {}
    params = {k: v for k, v in (result.config or {}).items()}
    trial_id = str(metrics.get("trial_id") or "")
    name = metrics.get("run") or trial_name(params, int(trial_id.rsplit("_", 1)[-1]) if "_" in trial_id else 0)
    run = sweep_dir / name
    error = metrics.get("error") or (str(result.error).strip().splitlines()[0] if result.error else None)
    status = "failed" if error else "finished" if RunDir(run).metrics.is_file() else "stopped"
    return {"name": name, "params": params, "status": status, "error": error,
            "validations": int(metrics.get("training_iteration") or 0), "val_loss": metrics.get("val_loss")}


def _trial(params: dict[str, Any], *, base: dict[str, Any], sweep_dir: str, cwd: str, threads: int) -> None:
    """One trial in a Tune worker: train with a report at each validation, evaluate, report."""
    import torch
    from ray import tune

    from vlmtune.compare.run import attempt_variant
    from vlmtune.evaluate.run import evaluate
    from vlmtune.train.logs import read_metrics
    from vlmtune.train.loop import train

    os.chdir(cwd)  # Tune starts trials in their own folder; the config's relative paths mean the user's cwd
    torch.set_num_threads(threads)
    number = int(tune.get_context().get_trial_id().rsplit("_", 1)[-1])
    name = trial_name(params, number)
    extra = parse_overrides(trial_overrides(params))
    cfg = build_config(_merge(_merge(base, extra), {"name": name, "train": {"out_dir": sweep_dir}}),
                       source=f"sweep trial {name}")

    def on_step(done: int, total: int, row: dict[str, Any]) -> None:
        if "val_loss" in row and not row.get("final"):
            tune.report({"val_loss": row["val_loss"], "step": done, "run": name})

    error = attempt_variant(Variant(number, name, cfg, True),
                            lambda c, **kw: train(c, on_step=on_step, **kw), evaluate)
    vals = [r["val_loss"] for r in read_metrics(RunDir(cfg.run_dir).log) if "val_loss" in r]
    final = {"run": name, "val_loss": vals[-1] if vals and not error else float("inf")}
    tune.report({**final, "error": error} if error else {**final, "evaluated": 1})
