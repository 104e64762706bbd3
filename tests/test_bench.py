"""bench/: the vlmtune-vs-TRL harness runs end to end and compares like with like.

No timing is asserted (speed depends on the machine and its neighbours); the checks are
that the harness produces its contract (the JSON line, the result files) and that the two
trainings did the same math (same trainable parameters, same labels, close losses).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
HEADLINE = {"samples_per_s_ratio", "peak_rss_ratio", "mfu", "eval_speedup", "loss_vlmtune", "loss_trl"}


def _bench_module(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(BENCH))


def test_pairs_add_two_image_samples():
    data = _bench_module("data")
    rows = [{"id": f"c{i}", "task": "caption", "images": [f"img/{i}.png"], "answers": [f"cap {i}"]}
            for i in range(4)] + [{"id": "v", "task": "vqa", "images": ["img/v.png"], "answers": ["red"]}]
    out = data.with_pairs(rows, every=2)
    pairs = [r for r in out if r["task"] == "caption2"]
    assert [p["images"] for p in pairs] == [["img/0.png", "img/1.png"], ["img/2.png", "img/3.png"]]
    assert pairs[0]["answers"] == ["First: cap 0 Second: cap 1"]
    assert sum(part["type"] == "image" for part in pairs[0]["messages"][0]["content"]) == 2


def test_trl_template_marks_what_vlmtune_labels(tiny_factory):
    """The TRL side's training template renders like the model's own and its assistant
    mask covers exactly vlmtune's label positions (answer + <|im_end|>)."""
    from transformers import AutoProcessor

    from vlmtune.data.encode import render_chat

    worker = _bench_module("worker_trl")
    processor = AutoProcessor.from_pretrained(tiny_factory("qwen2_vl"))
    messages = [{"role": "user", "content": [{"type": "text", "text": "What colour is it?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "red"}]}]
    worker.check_template(processor, [{"id": "x", "messages": messages}])
    text = processor.apply_chat_template(messages, tokenize=False)
    out = processor.apply_chat_template(messages, chat_template=worker.TRAINING_TEMPLATE, tokenize=True,
                                        return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    ids, mask = (ids[0], mask[0]) if isinstance(ids[0], list) else (ids, mask)
    start, end = render_chat(processor, messages).spans[0]
    assert processor.tokenizer.decode([i for i, m in zip(ids, mask) if m]) == text[start:end]
    assert text[start:end].endswith("<|im_end|>")


@pytest.mark.slow
def test_quick_bench_end_to_end(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                      os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--out", str(tmp_path / "results"),
                           "--work", str(tmp_path / "work")], capture_output=True, text=True, env=env,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    headline = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(headline) == HEADLINE
    a, b = headline["loss_vlmtune"], headline["loss_trl"]
    assert math.isfinite(a) and math.isfinite(b)
    assert abs(a - b) <= 0.1 * max(a, b)
    for key in ("samples_per_s_ratio", "peak_rss_ratio", "eval_speedup"):
        assert headline[key] > 0
    result = json.loads((tmp_path / "results" / "latest.json").read_text())
    assert result["headline"]["loss_vlmtune"] == a
    assert len(list((tmp_path / "results").glob("2*.json"))) == 1
    assert result["vlmtune"]["trainable_params"] == result["trl"]["trainable_params"]
    check = result["trl"]["label_check"]
    assert check["equal"] == check["samples"] > 0
    assert result["eval"]["prompts"] > 0 and "identical" in result["eval"]
    assert {"cpu_model", "cpu_threads", "load_average_start"} <= set(result["machine"])
    assert set(result["data"]["train"]["images_per_sample"]) == {"1", "2"}


@pytest.mark.slow
def test_real_vocab_bench_quick(tmp_path):
    """``--size real --quick``: the published Qwen2-VL-7B vocabulary and image processor on a
    narrow model; the two trainings' per-step losses agree (same batches, same math)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                      os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(BENCH / "run.py"), "--size", "real", "--quick", "--out",
                           str(tmp_path / "results"), "--work", str(tmp_path / "work")], capture_output=True,
                          text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    headline = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(headline) == HEADLINE and headline["eval_speedup"] is None
    result = json.loads((tmp_path / "results" / "latest-real.json").read_text())
    assert result["model"]["vocab_size"] == 152064 > 100 * result["model"]["tokenizer_size"]
    assert result["model"]["image_processor"]["patch_size"] == 14
    assert result["max_step_loss_diff"] < 1e-4
    assert len(result["vlmtune"]["losses"]) == len(result["trl"]["losses"]) == result["trl"]["steps"] > 0
    assert set(result["goals"]) == {"samples_per_s_ratio", "peak_rss_ratio"}
