"""Compute reference metric values by running the reference implementations themselves.

Why: vlmtune's metrics claim to match lmms-eval, VLMEvalKit, pycocoevalcap, torchvision
and the VQA normalisation; tests/metrics/ checks that claim against the values this
script writes to tests/metrics/reference_values.json. vlmtune is never imported here.

Run it in a scratch venv (the references' full dependency sets are huge, so lmms-eval
(and VLMEvalKit, from a checkout) are used without dependencies and only the modules needed are
imported, with their package ``__init__`` files and lmms-eval's metric registry stubbed;
the metric code itself runs unmodified)::

    python3 -m venv /tmp/refvenv && . /tmp/refvenv/bin/activate
    pip install pycocoevalcap==1.2 torch==2.14.1 torchvision==0.29.1 numpy \
        loguru sacrebleu pandas huggingface_hub sty validators filelock pillow tqdm
    pip install --no-deps lmms-eval==0.7.3
    # VLMEvalKit at the pinned commit (its verbose-answer rule, #1552, is in no PyPI release):
    git clone https://github.com/open-compass/VLMEvalKit /tmp/VLMEvalKit
    git -C /tmp/VLMEvalKit checkout e8e78f05f3080fe28154f2130321f17951c3be94
    python scripts/reference_metrics/compute_reference.py --vlmevalkit /tmp/VLMEvalKit  # needs java

Example:
    python scripts/reference_metrics/compute_reference.py --out /tmp/ref.json
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

ANLS_CASES = [
    ("Hello", ["hello"]), ("  hello   world ", ["Hello World"]), ("ab", ["ax"]),
    ("abc", ["axy"]), ("abcd", ["abxy"]), ("abcde", ["abxyz"]), ("", ["answer"]), ("", [""]),
    ("x", [""]), ("Straße", ["STRASSE"]), ("café", ["cafe"]), ("42", ["forty-two", "42.0", "42"]),
    ("$1,234.56", ["1234.56"]), ("İstanbul", ["istanbul"]), ("The answer is 7", ["7"]),
    ("日本語", ["日本"]), ("abcdefghij", ["abcdefghix", "zzz"]), ("hello\nworld", ["hello world"]),
    ("a  b", ["ab"]), ("👍", ["👍🏽"]), ("Dr. Smith", ["dr smith", "doctor smith"]),
]
MC_OPTIONS = ["red circle", "blue square", "green triangle", "yellow star"]
MC_PREDICTIONS = [
    "B", "(B)", "b", "B.", "Answer: B", "The answer is B", "The answer is (B).", "**B**", "[B]",
    "{B}", "B: blue square", "Option B", "B or C", "B and C are both wrong", "A",
    "A cat is sitting on the mat next to B", "I think B", "answer: b",
    "I choose B because the square is blue and large", "blue square", "Blue Square",
    "the blue square", "red circle or blue square", "", "Z", "none of these: Z",
    "Sorry, I can't help with images of people yet.", "Cannot determine the answer",
    "Failed to obtain answer via API", "b) blue square", "The correct option is B, not C",
    "A.", "E", "The answer is B.\n\nExplanation: the shape is blue.", "B\n", "  C  ",
    "It is the yellow star, definitely the yellow star.", "D) yellow star", "B, C",
    "A blue square is shown", "Answer: (D) yellow star",
    # VLMEvalKit's verbose-answer fallback (#1552): any case, A-D, first match, no word boundary
    "the answer is b", "The correct answer is **C**. Here's why: A and B are wrong.",
    "Answer is d", "I think the answer is apple", "The answer is E", "B and C; the answer is B",
    "correct answer is  **B**", "the answer is: B", "My answer is B, not C or D",
]
MC_EXTRA = [  # (prediction, options, gold letter)
    ("日本", ["café au lait", "naïve", "résumé", "日本"], "D"),
    ("答案是D", ["café au lait", "naïve", "résumé", "日本"], "D"),
    ("NAÏVE", ["café au lait", "naïve", "résumé", "日本"], "B"),
    ("2", ["1", "2", "3", "4"], "B"), ("12", ["1", "2", "3", "4"], "B"),
    ("F", ["a", "b", "c", "d", "e", "f"], "F"), ("(f)", ["a", "b", "c", "d", "e", "f"], "F"),
    ("yes", ["yes", "no"], "A"), ("No.", ["yes", "no"], "B"),
]
_N = ["no"] * 10
VQA_CASES = [
    ("2", ["2"] * 10), ("two", ["2"] * 10), ("Two.", ["2"] * 4 + ["3"] * 6),
    ("yes", ["yes"] * 2 + _N[:8]), ("yes", ["yes"] + _N[:9]), ("yes", ["yes"] * 3 + _N[:7]),
    ("the dog", ["dog"] * 3 + ["a dog"] * 2 + ["cat"] * 5), ("2.", ["2"] * 2 + ["3"] * 8),
    ("dont know", ["don't know"] * 3 + ["no"] * 7), ("1,000", ["1000"] * 3 + ["many"] * 7),
    ("e-mail", ["email"] * 5 + ["e mail"] * 5), ("black & white", ["black and white"] * 10),
    ("Yes!", ["yes"] * 10), ("  YES\n", ["yes"] * 9 + ["no"]), ("", ["yes"] * 10),
    ("café", ["cafe"] * 5 + ["café"] * 5), ("3.5", ["3.5"] * 3 + ["4"] * 7),
    ("none", ["0"] * 4 + ["no"] * 6), ("Im fine", ["i'm fine"] * 10), ("hes", ["he's"] * 10),
    ("a/b", ["b"] * 3 + ["a b"] * 7), ("x", ["x", "x", "y"]), ("left", ["left"] * 10),
    ("on the table", ["table"] * 2 + ["on table"] * 2 + ["on the table."] * 6),
    ("10 am", ["10:00"] * 4 + ["10 am"] * 6), ("(a) red", ["red"] * 4 + ["a red"] * 6),
    ("red, white", ["red white"] * 4 + ["red and white"] * 6),
]
VQA_TEXTS = [
    "What's up?", "3.14.", "1,2,3", "a-b - c", "(hello)", "[x] {y} <z>", "@home `q`",
    "He said \"hi\"", "a_b+c=d", "back\\slash", "Ten Dogs", "an apple", "The end.",
    "twas night", "yall'd've", "ow's'at", "none of them", "1,000,000 people", "x.y.z",
    "mr. smith", "it's 5 o'clock", "somebody'd", "somebodyd", "ok...", "über café",
]
RELAXED_CASES = [
    ("105", ["100"]), ("95", ["100"]), ("105.0001", ["100"]), ("21", ["20"]), ("1.05", ["1"]),
    ("0.105", ["0.1"]), ("12%", ["0.12"]), ("12", ["12%"]), ("0", ["0"]), ("0.0", ["0"]),
    ("0.01", ["0"]), ("Yes", ["yes"]), (" yes ", ["yes"]), ("1,000", ["1000"]),
    ("-5", ["-5.2"]), ("", ["0"]), ("nan", ["nan"]), ("inf", ["inf"]), ("17", ["20", "17.5"]),
    ("Café", ["café"]), ("1e2", ["100"]), ("  42\n", ["42"]), ("42 ", ["40"]),
    ("ABC", ["abc", "def"]), ("5.25%", ["5%"]), ("-0.95", ["-1"]), ("19", ["20"]),
]
EXACT_CASES = [
    ("Paris", ["paris"]), ("  Paris ", ["PARIS", "Lyon"]), ("paris.", ["paris"]), ("", [""]),
    ("", ["x"]), ("Café", ["CAFÉ"]), ("New  York", ["new york"]), ("42", ["42.0", "42"]),
]
BOX_CASES = [
    ([0, 0, 10, 10], [0, 0, 10, 10]), ([0, 0, 2, 1], [0, 0, 1, 1]), ([0, 0, 4, 4], [0, 0, 4, 2]),
    ([0, 0, 3, 1], [1, 0, 4, 1]), ([0, 0, 10, 10], [5, 5, 15, 15]), ([0, 0, 1, 1], [2, 2, 3, 3]),
    ([0, 0, 1, 1], [1, 0, 2, 1]), ([0, 0, 10, 10], [2, 2, 4, 4]),
    ([0.1, 0.2, 0.5, 0.9], [0.2, 0.1, 0.6, 0.8]), ([100, 200, 640, 480], [120, 210, 600, 500]),
    ([5, 5, 5, 5], [5, 5, 5, 5]), ([5, 5, 5, 10], [0, 0, 10, 10]),
    ([-10, -10, 10, 10], [0, 0, 20, 20]), ([12, 40, 56, 84], [10, 38, 60, 80]),
]
VOXEL_CASES = [
    ([[0, 0, 0], [0, 0, 1]], [[0, 0, 1]]), ([[0, 0, 0]], [[0, 0, 0]]), ([[1, 2, 3]], [[3, 2, 1]]),
    ([], []), ([], [[0, 0, 0]]),
    ([[0, 0, 0], [1, 1, 1], [2, 2, 2]], [[1, 1, 1], [2, 2, 2], [3, 3, 3]]),
    ([[0, 0, 0], [0, 0, 0], [1, 0, 0]], [[1, 0, 0]]), ([[-1, 0, 2], [4, 4, 4]], [[-1, 0, 2]]),
]
CAPTION_SETS = {
    "main": [
        ("A red circle is on the left.", ["A red circle is on the left.", "a red ball, left side",
                                          "There is a red circle to the left of the square."]),
        ("", ["Two blue squares."]),
        ("café au lait, naïve résumé", ["Café au lait — naïve résumé!", "a cup of coffee"]),
        ("a small green triangle above a large yellow star",
         ["A green triangle is above the yellow star.", "small green triangle over a big star"]),
        ("dog dog dog dog", ["a dog runs in the park"]),
        ("The cat's toy (a ball) is under the table; it's red!",
         ["A red ball lies under the table.", "the cat's red ball is beneath a table"]),
        ("two blue squares", ["Two blue squares.", "two squares that are blue"]),
        ("日本の猫", ["a japanese cat", "日本の猫"]),
        ("!!!", ["Nothing."]),
    ],
    "single": [("a red circle on the left", ["A red circle is on the left."])],
}


VLMEVALKIT_COMMIT = "e8e78f05f3080fe28154f2130321f17951c3be94"  # 2026-08-18


def _stub_package(name: str) -> None:
    """Register ``name`` as a package without running its ``__init__`` (heavy imports)."""
    top = name.split(".")[0]
    if top in sys.modules:
        base = sys.modules[top].__path__[0]
    else:
        base = os.path.dirname(importlib.util.find_spec(top).origin)
    module = types.ModuleType(name)
    module.__path__ = [os.path.join(base, *name.split(".")[1:])]
    sys.modules[name] = module


def load_references() -> types.SimpleNamespace:
    """Import the reference functions from the lmms-eval wheel and the VLMEvalKit checkout."""
    for name in ["vlmeval", "vlmeval.dataset", "vlmeval.dataset.utils", "lmms_eval.api",
                 "lmms_eval.tasks", "lmms_eval.tasks._task_utils"]:
        _stub_package(name)
    registry = types.ModuleType("lmms_eval.api.registry")  # decorators only
    registry.register_metric = lambda **kw: (lambda fn: fn)
    registry.register_aggregation = lambda name: (lambda fn: fn)
    sys.modules["lmms_eval.api.registry"] = registry
    mod = importlib.import_module
    return types.SimpleNamespace(
        lmms_metrics=mod("lmms_eval.api.metrics"), lmms_vqav2=mod("lmms_eval.tasks.vqav2.utils"),
        lmms_chartqa=mod("lmms_eval.tasks.chartqa.utils"),
        lmms_vqa_proc=mod("lmms_eval.tasks._task_utils.vqa_eval_metric"),
        vlm_match=mod("vlmeval.utils.matching_util"),
        vlm_mc=mod("vlmeval.dataset.utils.multiple_choice"),
        vlm_vqa=mod("vlmeval.dataset.utils.vqa_eval"))


def _vlm_line(ref, prediction: str, answers: list[str], method: str) -> list:
    line = {"prediction": prediction, "answer": repr(answers)}
    return [float(x) for x in ref.vlm_vqa.process_line(line, method=method)["match"]]


def anls_values(ref) -> list[dict]:
    out = []
    for pred, answers in ANLS_CASES:
        lmms = ref.lmms_metrics.anls(list(answers), [pred])["anls"]
        match = _vlm_line(ref, pred, answers, "anls")
        vlm = ref.vlm_vqa.hit_calculate([{"match": match}], "DocVQA")[0]
        out.append({"prediction": pred, "answers": answers, "lmms_eval": float(lmms),
                    "vlmevalkit": float(vlm)})
    return out


def mc_values(ref) -> list[dict]:
    cases = [(p, MC_OPTIONS, "B") for p in MC_PREDICTIONS] + MC_EXTRA
    out = []
    for pred, options, gold in cases:
        choices = {chr(65 + i): o for i, o in enumerate(options)}
        inferred = ref.vlm_match.can_infer(pred, dict(choices))
        item = {"prediction": pred, "question": "Which shape?", "GT": gold, **choices}
        hit = ref.vlm_mc.eval_vanilla(None, item)["hit"]
        out.append({"prediction": pred, "options": options, "answers": [gold],
                    "can_infer": inferred or None, "hit": float(hit)})
    return out


def vqa_values(ref) -> dict:
    cases = []
    for pred, answers in VQA_CASES:
        doc = {"question_id": 0, "answers": [{"answer": a, "answer_id": i + 1}
                                             for i, a in enumerate(answers)]}
        lmms = ref.lmms_vqav2.vqav2_process_results(doc, [pred])["exact_match"]
        vlm = float(sum(_vlm_line(ref, pred, answers, "vqa_score")) / len(answers))
        cases.append({"prediction": pred, "answers": answers, "lmms_eval": float(lmms),
                      "vlmevalkit": vlm})
    proc = ref.lmms_vqa_proc.EvalAIAnswerProcessor()
    texts = VQA_TEXTS + sorted(proc.CONTRACTIONS)
    norm = []
    for text in texts:
        clean = text.replace("\n", " ").replace("\t", " ").strip()
        norm.append({"text": text, "lmms_eval": proc.process_digit_article(
            proc.process_punctuation(clean)), "vlmevalkit": ref.vlm_vqa.process_answer(text)})
    return {"cases": cases, "normalize": norm}


def relaxed_values(ref) -> list[dict]:
    out = []
    for pred, answers in RELAXED_CASES:
        lmms = max(bool(ref.lmms_chartqa.relaxed_correctness(pred, a)) for a in answers)
        match = _vlm_line(ref, pred, answers, "relaxed_accuracy")
        vlm = ref.vlm_vqa.hit_calculate([{"match": match}], "ChartQA")[0]
        out.append({"prediction": pred, "answers": answers, "lmms_eval": float(lmms),
                    "vlmevalkit": float(vlm)})
    return out


def exact_values(ref) -> list[dict]:
    return [{"prediction": p, "answers": a, "vlmevalkit": max(_vlm_line(ref, p, a, "accuracy"))}
            for p, a in EXACT_CASES]


def box_values() -> list[dict]:
    import torch
    from torchvision.ops import box_iou
    out = []
    for pred, gold in BOX_CASES:
        iou = box_iou(torch.tensor([pred], dtype=torch.float64),
                      torch.tensor([gold], dtype=torch.float64))[0, 0].item()
        out.append({"pred_box": pred, "gold_box": gold, "torchvision": None if iou != iou else iou})
    return out


def voxel_values() -> list[dict]:
    import numpy as np
    out = []
    for pred, gold in VOXEL_CASES:
        cells = np.array(pred + gold, dtype=int).reshape(-1, 3)
        low = cells.min(axis=0) if len(cells) else np.zeros(3, int)
        shape = tuple((cells.max(axis=0) - low + 1) if len(cells) else (1, 1, 1))
        grids = []
        for cell_list in (pred, gold):
            grid = np.zeros(shape, dtype=bool)
            for c in cell_list:
                grid[tuple(np.array(c) - low)] = True
            grids.append(grid)
        union = np.logical_or(*grids).sum()
        iou = None if union == 0 else float(np.logical_and(*grids).sum() / union)
        out.append({"pred": pred, "gold": gold, "numpy": iou})
    return out


def caption_values() -> dict:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    out = {}
    for set_name, cases in CAPTION_SETS.items():
        gts = {str(i): [{"caption": a} for a in refs] for i, (_, refs) in enumerate(cases)}
        res = {str(i): [{"caption": p}] for i, (p, _) in enumerate(cases)}
        gts, res = PTBTokenizer().tokenize(gts), PTBTokenizer().tokenize(res)
        corpus, per = {}, {}
        bleu, bleu_per = Bleu(4).compute_score(gts, res, verbose=0)
        for k in range(4):
            corpus[f"bleu{k + 1}"], per[f"bleu{k + 1}"] = bleu[k], list(bleu_per[k])
        for name, scorer in (("meteor", Meteor()), ("rouge_l", Rouge()), ("cider", Cider())):
            score, scores = scorer.compute_score(gts, res)
            corpus[name], per[name] = float(score), [float(s) for s in scores]
        out[set_name] = {"records": [{"prediction": p, "answers": a} for p, a in cases],
                         "corpus": {k: float(v) for k, v in corpus.items()},
                         "per_sample": {k: [float(x) for x in v] for k, v in per.items()}}
    return out


def versions(vlmevalkit: str) -> dict:
    names = ["lmms-eval", "pycocoevalcap", "torch", "torchvision", "numpy"]
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    commit = subprocess.run(["git", "-C", vlmevalkit, "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or VLMEVALKIT_COMMIT
    return {"python": sys.version.split()[0], "java": java.splitlines()[0],
            "vlmevalkit": commit, **{n: md.version(n) for n in names}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "tests/metrics/reference_values.json"))
    parser.add_argument("--vlmevalkit", required=True,
                        help=f"a VLMEvalKit checkout at commit {VLMEVALKIT_COMMIT}")
    args = parser.parse_args()
    sys.path.insert(0, args.vlmevalkit)
    ref = load_references()
    values = {"generated_by": "scripts/reference_metrics/compute_reference.py",
              "versions": versions(args.vlmevalkit), "anls": anls_values(ref), "mc_accuracy": mc_values(ref),
              "vqa_accuracy": vqa_values(ref), "relaxed_accuracy": relaxed_values(ref),
              "exact_match": exact_values(ref), "iou": box_values(), "voxel_iou": voxel_values(),
              "caption": caption_values()}
    Path(args.out).write_text(json.dumps(values, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
