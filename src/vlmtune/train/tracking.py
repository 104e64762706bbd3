"""Experiment trackers a team already uses: ``train.report_to: [tensorboard, mlflow, wandb, trackio]``.

Why: a run directory is the source of truth, but teams look at MLflow, W&B or trackio dashboards.
Each tracker receives what the run directory holds, from the same calls that write it:
the resolved config flattened as params, every ``metrics.jsonl`` row at its step,
``resources.json`` (numbers as summary metrics, the file as an artefact) and, after a
grid, the report. The training loop knows none of this: :class:`vlmtune.train.logs.RunLog`
feeds a :class:`Tracking`.

The external run ids live in the run directory (``tracking.json``), so ``--resume`` and a
grid's evaluation step log into the same external run instead of opening a new one.
A grid (``vlmtune compare``) opens one parent run; while :func:`child_of` is active, every
run opened becomes its child (MLflow ``mlflow.parentRunId``; W&B and trackio: the same ``group``).

Where runs go is each library's own setting: ``MLFLOW_TRACKING_URI``, ``WANDB_MODE``,
``WANDB_DIR``, ``TRACKIO_DIR``...; the experiment (MLflow) or project (W&B, trackio) is ``train.project``.

Example:
    >>> t = Tracking(["mlflow"], Path("runs/a"), "a", "vlmtune")  # doctest: +SKIP
    >>> t.open({"method.r": 8}); t.metrics({"loss": 2.3}, step=1); t.close()  # doctest: +SKIP
"""

from __future__ import annotations

import contextvars
import importlib.util
import json
import sys
import time
import warnings
from contextlib import contextmanager, redirect_stdout
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator, Protocol

from vlmtune.atomic import write_json
from vlmtune.errors import ConfigError
from vlmtune.rundir import flatten_config
# Function-level imports: TensorBoard's writer, mlflow, wandb and trackio are slow (or optional) and load only
# when a run reports to them.

RECORD = "tracking.json"  # backend -> external run id, in the run (or grid) directory
_MODULE = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb", "trackio": "trackio"}
_PARENT: ContextVar[dict[str, Any] | None] = ContextVar("vlmtune_tracking_parent", default=None)


def check_installed(names: list[str]) -> None:
    """Fail at config time, in one line, for a tracker whose library is missing."""
    for name in names:
        if importlib.util.find_spec(_MODULE[name]) is None:
            extra = "" if name == "tensorboard" else f"vlmtune[{name}]"
            hint = f"pip install '{extra}'" if extra else "pip install tensorboard"
            raise ConfigError(f"train.report_to: {name} is not installed; {hint}", field="train.report_to")


def flat_numbers(tree: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict as ``a/b/c`` keys (bools and NaN left out)."""
    out: dict[str, float] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat_numbers(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            out[f"{prefix}{key}"] = float(value)
    return out


class Tracker(Protocol):
    """One backend's run. ``ids`` is what :data:`RECORD` keeps to reopen it."""

    ids: dict[str, Any]

    def params(self, values: dict[str, Any]) -> None: ...
    def metrics(self, values: dict[str, float], step: int | None) -> None: ...
    def artifact(self, path: Path) -> None: ...
    def close(self, failed: bool) -> None: ...


class TensorBoardTracker:
    """Events in the run directory (``events.*``), scalars only, as before trackers existed."""

    def __init__(self, where: Path, start_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.ids: dict[str, Any] = {}
        self._writer = SummaryWriter(log_dir=str(where), purge_step=start_step + 1)

    def params(self, values: dict[str, Any]) -> None:  # the run dir's config.yaml holds them
        pass

    def metrics(self, values: dict[str, float], step: int | None) -> None:
        for key, value in values.items():
            self._writer.add_scalar(key, value, step)

    def artifact(self, path: Path) -> None:  # the file is already in the run directory
        pass

    def close(self, failed: bool) -> None:
        self._writer.close()


class MlflowTracker:
    """An MLflow run through ``MlflowClient`` (no global active run: a grid holds several)."""

    _BATCH = 100  # MLflow's limit of params per log_batch call

    def __init__(self, name: str, project: str, ids: dict[str, Any], parent: dict[str, Any] | None):
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient()
        if ids.get("run_id"):
            self.ids = ids
            self._client.update_run(ids["run_id"], status="RUNNING")
            return
        experiment = self._client.get_experiment_by_name(project)
        experiment_id = experiment.experiment_id if experiment else self._client.create_experiment(project)
        tags = {"mlflow.parentRunId": parent["run_id"]} if parent else {}
        run = self._client.create_run(experiment_id, run_name=name, tags={"vlmtune": "1", **tags})
        self.ids = {"run_id": run.info.run_id, "experiment_id": experiment_id}

    def params(self, values: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, "None" if v is None else str(v)[:6000]) for k, v in values.items()]
        for start in range(0, len(items), self._BATCH):
            self._client.log_batch(self.ids["run_id"], params=items[start:start + self._BATCH])

    def metrics(self, values: dict[str, float], step: int | None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._client.log_batch(self.ids["run_id"],
                               metrics=[Metric(k, float(v), now, step or 0) for k, v in values.items()])

    def artifact(self, path: Path) -> None:
        self._client.log_artifact(self.ids["run_id"], str(path))

    def close(self, failed: bool) -> None:
        self._client.set_terminated(self.ids["run_id"], status="FAILED" if failed else "FINISHED")


class WandbTracker:
    """A W&B run (``WANDB_MODE=offline`` writes it under ``WANDB_DIR`` or the run directory
    for ``wandb sync``). W&B has no parent runs: a grid and its variants share a ``group``."""

    def __init__(self, name: str, project: str, ids: dict[str, Any], parent: dict[str, Any] | None,
                 where: Path, kind: str):
        import wandb

        group = ids.get("group") or (parent or {}).get("group") or (name if kind == "grid" else None)
        self._run = wandb.init(project=project, name=name, id=ids.get("id"), resume="allow", group=group,
                               job_type=kind, dir=str(where), reinit="create_new")
        self.ids = {"id": self._run.id, "group": group}

    def params(self, values: dict[str, Any]) -> None:
        self._run.config.update(values, allow_val_change=True)

    def metrics(self, values: dict[str, float], step: int | None) -> None:
        if step is None:
            self._run.summary.update(values)
        else:
            self._run.log(values, step=step)

    def artifact(self, path: Path) -> None:
        import wandb

        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in f"{self._run.name}-{path.stem}")
        art = wandb.Artifact(safe, type=path.stem)
        art.add_file(str(path))
        self._run.log_artifact(art)

    def close(self, failed: bool) -> None:
        self._run.finish(exit_code=1 if failed else 0)


class TrackioTracker:
    """A trackio run, local by default (a SQLite file per project under ``TRACKIO_DIR``, default
    ``~/.cache/huggingface/trackio``; ``trackio show`` is its dashboard). It goes to a Space or a
    server only when the user's env says so (``TRACKIO_SPACE_ID``, ``TRACKIO_SERVER_URL``).

    trackio has no parent runs: a grid and its variants share a ``group``. ``trackio.init``
    finishes the module's current run, and a grid holds its run and a variant's open at once,
    so each run is started in an empty :mod:`contextvars` context (the current run lives in
    one) and used through its ``Run`` object only. trackio stores a run's config with its
    first logged row, so a new run logs an empty row at step 0; it resumes runs by name, so a
    reopened run whose name a newer run has taken since starts afresh (with a warning) rather
    than logging into the other one. Runs have no status: a failed run gets an error alert.
    trackio reports its own failures as warnings and keeps going (its design, not ours).
    """

    def __init__(self, name: str, project: str, ids: dict[str, Any], parent: dict[str, Any] | None,
                 kind: str, params: dict[str, Any]):
        group = ids.get("group") or (parent or {}).get("group") or (name if kind == "grid" else None)
        self._config = {k: v for k, v in params.items() if not k.startswith("_")}  # "_" keys are trackio's
        self._run = self._init(name, project, group, "allow" if ids.get("id") else "never")
        if ids.get("id") and self._run.id != ids["id"]:
            warnings.warn(f"trackio: a newer run named {name!r} exists in project {project!r}; "
                          f"logging to a new run instead of resuming {ids['id']}", stacklevel=2)
            self._finish(self._run)
            self._run = self._init(name, project, group, "never")
        self.ids = {"id": self._run.id, "group": group}

    def _init(self, name: str, project: str, group: str | None, resume: str) -> Any:
        import trackio

        with redirect_stdout(sys.stderr):  # its banner is not our stdout's data
            return contextvars.Context().run(trackio.init, project=project, name=name, group=group,
                                             config=self._config, resume=resume, embed=False)

    @staticmethod
    def _finish(run: Any) -> None:
        with redirect_stdout(sys.stderr):
            run.finish()

    def params(self, values: dict[str, Any]) -> None:
        self._run.config.update({k: v for k, v in values.items() if not k.startswith("_")})
        self._run.log({}, step=0)  # carries the config (and group) into trackio's storage

    def metrics(self, values: dict[str, float], step: int | None) -> None:
        self._run.log(values, step=step)  # step None: trackio's next step (after the last one)

    def artifact(self, path: Path) -> None:
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in f"{self._run.name}-{path.name}")
        self._run.log_artifact(path, name=safe, type=path.stem)

    def close(self, failed: bool) -> None:
        if failed:
            import trackio

            with redirect_stdout(sys.stderr):
                self._run.alert("vlmtune run failed", level=trackio.AlertLevel.ERROR)
        self._finish(self._run)


class Tracking:
    """The trackers of one run (or grid) directory, opened together, fed together.

    ``kind`` is ``train``, ``eval`` (an evaluation-only grid variant) or ``grid``.
    A backend that fails mid-run raises: silently losing a team's logs is worse.
    """

    def __init__(self, names: list[str], where: Path, name: str, project: str, *, start_step: int = 0,
                 kind: str = "train", params: dict[str, Any] | None = None):
        self.names, self.where, self.name, self.project = list(names), Path(where), name, project
        self.start_step, self.kind, self.params = start_step, kind, params or {}
        self._open: dict[str, Tracker] = {}

    @property
    def remote(self) -> list[str]:
        return [n for n in self.names if n != "tensorboard"]

    def open(self) -> "Tracking":
        """Start (or reopen, from :data:`RECORD`) each backend's run; log the params on a new one."""
        record = _read_record(self.where)
        parent = _PARENT.get()
        for name in self.names:
            ids = record.get(name, {})
            self._open[name] = self._start(name, ids, (parent or {}).get(name))
            if self.params and not ids:
                self._open[name].params(self.params)
        if self.remote:
            write_json(self.where / RECORD, {**record, **{n: self._open[n].ids for n in self.remote}})
        return self

    def _start(self, name: str, ids: dict[str, Any], parent: dict[str, Any] | None) -> Tracker:
        if name == "tensorboard":
            return TensorBoardTracker(self.where, self.start_step)
        if name == "mlflow":
            return MlflowTracker(self.name, self.project, ids, parent)
        if name == "trackio":
            return TrackioTracker(self.name, self.project, ids, parent, self.kind, self.params)
        return WandbTracker(self.name, self.project, ids, parent, self.where, self.kind)

    def metrics(self, values: dict[str, Any], step: int | None = None) -> None:
        numbers = flat_numbers(values)
        if numbers:
            for tracker in self._open.values():
                tracker.metrics(numbers, step)

    def summary(self, path: Path, prefix: str) -> None:
        """A JSON file of the run directory: its numbers as ``prefix/...`` metrics, the file as an artefact."""
        self.metrics({prefix: json.loads(Path(path).read_text())})
        self.artifact(path)

    def artifact(self, path: Path) -> None:
        for tracker in self._open.values():
            tracker.artifact(Path(path))

    def close(self, failed: bool = False) -> None:
        for tracker in self._open.values():
            tracker.close(failed)
        self._open.clear()

    @contextmanager
    def parent_of_children(self) -> Iterator[None]:
        """Runs opened inside become children of this (open) grid run."""
        token = _PARENT.set({n: t.ids for n, t in self._open.items()})
        try:
            yield
        finally:
            _PARENT.reset(token)


def for_run(cfg: Any, where: Path, *, start_step: int = 0, kind: str = "train", remote_only: bool = False) -> Tracking:
    """The trackers ``cfg.train.report_to`` asks for, for a run directory, with the resolved
    config flattened (``method.r``, ``train.lr``...) as params. ``remote_only``: without
    TensorBoard (a grid's evaluation step: its scores are in ``metrics.json``)."""
    names = [n for n in cfg.train.report_to if not (remote_only and n == "tensorboard")]
    return Tracking(names, where, cfg.name, cfg.train.project, start_step=start_step, kind=kind,
                    params=flatten_config(cfg.model_dump(mode="json")))


def _read_record(where: Path) -> dict[str, Any]:
    path = Path(where) / RECORD
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}
