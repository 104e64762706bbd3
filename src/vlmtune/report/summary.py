"""From loaded runs to the numbers the report shows: one :class:`Entry` per variant and task.

Why: the table, the plots and the verdict must quote the same numbers, so they are
computed once here: the task's primary metric (from ``metrics.json``) with per-sample scores
(from ``predictions.jsonl``) for the noise estimate, format compliance, the general-set
metric and the delta against the baseline (forgetting).

Example:
    >>> view = summarize(load_grid_runs(Path("runs/shapes-grid")))  # doctest: +SKIP
    >>> view.tasks, view.metric["grounding"]  # doctest: +SKIP
    (['grounding'], 'iou')
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from vlmtune.report.read import RunData, find_baseline, primary_metric, tasks_of
from vlmtune.report.stats import Estimate, difference, mean_se
from vlmtune.report.verdict import Entry

DISPLAY = {"iou": "IoU", "voxel_iou": "voxel IoU", "anls": "ANLS", "mc_accuracy": "accuracy",
           "exact_match": "exact match", "vqa_accuracy": "VQA accuracy", "relaxed_accuracy": "relaxed accuracy",
           "cider": "CIDEr", "bleu4": "BLEU-4", "rouge_l": "ROUGE-L"}


def display(metric: str | None) -> str:
    return DISPLAY.get(metric or "", metric or "metric")


@dataclass
class GridView:
    """Per-task entries (in variant order) plus what they were measured with."""

    runs: list[RunData]
    baseline: RunData | None
    tasks: list[str]
    metric: dict[str, str | None]
    general_task: str | None
    general_metric: str | None
    entries: dict[str, list[Entry]] = field(default_factory=dict)
    prior: dict[str, Entry] = field(default_factory=dict)  # task -> constant-answer prior (vlmtune.evaluate.prior)

    def general_delta(self, name: str) -> Estimate | None:
        """General-set metric of ``name`` minus the baseline's (negative = forgetting)."""
        if not self.tasks or self.baseline is None:
            return None
        by_name = {e.name: e for e in self.entries[self.tasks[0]]}
        e, b = by_name.get(name), by_name.get(self.baseline.name)
        if e is None or b is None or e.general is None or b.general is None or e is b:
            return None
        return difference(e.general_scores, b.general_scores, a_value=e.general, b_value=b.general)

    def estimate(self, task: str, name: str) -> Estimate | None:
        e = next((x for x in self.entries[task] if x.name == name), None)
        if e is None or e.score is None:
            return None
        se = mean_se(list(e.scores.values())).se if e.scores else None
        return Estimate(e.score, se, len(e.scores))


def _scores(rows: list[dict], metric: str | None) -> dict[str, float]:
    out = {}
    for row in rows:
        value = (row.get("scores") or {}).get(metric) if metric else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[str(row.get("id"))] = float(value)
    return out


def _number(summary: dict, key: str | None) -> float | None:
    value = summary.get(key) if key else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def entry(run: RunData, task: str, metric: str | None, general_task: str | None,
          general_metric: str | None) -> Entry:
    rows = run.rows(task)
    res = run.resources or {}
    general_rows = run.rows(general_task, general=True) if general_task else []
    return Entry(
        name=run.name, label=run.label, kind=run.kind, r=run.rank,
        score=_number(run.task_summary(task), metric), scores=_scores(rows, metric),
        compliance=_number(run.task_summary(task), "format_compliance"),
        compliance_scores={str(r.get("id")): float(bool(r.get("format_ok"))) for r in rows if "format_ok" in r},
        general=_number(run.task_summary(general_task, "general"), general_metric) if general_task else None,
        general_scores=_scores(general_rows, general_metric),
        peak_bytes=(res.get("peak_memory") or {}).get("bytes") if run.trains else None,
        trainable=res.get("trainable_params") if run.trains else None)


def prior_entry(runs: list[RunData], baseline: RunData | None, task: str, metric: str | None) -> Entry | None:
    """The constant-answer prior of ``task`` as an entry, from the baseline's evaluation (else
    the first run that scored it): every run of a grid shares the training set."""
    for run in ([baseline] if baseline else []) + runs:
        prior = ((run.metrics or {}).get("prior") or {}).get(task)
        score = _number(prior or {}, metric)
        if score is None:
            continue
        scores = {}
        for row in run.rows(task):
            value = (row.get("prior_scores") or {}).get(metric)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                scores[str(row.get("id"))] = float(value)
        rule = f" ({prior['rule']})" if prior.get("rule") else ""
        return Entry(name="prior", label=f"{prior['answer']!r}{rule}", kind="prior", score=score,
                     scores=scores)
    return None


def _distinct(entries: list[Entry]) -> list[Entry]:
    """Entries whose method label another entry shares are labelled by variant name too
    (two untuned models in one grid read "baseline (untuned)", "small-baseline (untuned)")."""
    counts = Counter(e.label for e in entries)
    for e in entries:
        if counts[e.label] > 1:
            e.label = f"{e.name} ({e.label})"
    return entries


def summarize(runs: list[RunData]) -> GridView:
    tasks = tasks_of(runs)
    general_tasks = tasks_of(runs, "general")
    general_task = general_tasks[0] if general_tasks else None
    view = GridView(runs=runs, baseline=find_baseline(runs), tasks=tasks,
                    metric={t: primary_metric(runs, t) for t in tasks}, general_task=general_task,
                    general_metric=primary_metric(runs, general_task, "general") if general_task else None)
    for task in tasks:
        view.entries[task] = _distinct([entry(r, task, view.metric[task], general_task, view.general_metric)
                                        for r in runs])
        prior = prior_entry(runs, view.baseline, task, view.metric[task])
        if prior is not None:
            view.prior[task] = prior
    return view
