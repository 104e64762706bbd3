"""The frozen vision cache changes speed, not results: same losses and same final weights
as without it (CPU fp32, a few steps over several epochs, so later epochs replay)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from vlmtune.config import build_config
from vlmtune.errors import ConfigError
from vlmtune.families import REGISTRY
from vlmtune.testing.tiny import TINY_FAMILIES
from vlmtune.train.loop import train

CACHED = [f for f in TINY_FAMILIES if REGISTRY[f].vision_cache]


def _run(run_config, path, name, train_file="train_vqa.jsonl", **train_opts):
    cfg = run_config(path, name=name, train_file=train_file, data={"max_samples": 4, "val": None},
                     train={"max_steps": None, "epochs": 3, "batch_size": 2, "checkpoint_every": 100,
                            **train_opts})
    run = train(cfg)
    losses = [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    return run, losses, load_file(str(run / "adapter" / "adapter_model.safetensors"))


@pytest.mark.parametrize("family", CACHED)
def test_cache_gives_the_same_losses_and_weights(family, tiny_factory, run_config):
    path = tiny_factory(family)
    _, plain, w_plain = _run(run_config, path, "plain", vision_cache="off")
    run, cached, w_cached = _run(run_config, path, "cached", vision_cache="memory")
    stats = json.loads((run / "resources.json").read_text())["vision_cache"]
    assert stats["entries"] == 4 and stats["hits"] == 8 and stats["misses"] == 4, stats  # 2 of 3 epochs replayed
    assert len(plain) == len(cached) == 6
    assert max(abs(a - b) for a, b in zip(plain, cached)) <= 1e-6, (plain, cached)
    assert w_plain.keys() == w_cached.keys()
    for key in w_plain:
        assert torch.allclose(w_plain[key], w_cached[key], atol=1e-6, rtol=0), key


def test_batches_with_text_only_samples_are_served_too(tiny_factory, run_config, shapes_data):
    import json as _json

    # two image samples and the text-only one: every batch of 2 holds a text-only sample or not
    lines = (shapes_data / "train_mixed.jsonl").read_text().splitlines()
    text_only = next(_json.loads(line) for line in lines if '"text-only"' in line)
    second = _json.dumps({**text_only, "id": "text-only-2"})
    (shapes_data / "train_text_mix.jsonl").write_text(
        "\n".join([lines[0], _json.dumps(text_only), lines[1], second]) + "\n")
    path = tiny_factory("qwen2_vl")
    _, plain, _ = _run(run_config, path, "plain", train_file="train_text_mix.jsonl", vision_cache="off")
    run, cached, _ = _run(run_config, path, "cached", train_file="train_text_mix.jsonl", vision_cache="memory")
    stats = _json.loads((run / "resources.json").read_text())["vision_cache"]
    assert stats["entries"] == 2 and stats["hits"] == 4 and stats["misses"] == 2, stats
    assert max(abs(a - b) for a, b in zip(plain, cached)) <= 1e-6


def test_disk_cache_and_size_cap(tiny_factory, run_config):
    path = tiny_factory("qwen2_vl")
    _, plain, w_plain = _run(run_config, path, "plain", vision_cache="off")
    run, disk, w_disk = _run(run_config, path, "disk", vision_cache="disk")
    assert json.loads((run / "resources.json").read_text())["vision_cache"]["hits"] == 8
    assert not (run / "vision_cache").exists()  # removed when training ends
    assert max(abs(a - b) for a, b in zip(plain, disk)) <= 1e-6
    # a cap below one example's features: nothing is cached, the run is still the same run
    run, capped, _ = _run(run_config, path, "capped", vision_cache="memory", vision_cache_max_bytes=16)
    stats = json.loads((run / "resources.json").read_text())["vision_cache"]
    assert stats["entries"] == 0 and stats["hits"] == 0
    assert max(abs(a - b) for a, b in zip(plain, capped)) <= 1e-6


def test_auto_is_off_when_vision_trains_and_explicit_is_refused(tiny_factory, run_config):
    from vlmtune.families import get_family
    from vlmtune.train.vision_cache import resolve_mode

    path = tiny_factory("qwen2_vl")
    base = {"name": "x", "model": {"path": str(path)}}
    assert resolve_mode(build_config(base), get_family("qwen2_vl")) == "memory"
    on_vision = {**base, "method": {"lora_on": ["language", "vision"]}}
    assert resolve_mode(build_config(on_vision), get_family("qwen2_vl")) == "off"
    with pytest.raises(ConfigError, match="train.vision_cache"):
        build_config({**on_vision, "train": {"vision_cache": "memory"}})
    with pytest.raises(ConfigError, match="train.vision_cache"):
        build_config({**base, "method": {"kind": "full"}, "train": {"vision_cache": "disk"}})
    assert resolve_mode(build_config(base), get_family("mllama")) == "off"
    with pytest.raises(ConfigError, match="train.vision_cache.*cross-attention"):
        resolve_mode(build_config({**base, "train": {"vision_cache": "memory"}}), get_family("mllama"))


def test_off_under_fsdp_where_processes_must_gather_in_lockstep(monkeypatch):
    """Full fine-tune with a frozen vision tower: the cache would apply, but under FSDP a
    process served from it would skip the tower's all-gathers that the others run."""
    from vlmtune.families import get_family
    from vlmtune.train.vision_cache import resolve_mode

    frozen_vision_full = {"name": "x", "model": {"path": "unused"}, "method": {"kind": "full"},
                          "trainable": {"vision": False, "projector": False}}
    qwen = get_family("qwen2_vl")
    assert resolve_mode(build_config(frozen_vision_full), qwen) == "memory"
    sharded = {**frozen_vision_full, "train": {"distributed": "fsdp"}}
    assert resolve_mode(build_config(sharded), qwen) == "off"
    with pytest.raises(ConfigError, match="train.vision_cache: memory cannot be used with FSDP"):
        resolve_mode(build_config({**frozen_vision_full, "train": {"distributed": "fsdp", "vision_cache": "memory"}}),
                     qwen)
    from vlmtune.train import distributed

    monkeypatch.setitem(distributed._LAUNCHER_ENV, distributed.ENV_FSDP, "true")  # launched with FSDP
    assert resolve_mode(build_config(frozen_vision_full), qwen) == "off"
