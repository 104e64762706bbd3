"""Done-when check: a file in each peer's format converts and the result trains a tiny
Qwen2-VL (two LoRA steps), every sample encoded (none skipped)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from vlmtune.data.convert import convert

Q, A = "<image>What colour is the square?", "red"


def _peer_files(root):
    """(source spec, converted name) for one sample file per peer format."""
    (root / "img").mkdir()
    for i in range(3):
        Image.new("RGB", (56, 56), ("red", "green", "blue")[i]).save(root / "img" / f"{i}.png")

    def dump(name, obj, lines=False):
        text = "".join(json.dumps(o) + "\n" for o in obj) if lines else json.dumps(obj, indent=1)
        (root / name).write_text(text)
        return root / name

    dump("lf_sharegpt.json", [{"conversations": [{"from": "human", "value": Q}, {"from": "gpt", "value": A}],
                               "images": ["img/0.png"]}])
    dump("lf_alpaca.json", [{"instruction": Q, "input": "", "output": A, "images": ["img/1.png"]}])
    dump("dataset_info.json", {
        "sg": {"file_name": "lf_sharegpt.json", "formatting": "sharegpt",
               "columns": {"messages": "conversations", "images": "images"}},
        "al": {"file_name": "lf_alpaca.json", "columns": {"prompt": "instruction", "query": "input",
                                                          "response": "output", "images": "images"}}})
    dump("lf_v1.jsonl", [{"messages": [
        {"role": "user", "content": [{"type": "image_url", "value": "img/2.png"},
                                     {"type": "text", "value": "What colour?"}]},
        {"role": "assistant", "content": [{"type": "text", "value": "blue"}], "loss_weight": 1.0}]}], lines=True)
    dump("swift.jsonl", [{"messages": [{"role": "user", "content": Q}, {"role": "assistant", "content": "red", "loss": False},
                                       {"role": "user", "content": "Sure?"}, {"role": "assistant", "content": "yes"}],
                          "images": ["img/0.png"]},
                         {"query": Q, "response": A, "history": [["Hi", "Hello"]], "images": ["img/0.png"]}], lines=True)
    dump("internvl.jsonl", [{"id": 0, "image": "img/1.png", "width": 56, "height": 56,
                             "conversations": [{"from": "human", "value": "<image>\nColour?"},
                                               {"from": "gpt", "value": "green"}]}], lines=True)
    dump("internvl_meta.json", {"colours": {"root": "./", "annotation": "internvl.jsonl", "repeat_time": 1}})
    dump("llava.json", [{"id": "l0", "image": "img/2.png", "conversations": [
        {"from": "human", "value": "<image>\nColour?"}, {"from": "gpt", "value": "blue"}]}])
    dump("openai.jsonl", [{"messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": (root / "img/1.png").as_uri()}},
                                     {"type": "text", "text": "Colour?"}]},
        {"role": "assistant", "content": "green"}]}], lines=True)
    return [(f"{root}/dataset_info.json#sg", "sg"), (f"{root}/dataset_info.json#al", "al"),
            (root / "lf_v1.jsonl", "v1"), (root / "swift.jsonl", "swift"),
            (root / "internvl_meta.json", "internvl"), (root / "llava.json", "llava"),
            (root / "openai.jsonl", "openai")]


@pytest.mark.slow
def test_each_peer_format_converts_and_trains(tmp_path, tiny_factory, run_config):
    rows = []
    for spec, name in _peer_files(tmp_path):
        out = tmp_path / f"{name}.jsonl"
        assert convert(spec, out, task="vqa") >= 1
        for line in out.read_text().splitlines():
            sample = json.loads(line)
            sample["id"] = f"{name}-{sample['id']}"
            rows.append(sample)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from vlmtune.train import train

    cfg = run_config(tiny_factory("qwen2_vl"), data={"train": str(tmp_path / "train.jsonl"), "val": None},
                     train={"max_steps": 2, "batch_size": 4, "checkpoint_every": 2}, eval={"test": None})
    run = train(cfg)
    data = json.loads((run / "data.json").read_text())["train"]
    assert data["samples"] == len(rows) == 8 and not data["skipped"]
    assert json.loads((run / "resources.json").read_text())["final_train_loss"] > 0
