"""The verdict rules on constructed numbers: each rule fires, and stays quiet, when it should."""

from __future__ import annotations

import random

from vlmtune.report.verdict import Entry, verdict


def noisy(mean: float, *, n: int = 50, sd: float = 0.2, seed: int = 0) -> dict[str, float]:
    """``n`` per-item scores with exactly this mean; paired differences of two seeds have
    a standard error of about sd * sqrt(2 / n) (0.04 here), so the noise band is ~0.08."""
    rng = random.Random(seed)
    raw = [rng.gauss(0.0, sd) for _ in range(n)]
    shift = mean - sum(raw) / n - 0.0
    return {f"i{k}": v + shift for k, v in enumerate(raw)}


def e(name: str, kind: str, score: float, *, seed: int, r: int | None = None, label: str | None = None,
      **kw) -> Entry:
    scores = noisy(score, seed=seed)
    return Entry(name, label or name, kind, r=r, score=sum(scores.values()) / len(scores), scores=scores, **kw)


def base(score: float = 0.3, **kw) -> Entry:
    return e("baseline", "untuned", score, seed=1, label="untuned", **kw)


def has(lines: list[str], *words: str) -> bool:
    return any(all(w in line for w in words) for line in lines)


def test_best_beats_baseline_and_cites_numbers():
    lines = verdict([base(), e("lora", "lora", 0.6, seed=2, r=16, label="LoRA r=16")], "IoU", baseline="baseline")
    assert lines[0].startswith("LoRA r=16 scores best: IoU 0.6 vs 0.3 for the untuned baseline (+0.3, noise ±")


def test_nothing_beats_baseline_beyond_noise():
    lines = verdict([base(), e("lora", "lora", 0.32, seed=2, r=16)], "IoU", baseline="baseline")
    assert has(lines, "No variant beats the untuned baseline (IoU 0.3) beyond noise")


def test_without_per_sample_scores_no_claim_is_made():
    b = Entry("baseline", "untuned", "untuned", score=0.1)
    f = Entry("full", "full", "full", score=0.9)
    lines = verdict([b, f], "CIDEr", baseline="baseline")
    assert has(lines, "No variant beats", "noise unknown")


def test_full_beats_lora_means_high_rank():
    lines = verdict([base(), e("full", "full", 0.81, seed=3), e("lora", "lora", 0.6, seed=2, r=16, label="LoRA r=16")],
                    "IoU", baseline="baseline")
    assert has(lines, "full beats LoRA r=16 by 0.21 IoU", "LoRA r=16 falls short", "high-rank")


def test_lora_within_noise_of_full_reports_parameter_share():
    full = e("full", "full", 0.61, seed=3, trainable=10_000_000)
    lora = e("lora", "lora", 0.6, seed=2, r=16, label="LoRA r=16", trainable=200_000)
    lines = verdict([full, lora], "IoU")
    assert has(lines, "LoRA r=16 is within noise of full", "training 2% of the parameters", "low-rank update suffices")


def test_lora_beats_full():
    lines = verdict([e("full", "full", 0.4, seed=3), e("lora", "lora", 0.6, seed=2, r=16, label="LoRA r=16")], "IoU")
    assert has(lines, "LoRA r=16 beats full by 0.2 IoU", "overfit")


def test_rank_rules():
    r8 = e("r8", "lora", 0.5, seed=2, r=8, label="LoRA r=8")
    r64 = e("r64", "lora", 0.7, seed=3, r=64, label="LoRA r=64")
    assert has(verdict([r8, r64], "IoU"), "Raising the LoRA rank from r=8 to r=64 gains 0.2 IoU")
    r64_tie = e("r64", "lora", 0.51, seed=3, r=64, label="LoRA r=64")
    assert has(verdict([r8, r64_tie], "IoU"), "LoRA r=8 is within noise of LoRA r=64", "not the bottleneck")


def test_qlora_within_noise_at_memory_ratio():
    lora = e("lora", "lora", 0.6, seed=2, r=16, label="LoRA r=16", peak_bytes=4 * 2**30)
    qlora = e("qlora", "qlora", 0.59, seed=3, r=16, label="QLoRA r=16", peak_bytes=2**30)
    assert has(verdict([lora, qlora], "IoU"), "QLoRA r=16 is within noise of LoRA r=16 (0.59 vs 0.6) at 25% of its peak memory")


def test_qlora_loses_beyond_noise_against_nearest_rank():
    r8 = e("r8", "lora", 0.7, seed=2, r=8, label="LoRA r=8")
    r24 = e("r24", "lora", 0.7, seed=4, r=24, label="LoRA r=24")
    r64 = e("r64", "lora", 0.7, seed=6, r=64, label="LoRA r=64")
    qlora = e("qlora", "qlora", 0.5, seed=3, r=16, label="QLoRA r=16")
    # r=8 and r=24 are equally near r=16: the higher rank is the reference
    assert has(verdict([r8, r24, r64, qlora], "IoU"), "QLoRA r=16 loses 0.2 IoU against LoRA r=24")


def test_few_shot_rules():
    shots = e("3-shot", "shots", 0.5, seed=5, label="3-shot")
    lora = e("lora", "lora", 0.52, seed=2, r=16, label="LoRA r=16")
    lines = verdict([base(), shots, lora], "accuracy", baseline="baseline")
    assert has(lines, "3-shot prompting alone raises accuracy from 0.3 to 0.5")
    assert has(lines, "No fine-tune beats 3-shot prompting beyond noise", "in-context examples may be enough")


def test_format_compliance_fall_is_reported():
    ok = {f"i{k}": 1.0 if k < 49 else 0.0 for k in range(50)}
    bad = {f"i{k}": 1.0 if k < 20 else 0.0 for k in range(50)}
    b = base(compliance=0.98, compliance_scores=ok)
    full = e("full", "full", 0.8, seed=3, compliance=0.4, compliance_scores=bad)
    lora = e("lora", "lora", 0.6, seed=2, r=16, compliance=0.98, compliance_scores=ok)
    lines = verdict([b, full, lora], "IoU", baseline="baseline")
    assert "Format compliance fell from 0.98 to 0.4 for full." in lines
    assert not has(lines, "for lora")


def test_small_compliance_change_is_not_reported():
    ok = {f"i{k}": 1.0 for k in range(50)}
    almost = {f"i{k}": 1.0 if k < 48 else 0.0 for k in range(50)}
    lines = verdict([base(compliance=1.0, compliance_scores=ok),
                     e("full", "full", 0.8, seed=3, compliance=0.96, compliance_scores=almost)],
                    "IoU", baseline="baseline")
    assert not has(lines, "Format compliance")


def test_low_compliance_is_reported_once_for_all_variants():
    lines = verdict([e("full", "full", 0.8, seed=3, compliance=0.5),
                     e("lora", "lora", 0.8, seed=2, r=8, label="LoRA r=8", compliance=0.95)], "IoU")
    assert "Format compliance is below 0.9 for full (0.5): answers often miss the expected format." in lines
    none = {f"i{k}": 0.0 for k in range(50)}
    lines = verdict([base(compliance=0.0, compliance_scores=none),
                     e("full", "full", 0.3, seed=3, compliance=0.0, compliance_scores=none)],
                    "IoU", baseline="baseline")
    assert has(lines, "below 0.9 for untuned (0), full (0)")


def test_forgetting_and_no_forgetting():
    gb = noisy(0.6, seed=11)
    b = base(general=0.6, general_scores=gb)
    full = e("full", "full", 0.8, seed=3, general=0.3, general_scores=noisy(0.3, seed=12))
    lora = e("lora", "lora", 0.6, seed=2, r=16, label="LoRA r=16", general=0.59, general_scores=noisy(0.59, seed=13))
    lines = verdict([b, full, lora], "IoU", baseline="baseline", general_metric="exact match")
    assert has(lines, "full forgets: general exact match fell by 0.3 (0.6 -> 0.3")
    assert not has(lines, "LoRA r=16 forgets")
    lines = verdict([b, lora], "IoU", baseline="baseline", general_metric="exact match")
    assert has(lines, "No variant loses general ability beyond noise (general exact match, baseline 0.6)")


def prior(score: float) -> Entry:
    return e("prior", "prior", score, seed=9, label="'[22, 24, 40, 41]' (the median training box)")


def test_a_variant_that_only_learned_the_format_is_called_out():
    lines = verdict([base(0.0), e("lora", "lora", 0.07, seed=2, r=16, label="LoRA r=16")], "IoU",
                    baseline="baseline", prior=prior(0.11))
    assert lines[0].startswith("No variant beats a constant answer: '[22, 24, 40, 41]' (the median training box) "
                               "to every item scores IoU 0.11; the best, LoRA r=16, scores 0.07")
    assert "format, not the task" in lines[0] and "below it" not in lines[0]  # 0.07 vs 0.11 is within noise
    far_below = verdict([base(0.0), e("lora", "lora", 0.01, seed=2, r=16, label="LoRA r=16")], "IoU",
                        baseline="baseline", prior=prior(0.4))
    assert "the best, LoRA r=16, scores 0.01, 0.39 below it (noise ±" in far_below[0]
    nothing_learned = verdict([base(0.0, compliance=0.0), e("lora", "lora", 0.01, seed=2, r=16, compliance=0.0)],
                              "IoU", baseline="baseline", prior=prior(0.11))
    assert "format, not the task" not in nothing_learned[0] and "improved the answer's format either" in nothing_learned[0]
    learned_format = verdict([base(0.0, compliance=0.0), e("lora", "lora", 0.01, seed=2, r=16, compliance=1.0)],
                             "IoU", baseline="baseline", prior=prior(0.11))
    assert "format, not the task" in learned_format[0]


def test_a_variant_above_the_prior_says_by_how_much():
    lines = verdict([base(0.0), e("full", "full", 0.6, seed=2)], "IoU", baseline="baseline", prior=prior(0.11))
    assert lines[0].startswith("full beats a constant answer ('[22, 24, 40, 41]' (the median training box) to "
                               "every item: IoU 0.11) by 0.49 (noise ±")
    assert not has(verdict([base(0.0), e("full", "full", 0.6, seed=2)], "IoU", baseline="baseline"), "constant")


def test_no_untuned_model_is_mentioned_in_a_grid_without_one():
    trained_only = verdict([e("lora", "lora", 0.07, seed=2, r=16, label="LoRA r=16"),
                            e("full", "full", 0.08, seed=3)], "IoU", prior=prior(0.11))
    assert "format, not the task" in trained_only[0]
    assert not has(trained_only, "untuned")


def tight(name: str, kind: str, score: float, *, seed: int, r: int | None = None,
          label: str | None = None) -> Entry:
    """An entry whose per-item noise is small (sd 0.05: noise band ~±0.02), so which
    differences are real is not left to the random draw."""
    rng = random.Random(seed)
    raw = [rng.gauss(0.0, 0.05) for _ in range(200)]
    scores = {f"i{k}": v + score - sum(raw) / len(raw) for k, v in enumerate(raw)}
    return Entry(name, label or name, kind, r=r, score=score, scores=scores)


SESSION4 = dict(baseline=0.0, shots=0.0, r2=0.0085, r16=0.045, qlora=0.06, full=0.065, prior=0.111)


def session4(**change: float) -> list[Entry]:
    """Session 4's grounding demo (IoU): every fine-tune above the untuned model, none above the median box."""
    v = {**SESSION4, **change}
    return [tight("baseline", "untuned", v["baseline"], seed=1, label="untuned"),
            tight("3-shot", "shots", v["shots"], seed=2, label="3-shot"),
            tight("lora-r2", "lora", v["r2"], seed=3, r=2, label="LoRA r=2"),
            tight("lora-r16", "lora", v["r16"], seed=4, r=16, label="LoRA r=16"),
            tight("qlora-r16", "qlora", v["qlora"], seed=5, r=16, label="QLoRA r=16"),
            tight("full", "full", v["full"], seed=6, label="full"),
            tight("prior", "prior", v["prior"], seed=7, label="the median training box")]


def split(entries: list[Entry]) -> tuple[list[Entry], Entry]:
    return entries[:-1], entries[-1]


def test_no_method_conclusion_when_nothing_beats_the_prior():
    entries, p = split(session4())
    lines = verdict(entries, "IoU", baseline="baseline", prior=p)
    assert has(lines, "No variant beats a constant answer")
    for topic in ("full vs LoRA r=16", "LoRA rank r=2 vs r=16", "QLoRA r=16 vs LoRA r=16", "Fine-tuning vs 3-shot"):
        assert has(lines, topic, "inconclusive: no variant learned the task"), (topic, lines)
    for claim in ("suffices", "high-rank", "not the bottleneck", "gains", "may be enough", "pays off", "overfit"):
        assert not has(lines, claim), (claim, lines)


def test_beating_only_the_baseline_is_not_learning():
    """Above the untuned model (the answer's format) but not above the prior: still inconclusive."""
    entries, p = split(session4())
    lines = verdict(entries, "IoU", baseline="baseline", prior=p)
    assert has(lines, "full scores best")  # the fact stays
    assert not any("low-rank" in line or "beats LoRA" in line for line in lines)


def test_without_a_prior_the_baseline_decides():
    entries, _ = split(session4())
    lines = verdict(entries, "IoU", baseline="baseline")  # no prior measured: every fine-tune beats the baseline
    assert not has(lines, "inconclusive")
    assert has(lines, "Raising the LoRA rank from r=2 to r=16 gains")


def test_a_comparison_stands_when_its_winner_learned():
    entries, p = split(session4(full=0.4))  # full learned, LoRA did not
    lines = verdict(entries, "IoU", baseline="baseline", prior=p)
    assert has(lines, "full beats LoRA r=16 by", "falls short")
    assert has(lines, "LoRA rank r=2 vs r=16: inconclusive: LoRA r=2 and LoRA r=16 did not learn the task")


def test_a_tie_claims_nothing_when_the_credited_variant_did_not_learn():
    entries, p = split(session4(full=0.128, qlora=0.125, r16=0.12))
    # prior 0.111: full (+0.017) and QLoRA (+0.014) beat it beyond the ~±0.01 noise, LoRA r=16 not
    lines = verdict(entries, "IoU", baseline="baseline", prior=p)
    assert has(lines, "full vs LoRA r=16: inconclusive: LoRA r=16 did not learn the task"), lines
    # QLoRA, the cheaper of that tie, did learn: saying it matches LoRA r=16 claims nothing unlearned
    assert has(lines, "QLoRA r=16 is within noise of LoRA r=16"), lines


def test_a_reference_without_per_item_scores_does_not_decide():
    """Older runs have a prior without per-item scores: it cannot say who learned, so it is not used."""
    entries, p = split(session4(full=0.4))
    p.scores = {}
    lines = verdict(entries, "IoU", baseline="baseline", prior=p)
    assert has(lines, "Raising the LoRA rank from r=2 to r=16 gains")  # the baseline alone decides


def test_variants_sharing_a_method_label_are_named_by_variant():
    """Two untuned models in one grid (the budget lesson) must not read "untuned (0), untuned (0)"."""
    from vlmtune.report.summary import _distinct

    none = {f"i{k}": 0.0 for k in range(50)}
    entries = _distinct([base(compliance=0.0, compliance_scores=none),
                         e("small-baseline", "untuned", 0.0, seed=1, label="untuned", compliance=0.0,
                           compliance_scores=none),
                         e("full", "full", 0.3, seed=3, compliance=1.0)])
    assert [x.label for x in entries] == ["baseline (untuned)", "small-baseline (untuned)", "full"]
    lines = verdict(entries, "IoU", baseline="baseline")
    assert has(lines, "below 0.9 for baseline (untuned) (0), small-baseline (untuned) (0)")
