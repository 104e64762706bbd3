"""Caption metrics BLEU-1..4, METEOR, ROUGE-L and CIDEr, computed by pycocoevalcap itself.

Why: COCO-style caption scores depend on every detail (Stanford PTB tokenisation,
BLEU's "closest" reference length, CIDEr-D's document frequencies over the evaluated
set, METEOR 1.5's paraphrase tables), so we call the reference, pycocoevalcap 1.2, rather
than re-implement it. It is an optional dependency (``pip install pycocoevalcap``,
extra ``vlmtune[eval]``) imported only here and only when a caption metric is asked for;
its tokenizer and METEOR run Java (``java`` on PATH).

These are corpus metrics: the summary is pycocoevalcap's corpus score (BLEU from pooled
n-gram counts, METEOR from pooled statistics, CIDEr with document frequencies of the
scored set, so a set of one caption scores CIDEr 0); per-sample values are the per-image
scores pycocoevalcap returns (for CIDEr they depend on the rest of the set).

Input clean-up before the reference sees the text (deliberate, see docs/metrics.md):
every line break (``str.splitlines`` separators, e.g. ``\\r``, ``\\u2028``) becomes a
space, since the tokenizer reads one caption per line and would misalign the rest of the
set; and ``|||`` (METEOR's field separator) is removed from references too.

Example (needs pycocoevalcap and Java):
    >>> recs = [{"prediction": "a red circle", "answers": ["a red circle", "red ball"]}]
    >>> compute(recs, ("bleu1",))[0]  # doctest: +SKIP
    {'bleu1': 0.99999999...}
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tempfile

from .base import MissingDependencyError, PerSample, Summary, select
# Function-level imports: pycocoevalcap is optional (the eval extra) and needs Java.

BLEU = ("bleu1", "bleu2", "bleu3", "bleu4")
# Stanford PTBLexer logs each character it drops (two lines: a java.util.logging header
# naming PTBLexer, then "WARNING: Untokenizable: ...") and a speed line; they say nothing
# about the scores, so they are dropped from eval/compare output. Anything else passes.
_JAVA_NOISE = ("edu.stanford.nlp.process.PTBLexer", "Untokenizable:", "PTBTokenizer tokenized")
NAMES = BLEU + ("meteor", "rouge_l", "cider")


def _clean(text: str) -> str:
    return " ".join(text.splitlines()).replace("|||", "")


def _require():
    """Import pycocoevalcap's scorers, or explain what is missing."""
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.meteor.meteor import Meteor
        from pycocoevalcap.rouge.rouge import Rouge
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    except ImportError as err:
        raise MissingDependencyError(
            "caption metrics (bleu1-4, meteor, rouge_l, cider) need pycocoevalcap: "
            "pip install pycocoevalcap  (or the vlmtune[eval] extra)") from err
    if shutil.which("java") is None:
        raise MissingDependencyError(
            "caption metrics (bleu1-4, meteor, rouge_l, cider) need Java: pycocoevalcap's "
            "PTB tokenizer and METEOR are Java programs, and no `java` is on PATH. Install a "
            "Java runtime (e.g. `apt-get install default-jre-headless`).")
    return PTBTokenizer, Bleu, Meteor, Rouge, Cider


@contextlib.contextmanager
def _filtered_stderr():
    """Route file descriptor 2 (inherited by the Java subprocess) through a filter."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines()
                    if line.strip() and not any(mark in line for mark in _JAVA_NOISE)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")


def _tokenize(tokenizer_cls, records: list[dict]) -> tuple[dict, dict]:
    """One Java run for references and predictions: keys ``"g<i>"`` / ``"r<i>"``."""
    both = {}
    for i, rec in enumerate(records):
        both[f"g{i}"] = [{"caption": _clean(a)} for a in rec["answers"]]
        both[f"r{i}"] = [{"caption": _clean(rec["prediction"])}]
    with _filtered_stderr():
        tokens = tokenizer_cls().tokenize(both)
    gts = {str(i): tokens[f"g{i}"] for i in range(len(records))}
    res = {str(i): tokens[f"r{i}"] for i in range(len(records))}
    return gts, res


def _meteor(meteor_cls, gts: dict, res: dict) -> tuple[float, list[float]]:
    scorer = meteor_cls()
    try:
        score, scores = scorer.compute_score(gts, res)
    finally:
        del scorer  # its __del__ ends the Java process
    return float(score), [float(s) for s in scores]


def compute(records: list[dict], names: tuple[str, ...]) -> tuple[Summary, PerSample]:
    """Family function: the requested caption metrics, corpus summary and per-sample."""
    tokenizer_cls, bleu_cls, meteor_cls, rouge_cls, cider_cls = _require()
    gts, res = _tokenize(tokenizer_cls, records)
    summary: Summary = {}
    columns: dict[str, list[float]] = {}
    if any(n in BLEU for n in names):
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its n-gram counts
            corpus, per = bleu_cls(4).compute_score(gts, res, verbose=0)
        for k, name in enumerate(BLEU):
            summary[name], columns[name] = float(corpus[k]), [float(s) for s in per[k]]
    if "meteor" in names:
        summary["meteor"], columns["meteor"] = _meteor(meteor_cls, gts, res)
    for name, cls in (("rouge_l", rouge_cls), ("cider", cider_cls)):
        if name in names:
            corpus, per = cls().compute_score(gts, res)
            summary[name], columns[name] = float(corpus), [float(s) for s in per]
    per_sample = [{name: col[i] for name, col in columns.items()} for i in range(len(records))]
    return select(summary, per_sample, names)
