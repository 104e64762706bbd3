"""format_compliance: share of predictions in a task's answer format."""

import pytest

from vlmtune.errors import InputError
from vlmtune.metrics import format_compliance


@pytest.mark.parametrize("fmt, good, bad", [
    ("letter", ["B", "(C)", "The answer is A.", "Answer: H"], ["b", "B or C", "", "Z", "I"]),
    ("box", ["[1, 2, 3, 4]", "(1,2),(3,4)", "1 2 3 4"], ["left", "[1, 2, 3]", "[3, 3, 1, 1]"]),
    ("number", ["42", "-1,234.5%", "3e4", "42.", ".5", " 7 "], ["forty", "1,23", "", "12 apples",
                                                                "nan", "."]),
    ("voxels", ["[[0, 0, 0]]", "[]"], ["a cube", "[[0, 0]]"]),
    ("text", ["anything", "0"], ["", "   \n"]),
])
def test_formats(fmt, good, bad):
    assert format_compliance(fmt, good) == 1.0
    assert format_compliance(fmt, bad) == 0.0
    assert format_compliance(fmt, [good[0], bad[0]]) == 0.5


def test_task_names_map_to_formats():
    assert format_compliance("mc", ["B", "dog"]) == 0.5
    assert format_compliance("grounding", ["[1, 2, 3, 4]"]) == 1.0
    assert format_compliance("mc_text", ["dog"]) == 1.0


def test_unknown_format_and_empty_input():
    with pytest.raises(InputError, match="known: .*letter"):
        format_compliance("haiku", ["x"])
    with pytest.raises(InputError):
        format_compliance("text", [])
