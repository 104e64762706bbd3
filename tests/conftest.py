"""Shared pytest fixtures. Each block is owned by one area; keep blocks delimited."""

from __future__ import annotations

from pathlib import Path

import pytest

# ---------------------------------------------------------------------------------------
# Tiny real-architecture models (vlmtune.testing) — owner: tests/testing
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_factory(tmp_path_factory):
    """Build tiny checkpoints on demand, once per session per (family, options).

    Returns ``build(family, **build_tiny_kwargs) -> Path``; later calls with the same
    arguments return the cached directory, so every test module can ask for the model it
    needs without paying for a rebuild. Treat the directory as read-only.

    Example:
        def test_something(tiny_factory):
            path = tiny_factory("qwen2_vl")            # default tiny Qwen2-VL
            small = tiny_factory("gemma3", hidden=16)  # another cached variant
    """
    from vlmtune.testing import build_tiny

    root = tmp_path_factory.mktemp("tiny-models")
    cache: dict[tuple, Path] = {}

    def build(family: str, **kwargs) -> Path:
        if kwargs.get("corpus") is not None:
            kwargs["corpus"] = tuple(kwargs["corpus"])
        key = (family, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = build_tiny(family, root / f"{family}-{len(cache)}", **kwargs)
        return cache[key]

    return build


# ---------------------------------------------------------------------------------------
# end: tiny models
# ---------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------
# Datasets and run configs for pipeline tests — owner: tests/ (train, eval, CLI)
# ---------------------------------------------------------------------------------------


def _extra_samples(root: Path) -> list[dict]:
    """A text-only sample and a two-image sample, appended to the synthetic set."""
    import json as _json

    first = _json.loads((root / "train_vqa.jsonl").read_text().splitlines()[0])
    second = _json.loads((root / "train_vqa.jsonl").read_text().splitlines()[1])
    text_only = {"id": "text-only", "task": "vqa", "answers": ["four"],
                 "messages": [{"role": "user", "content": "How many sides has a square?"},
                              {"role": "assistant", "content": "four"}]}
    two = {"id": "two-images", "task": "vqa", "answers": ["yes"],
           "images": first["images"] + second["images"],
           "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                                     {"type": "text", "text": "Are there two pictures?"}]},
                        {"role": "assistant", "content": [{"type": "text", "text": "yes"}]}]}
    return [text_only, two]


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory):
    """Small synthetic VQA + grounding dataset; ``train_mixed.jsonl`` adds a text-only
    and a two-image sample. Returns the dataset root (files as vlmtune.data.synth names them)."""
    import json as _json

    from vlmtune.data.synth import synth

    root = tmp_path_factory.mktemp("shapes")
    synth(root, tasks=("vqa", "grounding"), n=30, seed=0, image_size=64)
    lines = (root / "train_vqa.jsonl").read_text().splitlines()[:14]
    lines += [_json.dumps(s) for s in _extra_samples(root)]
    (root / "train_mixed.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def run_config(tmp_path, shapes_data):
    """``make(model_path, **sections) -> RunConfig`` for a short CPU run under tmp_path."""
    from vlmtune.config import build_config

    def make(model_path: Path, *, train_file: str = "train_vqa.jsonl", **sections) -> "object":
        data = {"name": sections.pop("name", "run"), "model": {"path": str(model_path)},
                "method": {"kind": "lora", "r": 8, "alpha": 16, "dropout": 0.0},
                "data": {"train": str(shapes_data / train_file), "val": str(shapes_data / "val_vqa.jsonl"),
                         "max_length": 512},
                "train": {"max_steps": 20, "batch_size": 4, "lr": 2e-2, "warmup_ratio": 0.0,
                          "schedule": "constant",
                          "out_dir": str(tmp_path / "runs"), "checkpoint_every": 10, "seed": 0},
                "eval": {"test": str(shapes_data / "test_vqa.jsonl"), "max_new_tokens": 4, "batch_size": 4}}
        for section, values in sections.items():
            data[section] = {**data.get(section, {}), **values} if isinstance(values, dict) else values
        return build_config(data)

    return make


# ---------------------------------------------------------------------------------------
# end: pipeline datasets
# ---------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------
# Real chat templates (tests/data/chat-templates, vendored from ../shared) — owner: tests/test_chat_templates
# ---------------------------------------------------------------------------------------

CHAT_TEMPLATES = Path(__file__).parent / "data" / "chat-templates"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The folder of real chat templates (one ``.jinja`` per template, ``SOURCES.json``)."""
    return CHAT_TEMPLATES


# ---------------------------------------------------------------------------------------
# end: chat templates
# ---------------------------------------------------------------------------------------


class CheckpointCrash(Exception):
    """What ``crash_after_checkpoint`` raises: a run stopped right after a checkpoint."""


@pytest.fixture
def crash_after_checkpoint(monkeypatch):
    """``with crash_after_checkpoint(k): train(cfg)``: the run stops (CheckpointCrash, expected
    by the block) right after writing checkpoint ``k``, as if killed there."""
    from contextlib import contextmanager

    from vlmtune.train import checkpoint as ckpt

    real = ckpt.save_checkpoint

    @contextmanager
    def armed(step: int):
        def save_then_crash(folder, at, *args, **kwargs):
            path = real(folder, at, *args, **kwargs)
            if at == step:
                raise CheckpointCrash
            return path

        monkeypatch.setattr(ckpt, "save_checkpoint", save_then_crash)
        try:
            with pytest.raises(CheckpointCrash):
                yield
        finally:
            monkeypatch.setattr(ckpt, "save_checkpoint", real)

    return armed
