"""kill -9 in the middle of training, then --resume: the final weights equal those of an
uninterrupted run (max abs diff <= 1e-6 on CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from safetensors.torch import load_file

from vlmtune.train.checkpoint import latest_checkpoint


def _config(tmp_path, model, shapes_data, name):
    cfg = {"name": name, "model": {"path": str(model)}, "method": {"kind": "lora", "r": 4, "dropout": 0.1},
           "data": {"train": str(shapes_data / "train_vqa.jsonl")},
           "train": {"max_steps": 24, "batch_size": 4, "grad_accum": 2, "lr": 1e-3, "checkpoint_every": 3,
                     "out_dir": str(tmp_path / "runs"), "seed": 3}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train(*args):
    return subprocess.Popen([sys.executable, "-m", "vlmtune.cli", "train", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_kill_9_then_resume_equals_uninterrupted(tmp_path, tiny_factory, shapes_data):
    model = tiny_factory("qwen2_vl")
    straight = _train(_config(tmp_path, model, shapes_data, "straight"))
    victim_cfg = _config(tmp_path, model, shapes_data, "victim")
    victim = _train(victim_cfg)
    checkpoints = tmp_path / "runs" / "victim" / "checkpoints"
    deadline = time.time() + 300
    while not (checkpoints / "step-000006").exists() and time.time() < deadline and victim.poll() is None:
        time.sleep(0.02)
    assert victim.poll() is None, "training finished before it could be killed"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "runs" / "victim" / "adapter").exists()

    resumed = _train(victim_cfg, "--resume")
    assert resumed.wait() == 0, resumed.stderr.read()
    assert straight.wait() == 0, straight.stderr.read()
    a = load_file(str(latest_checkpoint(tmp_path / "runs" / "straight" / "checkpoints") / "trainable.safetensors"))
    b = load_file(str(latest_checkpoint(checkpoints) / "trainable.safetensors"))
    assert latest_checkpoint(checkpoints).name == "step-000024"
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    leftovers = [p.name for p in checkpoints.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers
