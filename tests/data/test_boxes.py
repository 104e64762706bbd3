"""Box conventions: rewriting between families' conventions, and IoU on each convention's
text checked against torchvision's box_iou on the converted boxes."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from vlmtune.data.boxes import NAMED, find_boxes, resized_size, rewrite
from vlmtune.data.convert import convert
from vlmtune.errors import ConfigError, DataError
from vlmtune.metrics import score

SIZE = (640, 480)
PAIRS = [((10, 20, 200, 240), (30, 25, 220, 260)), ((300, 100, 620, 470), (310, 90, 600, 480)),
         ((0, 0, 64, 48), (32, 24, 96, 72)), ((5, 5, 50, 50), (400, 400, 500, 470))]


def _text(box) -> str:
    return f"[{', '.join(str(v) for v in box)}]"


@pytest.mark.parametrize("name", sorted(NAMED))
def test_iou_on_each_convention_matches_torchvision(name):
    records, expected = [], []
    for i, (gold, pred) in enumerate(PAIRS):
        gold_t = rewrite(_text(gold), "pixel", name, SIZE)
        pred_t = rewrite(f"It is at {_text(pred)}.", "pixel", name, SIZE)
        records.append({"id": str(i), "prediction": pred_t, "answers": [gold_t]})
        (g,), (p,) = find_boxes(gold_t)[0].boxes, find_boxes(pred_t)[0].boxes
        expected.append(box_iou(torch.tensor([p], dtype=torch.float64),
                                torch.tensor([g], dtype=torch.float64)).item())
    summary, per = score(records, ["iou"])
    assert [row["iou"] for row in per] == pytest.approx(expected, abs=1e-12)
    assert summary["iou_unparseable"] == 0
    pixel = [box_iou(torch.tensor([p], dtype=torch.float64), torch.tensor([g], dtype=torch.float64)).item()
             for g, p in PAIRS]
    assert [row["iou"] for row in per] == pytest.approx(pixel, abs=0.02)  # rounding on the target grid


def test_styles_written_as_each_family_writes_them():
    box = "[64, 48, 320, 240]"
    assert rewrite(box, "pixel", "internvl", SIZE) == "<box>[[100, 100, 500, 500]]</box>"
    assert rewrite(box, "pixel", "qwen2-vl", SIZE) == "<|box_start|>(100,100),(500,500)<|box_end|>"
    assert rewrite(box, "pixel", "norm", SIZE) == "[0.1, 0.1, 0.5, 0.5]"
    w, h = resized_size(SIZE)
    assert (w % 28, h % 28) == (0, 0)
    assert json.loads(rewrite(box, "pixel", "qwen2.5-vl", SIZE))["bbox_2d"] == [
        round(64 * w / 640), round(48 * h / 480), round(320 * w / 640), round(240 * h / 480)]
    labelled = "<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(100,100),(500,500)<|box_end|>"
    assert rewrite(labelled, "qwen2-vl", "internvl", None) == "<ref>the cat</ref><box>[[100, 100, 500, 500]]</box>"
    assert json.loads(rewrite(labelled, "qwen2-vl", "qwen3-vl", None)) == {
        "bbox_2d": [100, 100, 500, 500], "label": "the cat"}
    back = rewrite(rewrite("[13, 7, 611, 479]", "pixel", "internvl", SIZE), "internvl", "pixel", SIZE)
    assert all(abs(a - b) <= 0.5 * 640 / 1000 + 0.5 for a, b in zip(find_boxes(back)[0].boxes[0], (13, 7, 611, 479)))
    with pytest.raises(ConfigError, match="unknown box convention"):
        rewrite(box, "pixels", "norm", SIZE)


def test_convert_boxes_option_rewrites_answers(tmp_path, check_canonical):
    Image.new("RGB", SIZE, "white").save(tmp_path / "a.png")
    Image.new("RGB", (10, 10), "white").save(tmp_path / "b.png")
    rec = {"id": "g", "image": "a.png", "conversations": [
        {"from": "human", "value": "<image>\nWhere is the cat?"},
        {"from": "gpt", "value": "<ref>cat</ref><box>[[100, 100, 500, 500]]</box>"}]}
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(rec) + "\n")
    convert(src, tmp_path / "out.jsonl", boxes="internvl:pixel", task="grounding")
    (sample,) = check_canonical(tmp_path / "out.jsonl")
    assert sample["answers"] == ["cat [64, 48, 320, 240]"] and sample["task"] == "grounding"
    two = dict(rec, image=None, images=["a.png", "b.png"])
    two["conversations"] = [{"from": "human", "value": "<image><image>Where?"}, rec["conversations"][1]]
    del two["image"]
    src.write_text(json.dumps(two) + "\n")
    with pytest.raises(DataError, match="exactly one image") as err:
        convert(src, tmp_path / "out2.jsonl", boxes="internvl:pixel")
    assert ":1:" in str(err.value)
    convert(src, tmp_path / "out2.jsonl", boxes="internvl:qwen2-vl")  # same 0-1000 scale: no size needed
