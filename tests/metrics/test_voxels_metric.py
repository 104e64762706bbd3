"""Voxel-set IoU against a dense numpy occupancy-grid computation, and the text format."""

import json
from pathlib import Path

import pytest

from vlmtune.errors import InputError
from vlmtune.metrics import score
from vlmtune.metrics.voxels import parse_voxels, voxel_iou

REF = json.loads((Path(__file__).parent / "reference_values.json").read_text())


@pytest.mark.parametrize("case", REF["voxel_iou"], ids=lambda c: str(c["pred"]))
def test_iou_matches_dense_grid(case):
    # numpy gives NaN (0/0) for two empty grids; two empty grids are identical: 1.0.
    expected = 1.0 if case["numpy"] is None else case["numpy"]
    pred, gold = parse_voxels(json.dumps(case["pred"])), parse_voxels(json.dumps(case["gold"]))
    assert voxel_iou(pred, gold) == pytest.approx(expected, abs=1e-12)


def test_format_tolerates_spaces_and_surrounding_text():
    assert parse_voxels("Occupied: [ [1,2,3] ,[ -1 , 0, 4 ], ] done") == {(1, 2, 3), (-1, 0, 4)}
    assert parse_voxels("[]") == frozenset()


@pytest.mark.parametrize("text", ["", "nothing", "[1, 2, 3]", "[[1, 2]]", "[[1, 2, 3, 4]]",
                                  "[[1.5, 2, 3]]", "[[1, 2, 3], [a, b, c]]"])
def test_unparseable(text):
    assert parse_voxels(text) is None


def test_summary_counts_unparseable():
    recs = [{"id": 0, "prediction": "[[0,0,0],[0,0,1]]", "answers": ["[[0,0,1]]"]},
            {"id": 1, "prediction": "a cube", "answers": ["[[0,0,1]]"]}]
    summary, per = score(recs, ["voxel_iou"])
    assert summary == {"voxel_iou": 0.25, "voxel_iou_unparseable": 1}
    assert per[1]["voxel_iou_unparseable"] == 1.0
    with pytest.raises(InputError):
        score([{"id": 2, "prediction": "[]", "answers": ["a cube"]}], ["voxel_iou"])
