"""Caption metrics through pycocoevalcap, against values pycocoevalcap 1.2 computed directly.

The reference tokenised references and predictions in two Java runs; we tokenise them in
one, and these tests show the scores are the same.
"""

import builtins
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from vlmtune.metrics import caption, score
from vlmtune.metrics.base import MissingDependencyError

REF = json.loads((Path(__file__).parent / "reference_values.json").read_text())["caption"]
needs_coco = pytest.mark.skipif(
    importlib.util.find_spec("pycocoevalcap") is None or shutil.which("java") is None,
    reason="needs pycocoevalcap and java")
FAST = ["bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider"]


def _records(set_name):
    return [{"id": i, **r} for i, r in enumerate(REF[set_name]["records"])]


def _check(set_name, names, summary, per):
    want = REF[set_name]
    for name in names:
        assert summary[name] == pytest.approx(want["corpus"][name], rel=1e-9, abs=1e-12), name
        got = [row[name] for row in per]
        assert got == pytest.approx(want["per_sample"][name], rel=1e-9, abs=1e-12), name


@needs_coco
@pytest.mark.parametrize("set_name", ["main", "single"])
def test_bleu_rouge_cider_match_pycocoevalcap(set_name):
    summary, per = score(_records(set_name), FAST)
    assert set(summary) == set(FAST)
    _check(set_name, FAST, summary, per)


@needs_coco
def test_cider_of_a_single_caption_is_zero():
    # Document frequencies come from the scored set: one caption gives idf 0 everywhere.
    assert REF["single"]["corpus"]["cider"] == 0.0
    assert score(_records("single"), ["cider"])[0] == {"cider": 0.0}


@needs_coco
@pytest.mark.slow
def test_meteor_matches_pycocoevalcap():
    summary, per = score(_records("main"), ["meteor", "bleu4"])
    _check("main", ["meteor", "bleu4"], summary, per)


@needs_coco
def test_line_breaks_do_not_shift_later_records():
    recs = [{"id": 0, "prediction": "a red\rcircle", "answers": ["a red circle"]},
            {"id": 1, "prediction": "two blue squares", "answers": ["two blue squares"]}]
    summary, per = score(recs, ["bleu1"])
    assert [row["bleu1"] for row in per] == pytest.approx([1.0, 1.0], abs=1e-6)


def test_missing_java_is_a_clear_error(monkeypatch):
    if importlib.util.find_spec("pycocoevalcap") is None:
        pytest.skip("needs pycocoevalcap")
    monkeypatch.setattr(caption.shutil, "which", lambda name: None)
    with pytest.raises(MissingDependencyError, match="need Java"):
        score([{"id": 0, "prediction": "a", "answers": ["a"]}], ["cider"])


def test_missing_pycocoevalcap_is_a_clear_error(monkeypatch):
    real_import = builtins.__import__

    def no_coco(name, *args, **kwargs):
        if name.startswith("pycocoevalcap"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_coco)
    with pytest.raises(MissingDependencyError, match="pip install pycocoevalcap"):
        score([{"id": 0, "prediction": "a", "answers": ["a"]}], ["bleu4"])


@needs_coco
def test_java_untokenizable_warnings_are_silenced(capfd):
    """PTBLexer's per-character warnings (a control character here) do not reach the
    terminal during eval/compare; the scores are unchanged by the filter."""
    recs = [{"prediction": "a red \x01 circle", "answers": ["a red circle"]}]
    summary, _ = score(recs, ["bleu1"])
    out, err = capfd.readouterr()
    assert "Untokenizable" not in err and "PTBLexer" not in err and "PTBTokenizer" not in err, err
    assert summary["bleu1"] == pytest.approx(1.0)
