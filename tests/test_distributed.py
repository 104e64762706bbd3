"""Two CPU processes (torchrun, gloo backend, DDP) train the same as one process with the
same global batch: same losses, same final weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from safetensors.torch import load_file

from vlmtune.checkpoint import latest_checkpoint


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(line)]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lora", "full"])
def test_two_processes_match_one(kind, tmp_path, tiny_factory, shapes_data):
    def config(name, batch):
        cfg = {"name": name, "model": {"path": str(tiny_factory("qwen2_vl"))},
               "method": {"kind": kind, "r": 4, "dropout": 0.0},
               "data": {"train": str(shapes_data / "train_mixed.jsonl")},
               "train": {"max_steps": 4, "batch_size": batch, "grad_accum": 2, "lr": 1e-3,
                         "out_dir": str(tmp_path / "runs"), "checkpoint_every": 4}}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "vlmtune.cli", "train", config("one", 4)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert single.returncode == 0, single.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    double = subprocess.run([*torchrun, "-m", "vlmtune.cli", "train", config("two", 2)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert double.returncode == 0, double.stderr
    one, two = tmp_path / "runs" / "one", tmp_path / "runs" / "two"
    assert _losses(one) == pytest.approx(_losses(two), abs=1e-4)
    a = load_file(str(latest_checkpoint(one / "checkpoints") / "trainable.safetensors"))
    b = load_file(str(latest_checkpoint(two / "checkpoints") / "trainable.safetensors"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4
    res = json.loads((two / "resources.json").read_text())
    assert res["steps"] == 4 and double.stderr.count("done ") == 1
