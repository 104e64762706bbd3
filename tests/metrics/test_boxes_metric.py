"""Box IoU against torchvision.ops.box_iou, and the box text formats."""

import json
from pathlib import Path

import pytest

from vlmtune.errors import InputError
from vlmtune.metrics import score
from vlmtune.metrics.boxes import box_iou, parse_box

REF = json.loads((Path(__file__).parent / "reference_values.json").read_text())
FORMATS = ["[{}, {}, {}, {}]", "The box is [{} {} {} {}].", "({},{}),({},{})",
           "<box>({}, {}) ({}, {})</box>", "{}, {}, {}, {}", "{} {} {} {}", "({}, {}, {}, {})."]


@pytest.mark.parametrize("case", REF["iou"], ids=lambda c: str(c["pred_box"]))
def test_iou_matches_torchvision(case):
    # torchvision gives NaN for two zero-area boxes (0/0); we give 0 (docs/metrics.md).
    expected = 0.0 if case["torchvision"] is None else case["torchvision"]
    assert box_iou(tuple(case["pred_box"]), tuple(case["gold_box"])) == pytest.approx(
        expected, abs=1e-12)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_documented_format_parses(fmt):
    for case in REF["iou"]:
        box = case["pred_box"]
        assert parse_box(fmt.format(*box)) == tuple(float(v) for v in box)


@pytest.mark.parametrize("text", ["", "left of the cat", "[1, 2, 3]", "1 2 3 4 5",
                                  "[10, 10, 5, 20]", "[1, 2, 3, inf]", "x1=1 y1=2 x2=3 y2=4",
                                  "[1,2,3,4,5]", "[1e999, 0, 2, 2]"])
def test_unparseable_or_invalid(text):
    assert parse_box(text) is None


def test_first_box_wins_and_numbers_may_be_floats():
    assert parse_box("[0.5, 1, 2.25, 3] then [9, 9, 9, 9]") == (0.5, 1.0, 2.25, 3.0)


def test_summary_counts_unparseable_and_ties_at_half():
    recs = [{"id": 0, "prediction": "[0, 0, 2, 1]", "answers": ["[0, 0, 1, 1]"]},
            {"id": 1, "prediction": "no idea", "answers": ["[0, 0, 1, 1]"]},
            {"id": 2, "prediction": "(0,0),(1,1)", "answers": ["[5, 5, 6, 6]", "[0, 0, 1, 1]"]},
            {"id": 3, "prediction": "[0, 0, 3, 1]", "answers": ["[0, 0, 1, 1]"]}]
    summary, per = score(recs, ["iou"])
    assert summary["iou_unparseable"] == 1
    assert summary["iou_acc@0.5"] == 0.5
    assert summary["iou"] == pytest.approx((0.5 + 0 + 1 + 1 / 3) / 4)
    assert per[1] == {"iou": 0.0, "iou_acc@0.5": 0.0, "iou_unparseable": 1.0}


def test_invalid_gold_box_is_an_input_error():
    with pytest.raises(InputError, match="record g1"):
        score([{"id": "g1", "prediction": "[0, 0, 1, 1]", "answers": ["somewhere"]}], ["iou"])
