"""The command line end to end, as a user runs it (a subprocess, no shared state)."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml


def vlmtune(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vlmtune.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def _write_config(tmp_path, model, shapes_data, **extra):
    cfg = {"name": "cli-lora", "model": {"path": str(model)},
           "method": {"kind": "lora", "r": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]},
           "data": {"train": str(shapes_data / "train_vqa.jsonl"), "val": str(shapes_data / "val_vqa.jsonl")},
           "train": {"max_steps": 4, "batch_size": 2, "out_dir": str(tmp_path / "runs"), "checkpoint_every": 2,
                     "eval_every": 2},
           "eval": {"test": str(shapes_data / "test_vqa.jsonl"), "max_new_tokens": 3, "max_samples": 2}}
    cfg.update(extra)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_eval_merge_predict(tmp_path, tiny_factory, shapes_data):
    model = tiny_factory("qwen2_vl")
    cfg = _write_config(tmp_path, model, shapes_data)
    result = vlmtune("train", cfg, "method.r=8")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "runs" / "cli-lora"
    for name in ("config.yaml", "metrics.jsonl", "resources.json", "data.json", "adapter/adapter_config.json",
                 "adapter/adapter_model.safetensors", "adapter/tokenizer.json"):
        assert (run / name).is_file(), name
    assert list(run.glob("events.out.tfevents.*")), "no TensorBoard events"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000002", "step-000004"]
    assert yaml.safe_load((run / "config.yaml").read_text())["method"]["r"] == 8
    res = json.loads((run / "resources.json").read_text())
    for key in ("wall_time_s", "peak_memory", "samples_per_s", "tokens_per_s", "trainable_params",
                "total_params", "adapter_bytes"):
        assert res[key], key
    assert any("val_loss" in line for line in (run / "metrics.jsonl").read_text().splitlines())

    again = vlmtune("train", cfg)
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr

    evaluated = vlmtune("eval", "--run", run)
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["tasks"]["vqa"]["n"] == 2 and "exact_match" in metrics["tasks"]["vqa"]
    prior = metrics["prior"]["vqa"]  # the training set's most frequent answer, scored the same way
    assert f"constant answer {prior['answer']!r} (the most frequent training answer)" in \
        evaluated.stdout + evaluated.stderr
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert {"id", "prompt", "prediction", "references", "scores", "latency_s"} <= rows[0].keys()

    merged = vlmtune("merge", "--run", run, "--out", tmp_path / "merged")
    assert merged.returncode == 0, merged.stderr
    assert "max |logit diff|" in merged.stderr

    image = shapes_data / json.loads((shapes_data / "test_vqa.jsonl").read_text().splitlines()[0])["images"][0]
    answer = vlmtune("predict", "--model", model, "--adapter", run, "--image", image,  # a run dir finds adapter/
                     "--prompt", "What colour?", "--max-new-tokens", "2")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.startswith("base: ") and "\ncli-lora: " in answer.stdout
    from_merged = vlmtune("predict", "--model", tmp_path / "merged", "--image", image,
                          "--prompt", "What colour?", "--max-new-tokens", "2")
    assert from_merged.returncode == 0, from_merged.stderr
    assert from_merged.stdout.startswith("merged:cli-lora: ")  # not "base:"
    assert from_merged.stdout.split(": ", 1)[1] == answer.stdout.split("\ncli-lora: ", 1)[1]


def test_bad_config_value_names_file_line_and_field(tmp_path, tiny_factory, shapes_data):
    cfg = _write_config(tmp_path, tiny_factory("qwen2_vl"), shapes_data)
    result = vlmtune("train", cfg, "method.r=0")
    assert result.returncode == 2
    assert "method.r: must be >= 1, got 0" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_unknown_family_lists_supported(tmp_path, shapes_data):
    model = tmp_path / "weird"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "bert"}))
    cfg = _write_config(tmp_path, model, shapes_data)
    result = vlmtune("train", cfg)
    assert result.returncode == 2
    assert "unsupported model_type 'bert'" in result.stderr and "qwen2_vl" in result.stderr


def test_convert_then_train_reads_canonical(tmp_path, shapes_data):
    src = tmp_path / "llava.json"
    image = json.loads((shapes_data / "train_vqa.jsonl").read_text().splitlines()[0])["images"][0]
    src.write_text(json.dumps([{"id": "a", "image": str(shapes_data / image), "conversations": [
        {"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "red"}]}]))
    result = vlmtune("data", "convert", src, tmp_path / "out" / "train.jsonl", "--image-root", "/",
                     "--images-outside", "copy")
    assert result.returncode == 0, result.stderr
    from vlmtune.data.schema import load_samples

    sample = load_samples(tmp_path / "out" / "train.jsonl")[0]
    assert sample.answers == ["red"] and sample.images[0].is_relative_to(tmp_path / "out")
