"""A lesson's finding: the sentences a lesson grid's report opens its verdict with.

Why: the general verdict (:mod:`.verdict`) answers the design questions for any grid, but a
lesson (``vlmtune demo --lesson NAME``, :mod:`vlmtune.zoo.lessons`) reproduces one finding of
the field, and its reader wants that finding said in its own words with the numbers, or
told plainly that the numbers do not show it. Each rule here reads the grid's variants by
the names its shipped grid gives them (listed in ``ROLES``), and claims a difference only
beyond noise (:func:`~vlmtune.report.stats.beyond_noise`, 2 standard errors of the paired
difference). A grid names its lesson with the top-level key ``lesson:``; a missing role
gives one sentence saying so, never a guess.

Example:
    >>> sorted(FINDINGS)
    ['budget', 'forgetting', 'format-drift', 'rank', 'vision-bottleneck']
"""

from __future__ import annotations

from typing import Callable

from vlmtune.report.read import RunData
from vlmtune.report.stats import Estimate, beyond_noise, difference
from vlmtune.report.summary import GridView, display
from vlmtune.report.verdict import Entry, Learnt, num
from vlmtune.report.vision import probe
# Function-level imports: the format check and the rank thresholds load only when their lesson renders.

# The variant names each lesson's finding reads (its shipped grid defines them).
ROLES = {
    "format-drift": ("baseline", "text-answers", "converted"),
    "forgetting": ("baseline", "mix-0", "mix-0.3"),
    "vision-bottleneck": ("baseline", "frozen-vision", "full-vision"),
    "rank": ("baseline", "full"),  # plus every LoRA variant of the grid (the sweep)
    "budget": ("baseline", "large-lora", "small-full"),
}
SAME_BUDGET = 1.25  # planned memories within this ratio count as one budget


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _noise(d: Estimate) -> str:
    return "noise unknown" if d.noise is None else f"noise ±{num(d.noise)}"


def _diff(a: Entry, b: Entry) -> Estimate:
    return difference(a.scores, b.scores, a_value=a.score, b_value=b.score)


def _general_diff(a: Entry, b: Entry) -> Estimate:
    return difference(a.general_scores, b.general_scores, a_value=a.general, b_value=b.general)


def _real(d: Estimate) -> bool:
    return beyond_noise(d)


def _entries(view: GridView) -> tuple[str | None, dict[str, Entry]]:
    task = view.tasks[0] if view.tasks else None
    return task, ({e.name: e for e in view.entries[task]} if task else {})


def _missing(lesson: str, have: dict[str, Entry], need: tuple[str, ...]) -> list[str]:
    gone = [n for n in need if n not in have or have[n].score is None]
    if not gone:
        return []
    return [f"no finding: variant(s) {', '.join(gone)} not evaluated."]


def _run(view: GridView, name: str) -> RunData | None:
    return next((r for r in view.runs if r.name == name), None)


def _summary_value(view: GridView, name: str, task: str, metric: str) -> float | None:
    run = _run(view, name)
    value = run.task_summary(task).get(metric) if run else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def format_drift(view: GridView) -> list[str]:
    """Trained on option text, tested on letters: the letter answers collapse although the
    content may be right; the training set converted to letters restores them."""
    task, by = _entries(view)
    gone = _missing("format-drift", by, ROLES["format-drift"])
    if gone:
        return gone
    base, text, conv = (by[n] for n in ROLES["format-drift"])
    metric = display(view.metric[task])
    d = _diff(text, base)
    head = (f"Trained on option text, tested on letters: {metric} {num(base.score)} -> {num(text.score)} "
            f"({'+' if d.value >= 0 else ''}{num(d.value)}, {_noise(d)})")
    if not (_real(d) and d.value < 0):
        out = [head + ": no collapse beyond noise, the format drift did not show here."]
    else:
        out = [head + _compliance(base, text) + _content(view, task, text.score) + "."]
    out += _converted(base, text, conv, metric)
    out += _flagged(view)
    return out


def _compliance(base: Entry, text: Entry) -> str:
    if base.compliance is None or text.compliance is None:
        return ""
    return f"; answers in the letter format {_pct(base.compliance)} -> {_pct(text.compliance)}"


def _content(view: GridView, task: str, strict: float) -> str:
    """VLMEvalKit's extraction also reads an option's text: how many answers were right in content."""
    if view.metric[task] == "mc_accuracy":
        return ""
    b, t = (_summary_value(view, n, task, "mc_accuracy") for n in ("baseline", "text-answers"))
    if b is None or t is None:
        return ""
    tail = (f": {num(t - strict)} of the items were answered right in the wrong format" if t > strict else "")
    return f"; VLMEvalKit's extraction, which also matches an option's text, scores {num(t)} (baseline {num(b)}){tail}"


def _converted(base: Entry, text: Entry, conv: Entry, metric: str) -> list[str]:
    d = _diff(conv, text)
    if not (_real(d) and d.value > 0):
        return [f"The converted training set (answers as letters) scores {metric} {num(conv.score)} vs "
                f"{num(text.score)} with option text ({_noise(d)}): no repair beyond noise."]
    vs_base = _diff(conv, base)
    where = ("back to the untuned level" if not _real(vs_base) else
             f"{'above' if vs_base.value > 0 else 'below'} the untuned {num(base.score)} by {num(abs(vs_base.value))}")
    return [f"The converted training set (same items, answers as letters) restores {metric} "
            f"{num(conv.score)} (+{num(d.value)} over option text, {_noise(d)}), {where}."]


def _flagged(view: GridView) -> list[str]:
    from vlmtune.report.diagnostics import format_findings

    found = [f for f in format_findings(view) if "text-answers" in f.get("variants", [])
             and f["severity"] == "error"]
    if not found:
        return ["vlmtune data check raised no error for the option-text training set."]
    return [f"vlmtune data check flags it before training: {found[0]['message']}."]


def forgetting(view: GridView) -> list[str]:
    """mix_general 0 vs the largest share: how much of the general drop mixing removes."""
    task, by = _entries(view)
    gone = _missing("forgetting", by, ROLES["forgetting"])
    if gone:
        return gone
    base, none, mixed = (by[n] for n in ROLES["forgetting"])
    if base.general is None or none.general is None or mixed.general is None:
        return ["no finding: the general set was not scored."]
    metric = display(view.general_metric)
    share = _run(view, mixed.name).config.data.mix_general
    drop0, drop1 = _general_diff(none, base), _general_diff(mixed, base)
    head = (f"Fine-tuning on {task} alone moves general {metric} {num(base.general)} -> {num(none.general)} "
            f"({num(drop0.value)}, {_noise(drop0)})")
    if not (_real(drop0) and drop0.value < 0):
        return [head + ": no forgetting beyond noise, so there is no drop for mixing to shrink."]
    gain = _general_diff(mixed, none)
    mixed_text = (f"with {_pct(share)} general data mixed back in it moves to {num(mixed.general)} "
                  f"({num(drop1.value)})")
    if not (_real(gain) and gain.value > 0):
        return [f"{head}; {mixed_text}: the drop does not shrink beyond noise "
                f"({'+' if gain.value >= 0 else ''}{num(gain.value)}, {_noise(gain)})."]
    left = ("removed: no drop beyond noise is left" if not (_real(drop1) and drop1.value < 0)
            else f"reduced, not removed: {num(-drop1.value)} of it is left")
    return [f"{head}; {mixed_text}: the drop shrinks by {num(gain.value)} ({_pct(gain.value / -drop0.value)} "
            f"of it, {_noise(gain)}), {left}." + _task_cost(view, none, mixed)]


def _task_cost(view: GridView, none: Entry, mixed: Entry) -> str:
    d = _diff(mixed, none)
    metric = display(view.metric[view.tasks[0]])
    if not _real(d):
        return f" The task's {metric} is within noise ({num(none.score)} vs {num(mixed.score)})."
    return (f" The task's {metric} {'rises' if d.value > 0 else 'falls'} {num(none.score)} -> {num(mixed.score)} "
            f"({_noise(d)}).")


def vision_bottleneck(view: GridView) -> list[str]:
    """Frozen-vision LoRA vs training the tower on a task the base tower cannot resolve."""
    task, by = _entries(view)
    gone = _missing("vision-bottleneck", by, ROLES["vision-bottleneck"])
    if gone:
        return gone
    base, frozen, tower = (by[n] for n in ROLES["vision-bottleneck"])
    metric = display(view.metric[task])
    d_frozen, d_tower = _diff(frozen, base), _diff(tower, frozen)
    prior = view.prior.get(task)
    learnt = Learnt([e for e in by.values() if e.score is not None], base, prior)
    change = f"{metric} {num(base.score)} -> {num(frozen.score)} ({_noise(d_frozen)})"
    lead = "LoRA on the language model with the vision tower frozen"
    if _real(d_frozen) and d_frozen.value > 0 and frozen in learnt:
        first = f"{lead} helps: {change}"
    elif _real(d_frozen) and d_frozen.value > 0:
        first = (f"{lead}: {change}, above the untuned model but not beyond a constant answer, "
                 f"{prior.label}, at {num(prior.score)}: it does not learn the task" if prior is not None
                 and prior.score is not None else f"{lead}: {change}")
    else:
        first = f"{lead} does not help beyond noise: {change}"
    if _real(d_tower) and d_tower.value > 0 and tower not in learnt:
        second = (f"training the tower too reaches {num(tower.score)} (+{num(d_tower.value)} over frozen, "
                  f"{_noise(d_tower)}) but does not beat {learnt.refs_text()} beyond noise: inconclusive, "
                  "it did not learn the task")
    elif _real(d_tower) and d_tower.value > 0:
        second = (f"training the tower too reaches {num(tower.score)} (+{num(d_tower.value)} over frozen, "
                  f"{_noise(d_tower)}{_floor(prior)}): the frozen tower was the bottleneck")
    elif _real(d_tower):
        second = f"training the tower too scores lower, {num(tower.score)} ({_noise(d_tower)})"
    else:
        second = (f"training the tower too gives {num(tower.score)}, within noise of frozen ({_noise(d_tower)}): "
                  "the tower is not shown to be the bottleneck")
    out = [f"{first}; {second}."]
    result = probe(_run(view, tower.name)) or {}
    sentence = ((result.get("tasks") or {}).get(task) or {}).get("verdict")
    if sentence:
        caveat = "" if tower in learnt else (f" (read with care: {tower.name} did not beat {learnt.refs_text()} "
                                             "beyond noise, so the gain it attributes is not a learned task)")
        out.append(f"vlmtune diagnose vision on {tower.name}: {sentence.rstrip('.')}{caveat}.")
    return out


def _floor(prior: Entry | None) -> str:
    """The constant answer's score, so a gain beyond noise is read against the task's floor."""
    return "" if prior is None or prior.score is None else f"; a constant answer scores {num(prior.score)}"


def rank(view: GridView) -> list[str]:
    """The rank-need curve of the full fine-tune against the LoRA rank sweep: where the sweep
    saturates (smallest r within noise of the best LoRA) vs where the curve says r suffices."""
    task, by = _entries(view)
    gone = _missing("rank", by, ROLES["rank"])
    loras = sorted((e for e in by.values() if e.kind == "lora" and e.r and e.score is not None), key=lambda e: e.r)
    if gone or len(loras) < 2:
        return gone or ["no finding: fewer than two LoRA ranks were evaluated."]
    metric = display(view.metric[task])
    curve = "; ".join(f"r={e.r} {num(e.score)}" for e in loras)
    need = _need(_run(view, "full"))
    shares = f"; share of the full update's energy a rank-r approximation keeps: {_curve(need[1])}" if need else ""
    out = [f"LoRA rank sweep, {metric}: {curve}; full {num(by['full'].score)}{shares}."]
    learnt = Learnt([e for e in by.values() if e.score is not None], by["baseline"], view.prior.get(task))
    if not any(e in learnt for e in loras) or by["full"] not in learnt:
        return out + [f"Rank need vs sweep: inconclusive: {_who_failed(loras, by['full'], learnt)} "
                      "so neither the sweep nor the update's rank says what the task needs."]
    best = max(loras, key=lambda e: e.score)
    saturated = next(e for e in loras if not (_real(d := _diff(best, e)) and d.value > 0))
    if need is None:
        return out + [f"The sweep saturates at r={saturated.r}; the full variant has no rank analysis to compare."]
    predicted, energies = need
    said = f"at r={predicted}" if predicted else f"only above r={max(int(k) for k in energies)}"
    top = loras[-1].r
    if saturated.r == top:  # every lower rank is below the best beyond noise: no plateau inside the sweep
        sweep = f"The sweep has not saturated by r={top} (every lower rank is below it beyond noise)"
        agree = predicted is None or predicted >= top
    else:
        sweep = (f"The sweep saturates at r={saturated.r} (smallest rank within noise of the best, "
                 f"{best.label} {num(best.score)})")
        agree = predicted is not None and abs(_log2(predicted) - _log2(saturated.r)) <= 1
    return out + [f"{sweep}; the rank-need curve reaches 90% of the full update's energy {said}: "
                  + ("the measured rank need predicts this (within a factor of 2)." if agree else
                     "the measured rank need does not predict where the sweep saturates.")]


def _who_failed(loras: list[Entry], full: Entry, learnt: Learnt) -> str:
    if not learnt.names:
        return f"no variant learned the task (none beats {learnt.refs_text()} beyond noise),"
    failed = [e.label for e in [*loras, full] if e not in learnt]
    return f"{', '.join(failed)} did not learn the task (not beyond noise above {learnt.refs_text()}),"


def _need(run: RunData | None) -> tuple[int | None, dict[str, float]] | None:
    from vlmtune.report.diagnostics import high_energy, rank_need

    data = rank_need(run) if run is not None else None
    if not data:
        return None
    energies = data["median_energy"]
    reached = [int(k) for k, v in energies.items() if v >= high_energy()]
    return (min(reached) if reached else None), energies


def _curve(energies: dict[str, float]) -> str:
    return ", ".join(f"r={k} {_pct(v)}" for k, v in sorted(energies.items(), key=lambda kv: int(kv[0])))


def _log2(r: int) -> float:
    import math

    return math.log2(r)


def budget(view: GridView) -> list[str]:
    """One memory budget: the larger model with LoRA vs the smaller one fully fine-tuned, each
    variant's planned training memory (``vlmtune plan`` on its run config) stated beside its score."""
    task, by = _entries(view)
    gone = _missing("budget", by, ROLES["budget"])
    if gone:
        return gone
    large, small = by["large-lora"], by["small-full"]
    metric = display(view.metric[task])
    mem = {e.name: _planned(_run(view, e.name)) for e in (large, small)}
    head = (f"Planned training memory (weights, gradients, optimizer state, activations; `vlmtune plan`): "
            f"{_mem(large, mem[large.name])}, {_mem(small, mem[small.name])}")
    known = [m for m in mem.values() if m]
    if len(known) == 2 and max(known) / min(known) > SAME_BUDGET:
        head += f": {max(known) / min(known):.2f}x apart, not one budget, so the comparison below is not the lesson's"
    scores = (f"{metric}: {large.label} ({_model(view, large)}) {num(large.score)}, "
              f"{small.label} ({_model(view, small)}) {num(small.score)}")
    learnt = Learnt([e for e in by.values() if e.score is not None], by["baseline"], view.prior.get(task))
    if large not in learnt and small not in learnt:
        return [head + ".", f"{scores}: inconclusive: {_who_failed([large], small, learnt)} so the budget "
                "comparison says nothing."]
    d = _diff(large, small)
    if not _real(d):
        verdict = f"within noise of each other ({'+' if d.value >= 0 else ''}{num(d.value)}, {_noise(d)})"
    elif d.value > 0:
        verdict = (f"the larger model with LoRA beats the smaller one fully fine-tuned by {num(d.value)} "
                   f"({_noise(d)})")
    else:
        verdict = (f"the smaller model fully fine-tuned beats the larger one with LoRA by {num(-d.value)} "
                   f"({_noise(d)})")
    loser = small if d.value > 0 else large
    tail = (f"; {loser.label} did not learn the task (not beyond noise above {learnt.refs_text()})"
            if _real(d) and loser not in learnt else "")
    return [head + ".", f"{scores}: {verdict}{tail}."]


def _planned(run: RunData | None) -> int | None:
    """Planned training bytes of a run at its training file's longest sample (before the
    allocator factor and the CUDA context), or None when it cannot be planned."""
    from vlmtune.diagnose.preflight import plan_run
    from vlmtune.errors import VlmtuneError

    if run is None:
        return None
    try:
        return int(plan_run(run.config, on_data=True).allocated)
    except (VlmtuneError, OSError, ValueError, KeyError):
        return None


def _mem(entry: Entry, planned: int | None) -> str:
    return f"{entry.label} {'unknown' if planned is None else f'{planned / 2**20:.0f} MiB'}"


def _model(view: GridView, entry: Entry) -> str:
    run = _run(view, entry.name)
    return run.config.model.path if run else "?"


FINDINGS: dict[str, Callable[[GridView], list[str]]] = {
    "format-drift": format_drift,
    "forgetting": forgetting,
    "vision-bottleneck": vision_bottleneck,
    "rank": rank,
    "budget": budget,
}


def lesson_finding(lesson: str | None, view: GridView) -> list[str]:
    """The finding sentences of ``lesson`` (none for a grid that is not a lesson)."""
    rule = FINDINGS.get(lesson or "")
    return rule(view) if rule else []
