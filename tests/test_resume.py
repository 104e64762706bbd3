"""Stopping after step k and resuming reaches the same weights as an uninterrupted run."""

from __future__ import annotations

import pytest
import yaml
from safetensors.torch import load_file

from vlmtune.train.checkpoint import latest_checkpoint
from vlmtune.errors import RunDirError, VlmtuneError
from vlmtune.train.loop import train


def _final_weights(run):
    return load_file(str(latest_checkpoint(run / "checkpoints") / "trainable.safetensors"))


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_resume_matches_uninterrupted(kind, tiny_factory, run_config, crash_after_checkpoint):
    model = tiny_factory("qwen2_vl")
    common = dict(method={"kind": kind, "dropout": 0.1}, train={"max_steps": 6, "checkpoint_every": 2,
                                                                 "grad_accum": 2, "lr": 1e-3})
    straight = train(run_config(model, name="straight", **common))

    cfg = run_config(model, name="interrupted", **common)
    with crash_after_checkpoint(4):
        train(cfg)
    with pytest.raises(RunDirError, match="--resume"):
        train(cfg)
    resumed = train(cfg, resume=True)

    a, b = _final_weights(straight), _final_weights(resumed)
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    steps = [line for line in (resumed / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(steps) == 6  # no step logged twice


def test_torn_checkpoint_is_skipped(tiny_factory, run_config):
    run = train(run_config(tiny_factory("qwen2_vl"), train={"max_steps": 4, "checkpoint_every": 2,
                                                             "keep_checkpoints": 3}))
    newest = latest_checkpoint(run / "checkpoints")
    (newest / "trainable.safetensors").write_bytes(b"torn")
    assert latest_checkpoint(run / "checkpoints").name == "step-000002"


def test_resume_refuses_a_different_config(tiny_factory, run_config):
    cfg = run_config(tiny_factory("qwen2_vl"), train={"max_steps": 2})
    train(cfg)
    changed = run_config(tiny_factory("qwen2_vl"), method={"r": 4}, train={"max_steps": 4})
    with pytest.raises(VlmtuneError, match="method.r: 8 -> 4"):
        train(changed, resume=True)
    saved = yaml.safe_load((cfg.run_dir / "config.yaml").read_text())
    del saved["train"]["distributed"]  # a run saved before this setting existed: its default applies
    (cfg.run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    longer = train(run_config(tiny_factory("qwen2_vl"), train={"max_steps": 3}), resume=True)
    assert (longer / "checkpoints" / "step-000003").is_dir()
