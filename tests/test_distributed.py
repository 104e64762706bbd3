"""Two CPU processes (gloo backend) train the same as one process with the same global batch:
DDP under torchrun, FSDP (full fine-tuning) under torchrun and ``accelerate launch``; same
losses, gradient norms, final weights, and (FSDP) a saved model/ giving the same logits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from safetensors.torch import load_file

from vlmtune.train.checkpoint import latest_checkpoint


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


def _rows(run):
    return [row for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in row]


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
# --use_fsdp sets ACCELERATE_USE_FSDP: train.distributed=auto follows the launcher
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--use_fsdp", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


@pytest.mark.slow
@pytest.mark.parametrize("family, launcher", [("qwen2_vl", "torchrun"), ("llava", "accelerate")])
def test_fsdp_two_processes_match_one(family, launcher, tmp_path, tiny_factory, shapes_data):
    """FSDP2 full fine-tune on 2 processes == 1 process with the same global batch (4 = 2 x 2).
    14 samples make the last batch of each epoch short: process 1 then runs a label-free
    micro-batch to join the all-gathers. The torchrun case stops after step 2 and resumes
    from the (gathered, full) checkpoint. Tolerances: the two runs sum the same fp32
    gradients in a different order (reduce-scatter vs one process), ~1e-7 relative; Adam
    normalises updates, which lifts weight differences to ~2e-6 after 4 steps at lr 1e-3,
    well below one step's change (~1e-3). A loss-scaling bug would not show in Adam's
    weights but in the gradient norm, compared to 1e-4 relative."""
    def config(name, batch, distributed):
        cfg = {"name": name, "model": {"path": str(tiny_factory(family))}, "method": {"kind": "full"},
               "data": {"train": str(shapes_data / "train_vqa.jsonl"), "max_samples": 14},
               "train": {"max_steps": 4, "batch_size": batch, "grad_accum": 2, "lr": 1e-3, "schedule": "constant",
                         "warmup_ratio": 0.0, "distributed": distributed, "out_dir": str(tmp_path / "runs"),
                         "checkpoint_every": 2}}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(*argv):
        done = subprocess.run([*argv], capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    run(sys.executable, "-m", "vlmtune.cli", "train", config("one", 4, "fsdp"))
    two = config("two", 2, "fsdp" if launcher == "torchrun" else "auto")
    if launcher == "torchrun":
        run(*TORCHRUN, "-m", "vlmtune.cli", "train", two, "train.max_steps=2")
        resumed = run(*TORCHRUN, "-m", "vlmtune.cli", "train", two, "--resume")
        assert "resumed from" in resumed.stdout + resumed.stderr
    else:
        run(*ACCELERATE, "-m", "vlmtune.cli", "train", two)

    one_dir, two_dir = tmp_path / "runs" / "one", tmp_path / "runs" / "two"
    a, b = _rows(one_dir), _rows(two_dir)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], abs=1e-5)
    assert [r["grad_norm"] for r in a] == pytest.approx([r["grad_norm"] for r in b], rel=1e-4)
    assert a[0]["loss"] - a[-1]["loss"] > 0.05  # it trains (4 steps move the loss)

    wa = load_file(str(one_dir / "model" / "model.safetensors"))
    wb = load_file(str(two_dir / "model" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 2e-5
    ca = load_file(str(latest_checkpoint(one_dir / "checkpoints") / "trainable.safetensors"))
    cb = load_file(str(latest_checkpoint(two_dir / "checkpoints") / "trainable.safetensors"))
    assert ca.keys() == cb.keys() and max(float((ca[k] - cb[k]).abs().max()) for k in ca) < 2e-5

    import torch
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(tiny_factory(family)).eval()
    ma = AutoModelForImageTextToText.from_pretrained(one_dir / "model").eval()
    mb = AutoModelForImageTextToText.from_pretrained(two_dir / "model").eval()
    ids = torch.randint(3, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        la, lb, l0 = (m(input_ids=ids).logits for m in (ma, mb, base))
    assert float((la - lb).abs().max()) < 1e-5
    assert float((la - l0).abs().max()) > 1e-3  # the saved weights are the trained ones


@pytest.mark.parametrize("override, message", [
    (["method.kind=lora", "train.distributed=fsdp"], "fsdp shards full fine-tuning"),
    (["train.distributed=deepspeed"], "needs a DeepSpeed JSON"),
    (["train.distributed=ddp", "train.deepspeed=ds.json"], "train.distributed is ddp"),
])
def test_distributed_config_errors(override, message, tmp_path):
    from vlmtune.config import load_config
    from vlmtune.errors import ConfigError

    path = tmp_path / "cfg.yaml"
    path.write_text("name: x\nmodel: {path: ./tiny}\nmethod: {kind: full}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path, override)


def test_deepspeed_needs_cuda_and_fsdp_needs_images(tmp_path):
    import torch

    from vlmtune.config import build_config
    from vlmtune.data.schema import Sample
    from vlmtune.train.distributed import check_fsdp_data, make_accelerator
    from vlmtune.errors import ConfigError

    ds = tmp_path / "zero2.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    cfg = build_config({"name": "x", "model": {"path": "./tiny"}, "method": {"kind": "full"},
                        "train": {"deepspeed": str(ds)}})
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="DeepSpeed ZeRO needs CUDA GPUs"):
            make_accelerator(cfg)
    image = Sample(id="a", images=[tmp_path / "a.png"], messages=[], file="t.jsonl", line=1)
    text = Sample(id="b", images=[], messages=[], file="t.jsonl", line=2)
    check_fsdp_data([image, text], processes=1)  # one process: nothing to wait for
    check_fsdp_data([text, text], processes=2)  # no process runs the vision tower
    with pytest.raises(ConfigError, match="t.jsonl:2"):
        check_fsdp_data([image, text], processes=2)
