"""``vlmtune compare --ray``: a grid of tiny real models on a local Ray with 2 workers gives
the serial grid's adapters (bit for bit) and metrics; a worker killed with SIGKILL mid-training
is retried and resumes from its checkpoint; a variant with bad input fails alone.

One local Ray (2 CPUs) serves the whole module; the serial grid runs once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray", reason="pip install 'vlmtune[ray]'")

from vlmtune.compare.grid import load_grid  # noqa: E402
from vlmtune.compare.ray_grid import log_path, run_grid_ray  # noqa: E402
from vlmtune.compare.run import is_finished, run_grid  # noqa: E402
from vlmtune.errors import VlmtuneError  # noqa: E402

pytestmark = pytest.mark.slow
VARIANTS = [{"name": "baseline", "train": False},
            {"name": "lora-r2", "method": {"kind": "lora", "r": 2, "alpha": 4}},
            {"name": "lora-r8", "method": {"kind": "lora", "r": 8, "alpha": 16}}]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory, tiny_factory, shapes_data):
    """``make(name, extra_variants=()) -> path`` of a 3-variant grid of one tiny Qwen2-VL."""
    root = tmp_path_factory.mktemp("ray-grids")
    base = {"model": {"path": str(tiny_factory("qwen2_vl"))},
            "method": {"kind": "lora", "dropout": 0.0},
            "data": {"train": str(shapes_data / "train_vqa.jsonl"), "max_length": 512},
            "train": {"max_steps": 10, "batch_size": 2, "lr": 1e-2, "schedule": "constant", "warmup_ratio": 0.0,
                      "checkpoint_every": 2, "keep_checkpoints": 10, "seed": 0},
            "eval": {"test": str(shapes_data / "test_vqa.jsonl"), "max_new_tokens": 4, "batch_size": 4,
                     "max_samples": 8}}

    def make(name: str, extra: list[dict] | None = None) -> Path:
        path = root / f"{name}.yaml"
        grid = {"name": name, "out_dir": str(root / "runs"), "base": base, "variants": VARIANTS + (extra or []),
                "ray": {"cpus_per_variant": 1, "max_retries": 2}}
        path.write_text(yaml.safe_dump(grid, sort_keys=False))
        return path

    return make


@pytest.fixture(scope="module")
def serial(grid_file):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each Ray task uses (ray.cpus_per_variant: 1)
    try:
        return run_grid(load_grid(grid_file("serial")), build=False).grid.dir
    finally:
        torch.set_num_threads(threads)


def _results(run: Path) -> dict:
    """What must not depend on where a variant ran: adapter bytes, scores, predictions."""
    adapter = run / "adapter" / "adapter_model.safetensors"
    metrics = json.loads((run / "metrics.json").read_text())
    predictions = [(r["id"], r["prediction"]) for r in map(json.loads, (run / "predictions.jsonl").open())]
    return {"adapter": adapter.read_bytes() if adapter.exists() else None, "tasks": metrics["tasks"],
            "predictions": predictions}


def _assert_same(serial_dir: Path, ray_dir: Path) -> None:
    for variant in VARIANTS:
        a, b = _results(serial_dir / variant["name"]), _results(ray_dir / variant["name"])
        assert (a["adapter"] is None) == (variant.get("train") is False)
        assert a == b, variant["name"]


def test_grid_on_ray_equals_serial(local_ray, grid_file, serial):
    outcome = run_grid_ray(load_grid(grid_file("on-ray")))
    assert outcome.status == {"baseline": "done", "lora-r2": "done", "lora-r8": "done"}
    _assert_same(serial, outcome.grid.dir)
    assert (outcome.grid.dir / "report.md").read_text().count("lora-r") >= 2
    log = log_path(outcome.grid, outcome.grid.variants[1]).read_text()
    assert log.startswith("submitted ") and "\nattempt 1: pid " in log and log.rstrip().endswith("done")
    # never more variants at once than CPUs (2): a task that blocked in ray.get lent its CPU out
    spans = [(float(re.search(r"started (\S+)", text).group(1)), float(re.search(r"ended (\S+)", text).group(1)))
             for text in (log_path(outcome.grid, v).read_text() for v in outcome.grid.variants)]
    assert max(sum(a <= t < b for a, b in spans) for t, _ in spans) <= 2, spans


def _kill_when_checkpointed(grid, name: str, step: int, killed: dict) -> None:
    """Kill -9 the worker running ``name`` once its checkpoint ``step`` exists (pid from its log)."""
    variant = next(v for v in grid.variants if v.name == name)
    checkpoint = variant.run_dir / "checkpoints" / f"step-{step:06d}"
    deadline = time.time() + 600
    while time.time() < deadline and not checkpoint.exists():
        time.sleep(0.01)
    match = re.search(r"attempt 1: pid (\d+)", log_path(grid, variant).read_text())
    if checkpoint.exists() and match and not (variant.run_dir / "resources.json").exists():
        os.kill(int(match.group(1)), signal.SIGKILL)
        killed["pid"] = int(match.group(1))


def test_killed_worker_resumes_and_a_bad_variant_fails_alone(local_ray, grid_file, serial, shapes_data):
    bad = {"name": "bad-data", "data": {"train": str(shapes_data / "missing.jsonl")}}
    grid = load_grid(grid_file("killed", [bad]))
    killed: dict = {}
    killer = threading.Thread(target=_kill_when_checkpointed, args=(grid, "lora-r8", 4, killed), daemon=True)
    killer.start()
    with pytest.raises(VlmtuneError, match=r"^1 of 4 variants failed: bad-data: .*missing\.jsonl") as err:
        run_grid_ray(grid)
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
    killer.join()
    assert killed, "lora-r8 finished before its worker could be killed"
    _assert_same(serial, grid.dir)
    log = log_path(grid, grid.variants[2]).read_text()
    assert f"attempt 1: pid {killed['pid']}" in log and "attempt 2: pid " in log
    assert "resuming from checkpoint" in log and "resumed from" in log  # ours, then the loop's own line
    resumed_at = int(re.search(r"resumed from \S+ \(step (\d+)\)", log).group(1))
    assert resumed_at >= 4
    bad_log = log_path(grid, grid.variants[3]).read_text()
    assert "attempt 2" not in bad_log and "failed: " in bad_log  # bad input is not retried
    assert (grid.dir / "report.md").is_file()


def _unfinished_pids(grid) -> list[int]:
    """Workers that ran the variants left unfinished (finished ones' workers stay for reuse)."""
    return [int(m) for v in grid.variants if log_path(grid, v).exists() and not is_finished(v)
            for m in re.findall(r"attempt \d+: pid (\d+)", log_path(grid, v).read_text())]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_cancels_every_task_and_leaves_runs_resumable(local_ray, grid_file, serial):
    import _thread

    grid = load_grid(grid_file("interrupted"))
    lora = grid.variants[2]
    checkpoint = lora.run_dir / "checkpoints" / "step-000002"  # kept (keep_checkpoints: 10)
    stopped: dict = {}

    def press_ctrl_c():
        # Ctrl-C reaches the driver within one ray.wait (0.5 s), longer than a tiny run's last 8
        # steps take on a fast machine: freeze lora-r8's worker first so it cannot finish meanwhile
        # (the latest attempt's pid: under load a first attempt can fail and be retried; and the
        # Ctrl-C is pressed whatever happens here, so the test fails on its assertions, not by hanging)
        try:
            deadline = time.time() + 600
            while time.time() < deadline and not checkpoint.exists():
                time.sleep(0.01)
            pids = re.findall(r"attempt \d+: pid (\d+)", log_path(grid, lora).read_text())
            if pids and not (lora.run_dir / "resources.json").exists():
                os.kill(int(pids[-1]), signal.SIGSTOP)
                stopped["pid"] = int(pids[-1])
        finally:
            _thread.interrupt_main()

    # A runner started in the background by a non-interactive shell (`pytest ... &`, some CI
    # agents) inherits SIGINT ignored, and interrupt_main() then does nothing: what a terminal's
    # Ctrl-C reaches is Python's default handler, so install it for the run.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=press_ctrl_c, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            run_grid_ray(grid)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stopped, "lora-r8 finished before Ctrl-C"
    assert not (lora.run_dir / "resources.json").exists()
    try:
        os.kill(stopped["pid"], signal.SIGCONT)  # a stopped worker cannot act on the cancel
    except ProcessLookupError:
        pass  # already killed
    cancelled = _unfinished_pids(grid)
    assert cancelled
    deadline = time.time() + 60
    while time.time() < deadline and any(map(_alive, cancelled)):
        time.sleep(0.2)
    assert not any(map(_alive, cancelled)), "a cancelled task's worker is still running"
    outcome = run_grid_ray(load_grid(grid.source), build=False)  # the same command again resumes
    assert outcome.status["lora-r8"] == "done"
    _assert_same(serial, grid.dir)


def test_attempts_count_from_the_last_submission(tmp_path):
    from vlmtune.compare.ray_grid import SUBMITTED, _attempt

    log = tmp_path / "v.log"
    assert _attempt(log) == 1
    log.write_text(f"{SUBMITTED} t0\nattempt 1: pid 1\nattempt 2: pid 2\nended 5\n")
    assert _attempt(log) == 3  # a retry of the same submission
    log.write_text(log.read_text() + f"{SUBMITTED} t1\n")
    assert _attempt(log) == 1  # the grid run again: a fresh count
