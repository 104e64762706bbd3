"""The report's diagnostics: rank need of a full fine-tune, and train/eval format mismatches.

Why: two of the questions a failed fine-tune raises can be answered from what a grid already
has. *Is the task low-rank?* A full variant's ``rank.json`` (``vlmtune diagnose rank``, run
by ``compare`` after a full variant trains) says how much of its weight update a LoRA of
rank r could express; the report sets that beside the LoRA variants of the grid.
*Do train and eval ask for the same thing?* The format check (``vlmtune data check``) of
each trained variant's ``data.train`` against its test set, so a drift such as "train
answers are option text, eval expects a letter" is in the report and not only in a
terminal long scrolled away.

Both read files only (no torch): ``rank.json`` in a run dir and the JSONL files a config
names. A file that has gone missing since the run gives a note, not a failure.

Example:
    >>> rank_header((1, 16))
    ['full variant', 'r=1', 'r=16', 'verdict']
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlmtune.report.read import RunData
from vlmtune.rundir import RANK
from vlmtune.report.plots import Plot, _color, _figure, _png
from vlmtune.report.summary import GridView
from vlmtune.report.verdict import NOTHING_LEARNED

# Function-level imports: the format check and rank thresholds load only when their sections render.

RANK_FILE = RANK


def rank_need(run: RunData) -> dict[str, Any] | None:
    """``rank.json`` of a run, or None (not a full run, or not analysed)."""
    path = run.path / RANK_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if data.get("median_energy") else None


def _ranks(view: GridView) -> tuple[int, ...]:
    for run in view.runs:
        need = rank_need(run)
        if need:
            return tuple(int(k) for k in need["median_energy"])
    return ()


def rank_header(ranks: tuple[int, ...]) -> list[str]:
    return ["full variant", *[f"r={r}" for r in ranks], "verdict"]


def rank_rows(view: GridView) -> tuple[list[str], list[list[str]]]:
    """Header and one row per analysed full variant: median update energy kept at each rank."""
    ranks = _ranks(view)
    rows = []
    for run in view.runs:
        need = rank_need(run)
        if need:
            energy = need["median_energy"]
            rows.append([run.name, *[f"{energy[str(r)]:.0%}" if str(r) in energy else "—" for r in ranks],
                         str(need.get("verdict", ""))])
    return rank_header(ranks), rows


def rank_verdict(view: GridView, learned: set[str] | None = None) -> list[str]:
    """Per analysed full variant: the share of its update each LoRA rank of the grid keeps.

    ``learned``: the variants that learned a task (:class:`vlmtune.report.verdict.Learnt`),
    None when unknown. The update of a run that learned nothing fits noise or the answer's
    format, so its rank says nothing about what the task needs: the reading is then
    "inconclusive" (the measured shares stay, they are facts about the update)."""
    lora_ranks = sorted({r.rank for r in view.runs if r.rank is not None and r.trains})
    out = []
    for run in view.runs:
        need = rank_need(run)
        if not need:
            continue
        energy = need["median_energy"]
        kept = [f"r={r} keeps {_energy_at(energy, r):.0%}" for r in lora_ranks]
        n = need.get("matrices", 0) - need.get("unchanged", 0)
        what = ("; ".join(kept) + f" of {run.name}'s weight update (median over {n} matrices)") if kept else \
            str(need.get("verdict", ""))
        reading = _rank_reading(energy, lora_ranks)
        if learned is not None and run.name not in learned and reading:
            who = NOTHING_LEARNED if not learned else f"inconclusive: {run.name} did not learn the task"
            reading = f"Reading: {who}, so the update's rank says nothing about what the task needs."
        out.append(f"rank need: {what}. " + reading)
    return out


def _energy_at(energy: dict[str, float], rank: int) -> float:
    """Energy at ``rank``: the analysed rank itself, else the nearest analysed one below it."""
    known = sorted(int(k) for k in energy)
    below = [k for k in known if k <= rank] or known[:1]
    return float(energy[str(below[-1])])


def high_energy() -> float:
    """The share of an update's energy at which a rank counts as expressing it (diagnose/rank.py)."""
    from vlmtune.diagnose.rank import HIGH

    return HIGH


def _rank_reading(energy: dict[str, float], lora_ranks: list[int]) -> str:
    from vlmtune.diagnose.rank import HIGH, LOW

    if not lora_ranks:
        return ""
    top = _energy_at(energy, max(lora_ranks))
    if top >= HIGH:
        return ("The update is low-rank: the grid's largest LoRA can express it, so where full beats LoRA "
                "the gap is not rank (look at LoRA's learning rate, steps or target modules).")
    if top >= LOW:
        return "The update is partly low-rank: a higher rank may close part of any gap to full."
    return "The update is high-rank: if full beats LoRA here, rank is the likely reason."


def rank_plot(view: GridView) -> Plot | None:
    """Median update energy kept vs rank for each analysed full run; the grid's LoRA ranks marked."""
    needs = [(run, rank_need(run)) for run in view.runs]
    needs = [(run, n) for run, n in needs if n]
    if not needs:
        return None
    fig, ax = _figure()
    for run, need in needs:
        ks = sorted(int(k) for k in need["median_energy"])
        ax.plot(ks, [need["median_energy"][str(k)] for k in ks], "o-", color=_color(view, run.name),
                label=f"{run.label} ({run.name})")
    for r in sorted({r.rank for r in view.runs if r.rank is not None and r.trains}):
        ax.axvline(r, color="0.6", linestyle=":", linewidth=1)
        ax.annotate(f"LoRA r={r}", (r, 0.02), rotation=90, fontsize=8, color="0.4")
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("rank r (log scale)")
    ax.set_ylabel("share of ||ΔW||² a rank-r update keeps")
    ax.set_title("rank need of the full fine-tune")
    ax.legend(fontsize=8, loc="lower right")
    return Plot("rank-need", "rank need", _png(fig),
                "median over the language projections of the energy of the full fine-tune's update "
                "ΔW kept by its best rank-r approximation; dotted: the grid's LoRA ranks.")


def format_findings(view: GridView) -> list[dict[str, Any]]:
    """Warnings and errors of the format check, once per (train, test) pair of trained variants."""
    from vlmtune.data.format_check import check_format

    seen: set[tuple[str, str]] = set()
    out: list[dict[str, Any]] = []
    for run in view.runs:
        if not run.trains:
            continue
        train, test = _pair(run)
        data = run.config.data
        if not train or not test or (train, test) in seen:
            continue
        seen.add((train, test))
        if not (Path(train).is_file() and Path(test).is_file()):
            continue  # a report rebuilt elsewhere, without the data: nothing to check
        try:
            findings = check_format(train, test, root=data.root, allow_outside_root=data.allow_outside_root)
        except Exception as err:  # a moved file must not stop the report
            out.append({"severity": "note", "variants": [run.name],
                        "message": f"format check of {Path(train).name} vs {Path(test).name} skipped: {err}"})
            continue
        users = [r.name for r in view.runs if r.trains and _pair(r) == (train, test)]
        out += [{"severity": f.severity, "variants": users, "message": f.message,
                 "examples": [e["text"] for e in f.examples[:2]]}
                for f in findings if f.severity != "info"]
    return out


def _pair(run: RunData) -> tuple[Any, Any]:
    data, ev = run.config.data, run.config.eval
    return data.train, ev.test or data.val
