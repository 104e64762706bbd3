"""The report's verdict: a few rule-based sentences that answer the design questions with numbers.

Why: a table of twelve columns does not say "LoRA is enough"; a reader wants that sentence,
and wants to see which numbers it rests on. Each rule below is a small function over
:class:`Entry` values (one per variant, for one task) and only claims a difference that is
beyond noise (:func:`vlmtune.report.stats.beyond_noise`: more than 2 standard errors of the
paired difference). Rules, in order:

1. best vs baseline: the best variant beats the untuned baseline, or nothing does; and
   whether anything beats the constant-answer prior (:mod:`vlmtune.evaluate.prior`), when measured;
2. few-shot: in-context examples vs the baseline, and whether any fine-tune beats them;
3. full vs LoRA/DoRA: full wins (LoRA falls short: rank, or optimisation), LoRA wins, or they tie;
4. rank: the highest LoRA rank vs the lowest;
5. QLoRA vs LoRA of the same (or nearest) rank, with the peak-memory ratio;
6. format compliance: falls of >= 0.05 against the baseline; any other compliance < 0.9;
7. forgetting: general-set drops against the baseline, or none beyond noise.

Rules 2-5 compare methods, and a comparison of variants that learned nothing says nothing
about the methods (session 4's demo: every grounding fine-tune below the constant answer,
yet "a low-rank update suffices"). A variant *learned the task* when it beats the untuned
baseline and the constant-answer prior beyond noise (each when measured; with neither
measured nothing can be said and the rules speak as before). A comparison's conclusion
stands only if the variant it credits learned the task (the winner, or in a tie the
cheaper one); otherwise it says "inconclusive: no variant learned the task", or names
the compared variants that did not.

Example:
    >>> base = Entry("baseline", "untuned", "untuned", score=0.25, scores=_flat(0.25, 50))
    >>> full = Entry("full", "full", "full", score=0.75, scores=_flat(0.75, 50))
    >>> verdict([base, full], "IoU", baseline="baseline")[0]
    'full scores best: IoU 0.75 vs 0.25 for the untuned baseline (+0.5, noise ±0).'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vlmtune.report.stats import Estimate, beyond_noise, difference

ADAPTERS = ("lora", "dora")
NOTHING_LEARNED = "inconclusive: no variant learned the task"
FORMAT_DROP = 0.05  # smallest compliance fall worth a sentence
FORMAT_FLOOR = 0.9  # without a baseline: compliance below this is flagged


@dataclass
class Entry:
    """One variant's numbers for one task (per-sample dicts are keyed by item id)."""

    name: str
    label: str
    kind: str  # untuned | shots | full | freeze | lora | dora | qlora | prior
    r: int | None = None
    score: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    compliance: float | None = None
    compliance_scores: dict[str, float] = field(default_factory=dict)
    general: float | None = None
    general_scores: dict[str, float] = field(default_factory=dict)
    peak_bytes: int | None = None
    trainable: int | None = None

    @property
    def trained(self) -> bool:
        return self.kind not in ("untuned", "shots", "prior")


def _flat(value: float, n: int) -> dict[str, float]:
    """``n`` items all scoring ``value`` (for examples and tests)."""
    return {f"i{k}": value for k in range(n)}


def num(x: float) -> str:
    """Three significant digits, no trailing zeros: 0.21, 0.613, 45.2."""
    return f"{x:.3g}"


def _noise(d: Estimate) -> str:
    return "noise unknown" if d.noise is None else f"noise ±{num(d.noise)}"


def _diff(a: Entry, b: Entry) -> Estimate:
    return difference(a.scores, b.scores, a_value=a.score, b_value=b.score)


def verdict(entries: list[Entry], metric: str, *, baseline: str | None = None,
            general_metric: str | None = None, prior: Entry | None = None) -> list[str]:
    """Sentences for one task; ``metric``/``general_metric`` are display names ("IoU");
    ``prior`` is the constant-answer prior's entry, when it was scored."""
    scored = [e for e in entries if e.score is not None]
    base = next((e for e in scored if e.name == baseline), None)
    out: list[str] = _vs_prior(scored, prior, metric)
    out += _vs_baseline(scored, base, metric)
    learnt = Learnt(scored, base, prior)
    for rule in (_few_shot, _full_vs_adapter, _rank, _qlora):
        out += rule(scored, base, metric, learnt)
    out += _format(entries, base)
    out += _forgetting(entries, base, general_metric or "metric")
    return out


class Learnt:
    """Which variants learned the task: beat the baseline and the prior beyond noise (those of
    the two measured item by item). ``known`` is False when neither was: then every variant counts."""

    def __init__(self, scored: list[Entry], base: Entry | None, prior: Entry | None):
        self.refs = [r for r in (base, prior) if r is not None and r.score is not None and r.scores]
        self.known = bool(self.refs)
        self.names = {e.name for e in scored if e not in self.refs and e.kind != "prior"
                      and all(_beats(e, r) for r in self.refs)}

    def __contains__(self, entry: Entry) -> bool:
        return not self.known or entry.name in self.names

    def refs_text(self) -> str:
        names = ["the untuned baseline" if r.kind != "prior" else "the constant-answer prior" for r in self.refs]
        return " and ".join(names)

    def gate(self, topic: str, credited: Entry, compared: list[Entry]) -> list[str] | None:
        """None when ``credited`` learned the task (the comparison may conclude); else the
        sentence that replaces the conclusion."""
        if credited in self:
            return None
        if not self.names:
            return [f"{topic}: {NOTHING_LEARNED} (none beats {self.refs_text()} beyond noise)."]
        failed = [e.label for e in compared if e not in self]
        return [f"{topic}: inconclusive: {' and '.join(failed)} did not learn the task (not beyond noise "
                f"above {self.refs_text()})."]


def _beats(a: Entry, b: Entry) -> bool:
    d = _diff(a, b)
    return d.value > 0 and beyond_noise(d)


def _best_against(candidates: list[Entry], ref: Entry) -> tuple[Entry, Estimate, bool]:
    """The best of ``candidates``, its difference from ``ref``, and whether it beats ``ref`` beyond noise."""
    best = max(candidates, key=lambda e: e.score)
    d = _diff(best, ref)
    return best, d, d.value > 0 and beyond_noise(d)


def _vs_baseline(scored: list[Entry], base: Entry | None, metric: str) -> list[str]:
    others = [e for e in scored if e is not base]
    if base is None or not others:
        return []
    best, d, beats = _best_against(others, base)
    if beats:
        return [f"{best.label} scores best: {metric} {num(best.score)} vs {num(base.score)} for the "
                f"untuned baseline (+{num(d.value)}, {_noise(d)})."]
    return [f"No variant beats the untuned baseline ({metric} {num(base.score)}) beyond noise; the best, "
            f"{best.label}, differs by {num(d.value)} ({_noise(d)})."]


def _vs_prior(scored: list[Entry], prior: Entry | None, metric: str) -> list[str]:
    """Whether the best variant knows more than the answer's format: a model that answers one
    constant to every item scores ``prior.score``."""
    if prior is None or prior.score is None or not scored:
        return []
    best, d, beats = _best_against(scored, prior)
    if beats:
        return [f"{best.label} beats a constant answer ({prior.label} to every item: {metric} "
                f"{num(prior.score)}) by {num(d.value)} ({_noise(d)})."]
    below = f", {num(-d.value)} below it" if d.value < 0 and beyond_noise(d) else ""
    return [f"No variant beats a constant answer: {prior.label} to every item scores {metric} "
            f"{num(prior.score)}; the best, {best.label}, scores {num(best.score)}{below} ({_noise(d)}). "
            + _format_tail(scored)]


def _format_tail(scored: list[Entry]) -> str:
    """What the variants learned if not the task; the untuned model is named only if the grid has one."""
    if _no_format_gain(scored):
        return "No fine-tune improved the answer's format either."
    if any(not e.trained for e in scored):
        return "What the variants gained over the untuned model is the answer's format, not the task."
    return "What the variants learned is at most the answer's format, not the task."


def _no_format_gain(scored: list[Entry]) -> bool:
    """Format compliance is known and no trained variant is above the untuned ones."""
    trained = [e.compliance for e in scored if e.trained and e.compliance is not None]
    untuned = [e.compliance for e in scored if not e.trained and e.compliance is not None]
    return bool(trained) and bool(untuned) and max(trained) <= max(untuned)


def _few_shot(scored: list[Entry], base: Entry | None, metric: str, learnt: Learnt) -> list[str]:
    shots = [e for e in scored if e.kind == "shots"]
    if not shots:
        return []
    best = max(shots, key=lambda e: e.score)
    out = []
    if base is not None:
        d = _diff(best, base)
        if d.value > 0 and beyond_noise(d):
            out.append(f"{best.label} prompting alone raises {metric} from {num(base.score)} to "
                       f"{num(best.score)} (+{num(d.value)}): try it before training.")
    trained = [e for e in scored if e.trained]
    if trained:
        top = max(trained, key=lambda e: e.score)
        d = _diff(top, best)
        credited = top if beyond_noise(d) and d.value > 0 else best
        gated = learnt.gate(f"Fine-tuning vs {best.label} prompting", credited, [top, best])
        if gated:
            out += gated
        elif not beyond_noise(d):
            out.append(f"No fine-tune beats {best.label} prompting beyond noise ({top.label} "
                       f"{num(top.score)} vs {num(best.score)}, {_noise(d)}): in-context examples may be enough.")
        elif d.value > 0:
            out.append(f"{top.label} beats {best.label} prompting by {num(d.value)} {metric}: "
                       "training pays off over in-context examples.")
    return out


def _full_vs_adapter(scored: list[Entry], base: Entry | None, metric: str, learnt: Learnt) -> list[str]:
    fulls = [e for e in scored if e.kind == "full"]
    adapters = [e for e in scored if e.kind in ADAPTERS]
    if not fulls or not adapters:
        return []
    full = max(fulls, key=lambda e: e.score)
    ad = max(adapters, key=lambda e: e.score)
    d = _diff(full, ad)
    gated = learnt.gate(f"{full.label} vs {ad.label}", full if beyond_noise(d) and d.value > 0 else ad, [full, ad])
    if gated:
        return gated
    if beyond_noise(d) and d.value > 0:
        return [f"{full.label} beats {ad.label} by {num(d.value)} {metric} ({_noise(d)}): {ad.label} falls short; "
                "if the task is high-rank, a higher r or adapters on more modules help, else keep full "
                "fine-tuning (a rank-need line, where measured, says whether rank is the reason)."]
    if beyond_noise(d):
        return [f"{ad.label} beats {full.label} by {num(-d.value)} {metric} ({_noise(d)}): full "
                "fine-tuning may overfit or need a lower learning rate."]
    share = ""
    if ad.trainable and full.trainable:
        share = f", training {num(100 * ad.trainable / full.trainable)}% of the parameters {full.label} trains"
    return [f"{ad.label} is within noise of {full.label} ({num(ad.score)} vs {num(full.score)}{share}): "
            "a low-rank update suffices."]


def _rank(scored: list[Entry], base: Entry | None, metric: str, learnt: Learnt) -> list[str]:
    loras = sorted((e for e in scored if e.kind == "lora" and e.r), key=lambda e: e.r)
    if len({e.r for e in loras}) < 2:
        return []
    low, high = loras[0], loras[-1]
    d = _diff(high, low)
    gated = learnt.gate(f"LoRA rank r={low.r} vs r={high.r}", high if beyond_noise(d) and d.value > 0 else low,
                        [low, high])
    if gated:
        return gated
    if beyond_noise(d) and d.value > 0:
        return [f"Raising the LoRA rank from r={low.r} to r={high.r} gains {num(d.value)} {metric} "
                f"({_noise(d)})."]
    if beyond_noise(d):
        return [f"{low.label} beats {high.label} by {num(-d.value)} {metric}: a higher rank did not help."]
    return [f"{low.label} is within noise of {high.label} ({num(low.score)} vs {num(high.score)}): "
            "rank is not the bottleneck."]


def _qlora(scored: list[Entry], base: Entry | None, metric: str, learnt: Learnt) -> list[str]:
    loras = [e for e in scored if e.kind == "lora"]
    out = []
    for q in (e for e in scored if e.kind == "qlora"):
        if not loras:
            break
        ref = min(loras, key=lambda e: (abs((e.r or 0) - (q.r or 0)), -(e.r or 0)))
        d = _diff(q, ref)
        gated = learnt.gate(f"{q.label} vs {ref.label}", ref if beyond_noise(d) and d.value < 0 else q, [q, ref])
        if gated:
            out += gated
            continue
        memory = ""
        if q.peak_bytes and ref.peak_bytes:
            memory = f" at {q.peak_bytes / ref.peak_bytes:.0%} of its peak memory"
        if not beyond_noise(d):
            out.append(f"{q.label} is within noise of {ref.label} ({num(q.score)} vs {num(ref.score)}){memory}.")
        elif d.value < 0:
            out.append(f"{q.label} loses {num(-d.value)} {metric} against {ref.label} ({_noise(d)}){memory}.")
        else:
            out.append(f"{q.label} beats {ref.label} by {num(d.value)} {metric} ({_noise(d)}){memory}.")
    return out


def _format(entries: list[Entry], base: Entry | None) -> list[str]:
    out, low = [], []
    for e in entries:
        if e.compliance is None:
            continue
        if e is not base and base is not None and base.compliance is not None:
            d = difference(e.compliance_scores, base.compliance_scores,
                           a_value=e.compliance, b_value=base.compliance)
            if -d.value >= FORMAT_DROP and beyond_noise(d):
                out.append(f"Format compliance fell from {num(base.compliance)} to {num(e.compliance)} "
                           f"for {e.label}.")
                continue
        if e.compliance < FORMAT_FLOOR:
            low.append(f"{e.label} ({num(e.compliance)})")
    if low:
        out.append(f"Format compliance is below {FORMAT_FLOOR:g} for {', '.join(low)}: answers often "
                   "miss the expected format.")
    return out


def _forgetting(entries: list[Entry], base: Entry | None, metric: str) -> list[str]:
    if base is None or base.general is None:
        return []
    measured = [e for e in entries if e is not base and e.general is not None]
    out = []
    for e in measured:
        d = difference(e.general_scores, base.general_scores, a_value=e.general, b_value=base.general)
        if d.value < 0 and beyond_noise(d):
            out.append(f"{e.label} forgets: general {metric} fell by {num(-d.value)} "
                       f"({num(base.general)} -> {num(e.general)}, {_noise(d)}).")
    if measured and not out:
        out.append(f"No variant loses general ability beyond noise (general {metric}, "
                   f"baseline {num(base.general)}).")
    return out
