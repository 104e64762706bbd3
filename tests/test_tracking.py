"""``train.report_to``: a real MLflow tracking server (sqlite backend, started here), W&B in
offline mode and trackio's local store receive the params, the metrics.jsonl rows,
resources.json and a grid's report."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from vlmtune.errors import ConfigError
from vlmtune.train.tracking import check_installed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` on a free local port with a sqlite store; yields its URI."""
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen([str(mlflow_cli), "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
                             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            cwd=root, stdout=open(root / "server.log", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # the server imports mlflow and migrates the sqlite schema first
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("mlflow server did not become healthy")
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:  # uvicorn waits for idle keep-alive connections
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def tracked(monkeypatch, mlflow_server, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-root"))
    from mlflow.tracking import MlflowClient

    return MlflowClient(mlflow_server)


def _wandb_records(run_dir: Path) -> list:
    """Records of an offline W&B run file: a ``:W&B`` header, then a LevelDB log (32 KiB
    blocks of chunks with a 7-byte header: crc, length, type) of ``Record`` protobufs."""
    from wandb.proto import wandb_internal_pb2

    [path] = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, records, pending = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if kind == 0:  # block trailer (padding)
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk: a record is complete
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


@pytest.mark.slow
def test_train_logs_params_metrics_resources(tracked, tiny_factory, run_config):
    from vlmtune.train import train

    cfg = run_config(tiny_factory("qwen2_vl"), name="tracked", train={
        "max_steps": 3, "checkpoint_every": 3, "report_to": ["tensorboard", "mlflow", "wandb"],
        "project": "vlmtune-test"})
    run = train(cfg)
    record = json.loads((run / "tracking.json").read_text())
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]

    mlflow_run = tracked.get_run(record["mlflow"]["run_id"])
    assert mlflow_run.info.status == "FINISHED" and mlflow_run.info.run_name == "tracked"
    assert mlflow_run.data.params["method.r"] == "8" and mlflow_run.data.params["train.max_steps"] == "3"
    history = tracked.get_metric_history(mlflow_run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(r["step"], pytest.approx(r["loss"])) for r in logged
                                                    if "loss" in r]
    resources = json.loads((run / "resources.json").read_text())
    assert mlflow_run.data.metrics["resources/trainable_params"] == resources["trainable_params"]
    assert [a.path for a in tracked.list_artifacts(mlflow_run.info.run_id)] == ["resources.json"]
    assert list(run.glob("events.out.tfevents.*"))

    records = _wandb_records(run)
    rows = [{_key(i): json.loads(i.value_json) for i in r.history.item} for r in records
            if r.WhichOneof("record_type") == "history"]
    assert [(r["_step"], r["loss"]) for r in rows if "loss" in r] == \
        [(r["step"], pytest.approx(r["loss"])) for r in logged if "loss" in r]
    config = {_key(u): json.loads(u.value_json) for r in records if r.WhichOneof("record_type") == "config"
              for u in r.config.update}
    assert config["method.r"] == 8
    summary = {_key(u): json.loads(u.value_json) for r in records if r.WhichOneof("record_type") == "summary"
               for u in r.summary.update}
    assert summary["resources/trainable_params"] == resources["trainable_params"]
    assert any(r.WhichOneof("record_type") == "artifact" and r.artifact.type == "resources" for r in records)
    [head] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (head.display_name, head.run_id, head.project) == ("tracked", record["wandb"]["id"], "vlmtune-test")


@pytest.mark.slow
def test_resume_logs_into_the_same_run(tracked, tiny_factory, run_config, crash_after_checkpoint):
    from vlmtune.train import train

    cfg = run_config(tiny_factory("qwen2_vl"), name="resumed", train={
        "max_steps": 4, "checkpoint_every": 2, "report_to": ["mlflow"], "project": "resume-test"})
    with crash_after_checkpoint(2):
        train(cfg)
    first = json.loads((cfg.run_dir / "tracking.json").read_text())["mlflow"]["run_id"]
    assert tracked.get_run(first).info.status == "FAILED"
    train(cfg, resume=True)
    assert json.loads((cfg.run_dir / "tracking.json").read_text())["mlflow"]["run_id"] == first
    assert tracked.get_run(first).info.status == "FINISHED"
    assert [m.step for m in tracked.get_metric_history(first, "loss")] == [1, 2, 3, 4]
    assert len(tracked.search_runs([tracked.get_experiment_by_name("resume-test").experiment_id])) == 1


@pytest.mark.slow
def test_grid_is_a_parent_with_one_child_per_variant(tracked, tiny_factory, shapes_data, tmp_path):
    from vlmtune.compare import compare

    model = tiny_factory("qwen2_vl")
    grid = {"name": "tracked-grid", "out_dir": str(tmp_path / "runs"),
            "base": {"model": {"path": str(model)},
                     "data": {"train": str(shapes_data / "train_vqa.jsonl"), "max_length": 512},
                     "train": {"max_steps": 2, "batch_size": 2, "report_to": ["mlflow"], "project": "grid-test"},
                     "eval": {"test": str(shapes_data / "test_vqa.jsonl"), "max_new_tokens": 2, "max_samples": 2}},
            "variants": [{"name": "baseline", "train": False}, {"name": "lora", "method": {"kind": "lora", "r": 4}}]}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    compare(path)

    experiment = tracked.get_experiment_by_name("grid-test")
    runs = tracked.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if r.info.run_name == "tracked-grid"]
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == ["baseline", "lora"] and len(runs) == 3
    assert all(r.info.status == "FINISHED" for r in runs)
    for name, child in children.items():
        scores = json.loads((tmp_path / "runs" / "tracked-grid" / name / "metrics.json").read_text())
        key = "eval/tasks/vqa/exact_match"
        assert child.data.metrics[key] == scores["tasks"]["vqa"]["exact_match"], name
    assert "loss" in children["lora"].data.metrics and "loss" not in children["baseline"].data.metrics
    assert children["lora"].data.params["method.r"] == "4"
    assert sorted(a.path for a in tracked.list_artifacts(parent.info.run_id)) == ["report.html", "report.md"]


@pytest.fixture
def trackio_store(monkeypatch, tmp_path):
    """trackio's ``SQLiteStorage`` over a tmp ``TRACKIO_DIR``. trackio reads the variable when
    imported, so its modules are dropped before (and after) the test and imported afresh."""
    def forget():
        for module in [m for m in sys.modules if m == "trackio" or m.startswith("trackio.")]:
            del sys.modules[module]

    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    monkeypatch.setenv("TRACKIO_STORAGE_MODE", "sqlite")
    for name in ("TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL"):
        monkeypatch.delenv(name, raising=False)
    forget()
    from trackio.sqlite_storage import SQLiteStorage

    yield SQLiteStorage
    forget()


def test_trackio_gets_params_metrics_resources_and_resumes(trackio_store, tiny_factory, run_config,
                                                           crash_after_checkpoint, tmp_path):
    from vlmtune.train import train

    cfg = run_config(tiny_factory("qwen2_vl"), name="tracked", train={
        "max_steps": 4, "checkpoint_every": 2, "report_to": ["trackio"], "project": "trackio-test"})
    with crash_after_checkpoint(2):
        train(cfg)
    first = json.loads((cfg.run_dir / "tracking.json").read_text())["trackio"]["id"]
    train(cfg, resume=True)
    assert json.loads((cfg.run_dir / "tracking.json").read_text())["trackio"]["id"] == first
    assert (tmp_path / "trackio" / "trackio-test.db").is_file()

    [record] = trackio_store.get_run_records("trackio-test")
    assert (record["id"], record["name"]) == (first, "tracked")
    logged = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = trackio_store.get_logs("trackio-test", run_id=first)
    assert [(r["step"], r["loss"]) for r in rows if "loss" in r] == \
        [(r["step"], pytest.approx(r["loss"])) for r in logged if "loss" in r]
    assert [r["step"] for r in logged if "loss" in r] == [1, 2, 3, 4]
    config = trackio_store.get_run_config("trackio-test", run_id=first)
    assert config["method.r"] == 8 and config["train.max_steps"] == 4 and config["_Group"] is None
    resources = json.loads((cfg.run_dir / "resources.json").read_text())
    assert [r["resources/trainable_params"] for r in rows if "resources/trainable_params" in r] == \
        [resources["trainable_params"]]
    output = trackio_store.get_run_artifacts("trackio-test", "tracked", first)["output"]
    assert [(a["name"], a["type"]) for a in output] == [("tracked-resources.json", "resources")]
    [alert] = trackio_store.get_alerts("trackio-test")  # the crash, flagged on the run
    assert (alert["run"], alert["level"], alert["step"]) == ("tracked", "error", 2)


def test_trackio_grid_runs_share_the_grid_group(trackio_store, tiny_factory, shapes_data, tmp_path):
    from vlmtune.compare import compare

    grid = {"name": "tio-grid", "out_dir": str(tmp_path / "runs"),
            "base": {"model": {"path": str(tiny_factory("qwen2_vl"))},
                     "data": {"train": str(shapes_data / "train_vqa.jsonl"), "max_length": 512},
                     "train": {"max_steps": 2, "batch_size": 2, "report_to": ["trackio"], "project": "tio-grid"},
                     "eval": {"test": str(shapes_data / "test_vqa.jsonl"), "max_new_tokens": 2, "max_samples": 2}},
            "variants": [{"name": "baseline", "train": False}, {"name": "lora", "method": {"kind": "lora", "r": 4}}]}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    compare(path)

    runs = {r["name"]: r["id"] for r in trackio_store.get_run_records("tio-grid")}
    assert sorted(runs) == ["baseline", "lora", "tio-grid"]
    configs = {n: trackio_store.get_run_config("tio-grid", run_id=i) for n, i in runs.items()}
    assert {n: c["_Group"] for n, c in configs.items()} == dict.fromkeys(runs, "tio-grid")
    assert configs["lora"]["method.r"] == 4 and configs["tio-grid"]["grid.variants"] == "baseline,lora"
    for name in ("baseline", "lora"):
        scores = json.loads((tmp_path / "runs" / "tio-grid" / name / "metrics.json").read_text())
        rows = trackio_store.get_logs("tio-grid", run_id=runs[name])
        assert [r["eval/tasks/vqa/exact_match"] for r in rows if "eval/tasks/vqa/exact_match" in r] == \
            [scores["tasks"]["vqa"]["exact_match"]], name
    lora_steps = [r["step"] for r in trackio_store.get_logs("tio-grid", run_id=runs["lora"]) if "loss" in r]
    assert lora_steps == [1, 2]
    output = trackio_store.get_run_artifacts("tio-grid", "tio-grid", runs["tio-grid"])["output"]
    assert sorted(a["type"] for a in output) == ["report", "report"]


def test_trackio_reopen_never_writes_into_a_newer_run_of_the_same_name(trackio_store, tmp_path):
    from vlmtune.train.tracking import Tracking

    first = Tracking(["trackio"], tmp_path / "a", "lora", "reuse", params={"method.r": 4}).open()
    first.metrics({"loss": 1.0}, step=1)
    first.close()
    newer = Tracking(["trackio"], tmp_path / "b", "lora", "reuse").open()  # another grid's "lora"
    newer.metrics({"loss": 5.0}, step=1)
    newer.close()
    reopened = Tracking(["trackio"], tmp_path / "a", "lora", "reuse")
    with pytest.warns(UserWarning, match="a newer run named 'lora'"):
        reopened.open()
    reopened.metrics({"loss": 0.5}, step=2)
    reopened.close()

    ids = [json.loads((tmp_path / d / "tracking.json").read_text())["trackio"]["id"] for d in "ab"]
    assert len(set(ids)) == 2 and len(trackio_store.get_run_records("reuse")) == 3
    assert [r["loss"] for r in trackio_store.get_logs("reuse", run_id=ids[1]) if "loss" in r] == [5.0]
    assert [r["loss"] for r in trackio_store.get_logs("reuse", run_id=ids[0]) if "loss" in r] == [0.5]


def test_missing_tracker_is_a_one_line_config_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"train.report_to: mlflow is not installed; pip install 'vlmtune\[mlflow\]'"):
        check_installed(["tensorboard", "mlflow"])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trackio" else real(name, *a))
    with pytest.raises(ConfigError, match=r"trackio is not installed; pip install 'vlmtune\[trackio\]'"):
        check_installed(["trackio"])
