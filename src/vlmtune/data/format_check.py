"""Find train/eval format mismatches before they cost a training run.

Why: a fine-tune learns the *format* of its answers first. If the training set answers
multiple choice with the option text and the test set expects a letter, or closes its
prompts with another instruction, or has other image sizes, the tuned model can look
worse than the base for reasons that have nothing to do with the task. This compares two
canonical JSONL files per task on:

* closing instruction line of the last user turn (the "Answer with the option's letter…"
  line), the most common one per side;
* answer type: ``letter`` / ``option text`` / ``box`` / ``number`` / ``voxels`` / ``free
  text``, with the parsers of :mod:`vlmtune.metrics.compliance` (what the metric parses);
* answer length (whitespace tokens, median);
* images per sample and their resolution (median width x height, read from file headers);
* with a model: the chat template rendered for one sample of each side.

Example:
    >>> findings = check_format("train.jsonl", "test.jsonl")   # doctest: +SKIP
    >>> findings[0].message                                       # doctest: +SKIP
    "task mc: train answers are option text in 100% of samples; eval expects letter in 100%"
"""

from __future__ import annotations

import re
import statistics
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from vlmtune.data.findings import Finding
from vlmtune.data.format_template import compare_templates
from vlmtune.data.schema import Sample, load_samples, text_of
from vlmtune.errors import DataError
from vlmtune.metrics.compliance import FORMATS
# Function-level imports: PIL loads only when image sizes are read.

SEVERITIES = ("error", "warning", "info")
_LETTER = re.compile(r"^\(?([A-H])\)?[.:)]?$")
MAX_IMAGES_READ = 200  # image headers read per file (sizes), enough for a median


def answer_type(sample: Sample) -> str:
    """The answer's type, as the metrics would parse it (first reference answer)."""
    answer = (sample.answers[0] if sample.answers else _assistant_text(sample)).strip()
    if sample.options and _norm(answer) in {_norm(o) for o in sample.options}:
        return "option text"
    if _LETTER.match(answer) or (len(answer.split()) <= 2 and FORMATS["letter"](answer) and len(answer) <= 4):
        return "letter"
    for name in ("box", "number", "voxels"):
        if FORMATS[name](answer):
            return name
    return "free text" if answer else "empty"


def closing_instruction(sample: Sample) -> str:
    """The last non-empty line of the last user turn's text."""
    users = [m for m in sample.prompt_messages if m["role"] == "user"]
    lines = [ln.strip() for ln in (text_of(users[-1]) if users else "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _assistant_text(sample: Sample) -> str:
    turns = [m for m in sample.messages if m["role"] == "assistant"]
    return text_of(turns[-1]) if turns else ""


def _norm(text: str) -> str:
    return " ".join(text.lower().strip().rstrip(".").split())


def _answer(sample: Sample) -> str:
    return sample.answers[0] if sample.answers else _assistant_text(sample)


def _share(counter: Counter) -> tuple[str, float]:
    value, count = counter.most_common(1)[0]
    return value, count / sum(counter.values())


def _example(side: str, sample: Sample, text: str) -> dict[str, str]:
    return {"side": side, "id": sample.id, "where": sample.where, "text": text[:200]}


def _first(samples: list[Sample], pred) -> Sample:
    return next(s for s in samples if pred(s))


def _compare_types(task: str, train: list[Sample], test: list[Sample]) -> list[Finding]:
    a, b = Counter(map(answer_type, train)), Counter(map(answer_type, test))
    (ta, pa), (tb, pb) = _share(a), _share(b)
    if ta == tb:
        return []
    severity = "error" if pa >= 0.8 and pb >= 0.8 else "warning"
    ex = [_example("train", s := _first(train, lambda x: answer_type(x) == ta), _answer(s)),
          _example("eval", s := _first(test, lambda x: answer_type(x) == tb), _answer(s))]
    return [Finding(severity, task, "answer_type", f"task {task}: train answers are {ta} in {pa:.0%} of samples; "
                                                  f"eval expects {tb} in {pb:.0%}", ex)]


def _compare_instructions(task: str, train: list[Sample], test: list[Sample]) -> list[Finding]:
    a, b = Counter(map(closing_instruction, train)), Counter(map(closing_instruction, test))
    (ia, pa), (ib, pb) = _share(a), _share(b)
    if ia == ib or (pa < 0.5 and pb < 0.5):  # no common phrasing on either side: free-form prompts
        return []
    ex = [_example("train", _first(train, lambda x: closing_instruction(x) == ia), ia),
          _example("eval", _first(test, lambda x: closing_instruction(x) == ib), ib)]
    return [Finding("warning", task, "instruction", f"task {task}: train prompts end with {ia!r} ({pa:.0%}); "
                                                    f"eval prompts end with {ib!r} ({pb:.0%})", ex)]


def _compare_lengths(task: str, train: list[Sample], test: list[Sample]) -> list[Finding]:
    la = statistics.median(len(_answer(s).split()) for s in train)
    lb = statistics.median(len(_answer(s).split()) for s in test)
    if max(la, lb) <= 3 or 0.5 <= (la + 1) / (lb + 1) <= 2:
        return []
    ex = [_example("train", s := min(train, key=lambda x: abs(len(_answer(x).split()) - la)), _answer(s)),
          _example("eval", s := min(test, key=lambda x: abs(len(_answer(x).split()) - lb)), _answer(s))]
    return [Finding("warning", task, "answer_length", f"task {task}: median answer length is {la:g} words in train, "
                                                      f"{lb:g} in eval", ex)]


def _image_stats(samples: list[Sample]) -> tuple[float, tuple[int, int] | None]:
    from PIL import Image

    counts = [len(s.images) for s in samples]
    sizes = []
    for path in [p for s in samples for p in s.images][:MAX_IMAGES_READ]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as img:  # the header only: the size, never the pixels
                    sizes.append(img.size)
        except (OSError, ValueError, Image.DecompressionBombError):  # unreadable (PIL raises ValueError on some bad headers): not counted
            continue
    size = (int(statistics.median(w for w, _ in sizes)), int(statistics.median(h for _, h in sizes))) if sizes else None
    return statistics.mean(counts), size


def _compare_images(task: str, train: list[Sample], test: list[Sample]) -> list[Finding]:
    (ca, sa), (cb, sb) = _image_stats(train), _image_stats(test)
    out = []
    if abs(ca - cb) >= 0.5:
        out.append(Finding("warning", task, "images", f"task {task}: {ca:.2g} images per sample in train, "
                                                      f"{cb:.2g} in eval"))
    if sa and sb and not 0.5 <= (sa[0] * sa[1]) / (sb[0] * sb[1]) <= 2:
        out.append(Finding("warning", task, "resolution", f"task {task}: median image size {sa[0]}x{sa[1]} in "
                                                          f"train, {sb[0]}x{sb[1]} in eval (pixel area differs "
                                                          "more than 2x: different image token counts)"))
    return out


CHECKS = (_compare_types, _compare_instructions, _compare_lengths, _compare_images)


def _by_task(samples: list[Sample]) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        out[s.task or "(none)"].append(s)
    return out


def check_format(train: str | Path, test: str | Path, model: str | None = None, *,
                 root: str | Path | None = None, allow_outside_root: bool = False) -> list[Finding]:
    """All findings, most severe first. ``model``: a model dir / zoo name whose chat
    template is rendered for one sample per side. ``root``/``allow_outside_root``: as
    ``data.root``/``data.allow_outside_root``, so the check reads what training reads."""
    load = dict(root=root, allow_outside_root=allow_outside_root, require_answer=False)
    a, b = _by_task(load_samples(train, **load)), _by_task(load_samples(test, **load))
    pairs = [(t, t, t) for t in sorted(set(a) & set(b))]
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if len(only_a) == 1 and len(only_b) == 1:  # e.g. train mc_text vs eval mc: the same task renamed
        pairs.append((f"{only_a[0]} (train) vs {only_b[0]} (eval)", only_a[0], only_b[0]))
        only_a = only_b = []
    findings = [Finding("info", t, "tasks", f"task {t}: only in {side}")
                for side, names in (("train", only_a), ("eval", only_b)) for t in names]
    for label, ta, tb in pairs:
        for check in CHECKS:
            findings += check(label, a[ta], b[tb])
    if model is not None:
        findings += compare_templates(model, a, b)
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def warn_format_mismatch(cfg: Any, print_fn=print) -> list[Finding]:
    """Print format-mismatch warnings for a run config's train vs eval data; never raises.

    Why: ``train`` and ``compare`` call it first, so a drift (option text vs letter) is
    seen before hours of training, not after.

    Example:
        >>> warn_format_mismatch(cfg)   # doctest: +SKIP
        warning: task mc: train answers are option text in 100% of samples; eval expects letter in 100%
    """
    try:
        test = cfg.eval.test or cfg.data.val
        if not cfg.data.train or not test:
            return []
        findings = [f for f in check_format(cfg.data.train, test, root=cfg.data.root,
                                            allow_outside_root=cfg.data.allow_outside_root)
                    if f.severity != "info"]
        for f in findings:
            print_fn(f"format check {f.severity}: {f.message} (vlmtune data check for examples)")
        return findings
    except Exception as err:  # a diagnostic must never stop training
        loaded_by_training = {Path(p) for p in (cfg.data.train, cfg.data.val) if p}
        if not (isinstance(err, DataError) and err.file is not None and Path(err.file) in loaded_by_training):
            print_fn(f"note: format check skipped ({type(err).__name__}: {err})")
        # else: training loads that file next and stops with this very error, printed once
        return []
