"""Render the report: gather table, plots, samples and verdict, fill the jinja2 templates.

Why: the HTML must open anywhere, offline and from an e-mail attachment, so it is one file
with its images inline (base64 PNG) and its CSS in a ``<style>`` tag: no network, no
scripts. The Markdown reads well in a repository, so its images are PNG files beside it
(plots) and in ``report_thumbs/`` (thumbnails).

Example:
    >>> render_report(Path("runs/shapes-grid"))  # doctest: +SKIP
    {'html': PosixPath('runs/shapes-grid/report.html'), 'md': PosixPath('runs/shapes-grid/report.md')}
"""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from vlmtune.atomic import write_bytes, write_text
from vlmtune.report.diagnostics import format_findings, rank_plot, rank_rows, rank_verdict
from vlmtune.report.lessons import lesson_finding
from vlmtune.report.read import grid_lesson, load_grid_runs
from vlmtune.report.plots import draw_all
from vlmtune.report.samples import pick_items
from vlmtune.report.stats import Z, mean_se
from vlmtune.report.sweep import answers as sweep_answers, plots as sweep_plots, rows as sweep_rows, sweep_view
from vlmtune.report.summary import GridView, display, summarize
from vlmtune.report.table import memory_kinds, table_rows
from vlmtune.report.verdict import Learnt, num, verdict
from vlmtune.report.by_answer import answer_rows
from vlmtune.report.vision import HEADER as VISION_HEADER, vision_rows, vision_verdict

TEMPLATES = Path(__file__).parent / "templates"
THUMBS = "report_thumbs"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "x"


def md_cell(value: Any) -> str:
    """A Markdown table cell: pipes escaped, line breaks as <br>."""
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("\r\n", "\n").replace("\n", "<br>")


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), undefined=StrictUndefined,
                      autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["md"] = md_cell
    env.filters["b64"] = lambda data: base64.b64encode(data).decode("ascii")
    return env


def verdicts(view: GridView, lesson: str | None = None) -> list[str]:
    """Verdict sentences for every task (prefixed with the task when there are several), after
    the finding of the grid's ``lesson`` when it is one (report/lessons.py)."""
    out, learned, known = [f"Lesson {lesson}: {s}" for s in lesson_finding(lesson, view)], set(), False
    for task in view.tasks:
        baseline = view.baseline.name if view.baseline else None
        lines = verdict(view.entries[task], display(view.metric[task]), baseline=baseline,
                        general_metric=display(view.general_metric) if view.general_task else None,
                        prior=view.prior.get(task))
        scored = [e for e in view.entries[task] if e.score is not None]
        learnt = Learnt(scored, next((e for e in scored if e.name == baseline), None), view.prior.get(task))
        lines += vision_verdict(view, task, learnt)
        out += [f"{task}: {s}" if len(view.tasks) > 1 else s for s in lines]
        learned |= learnt.names
        known = known or learnt.known
    return out + rank_verdict(view, learned if known else None)


def notes(view: GridView) -> list[str]:
    out = [f"± is one standard error of the mean over test items; a difference counts as real when it "
           f"exceeds {Z:g} standard errors of the paired per-item difference (about 95%)."]
    if view.baseline is not None:
        out.append(f"Baseline (for deltas and forgetting): {view.baseline.name} ({view.baseline.label}).")
    for task, prior in view.prior.items():
        est = mean_se(list(prior.scores.values())) if prior.scores else None
        se = f" ± {num(est.se)}" if est is not None and est.se is not None else ""
        where = f" ({task})" if len(view.tasks) > 1 else ""
        out.append(f"Constant-answer prior{where}: answering {prior.label} to every test item scores "
                   f"{display(view.metric[task])} {num(prior.score)}{se}, a floor that needs neither "
                   "image nor question.")
    kinds = memory_kinds(view)
    if "rss_peak" in kinds:
        out.append("Peak memory on CPU is the process's peak resident set size (includes Python and "
                   "libraries): compare variants with each other, not with GPU numbers.")
    if len(kinds) > 1:
        out.append(f"Peak memory mixes measures ({', '.join(kinds)}): those numbers do not compare.")
    missing = [r.name for r in view.runs if r.metrics is None]
    if missing:
        out.append(f"Not evaluated yet (no metrics.json): {', '.join(missing)}.")
    return out


def fit_notes(grid_dir: Path) -> list[str]:
    """"Would it fit": the memory plan ``vlmtune compare --gpu-mem`` made before the runs
    (``preflight.json``), beside each variant's measured peak when the run has one."""
    path = Path(grid_dir) / "preflight.json"
    if not path.is_file():
        return []
    import json

    data = json.loads(path.read_text())
    parts = []
    for row in data.get("variants", []):
        if "error" in row:
            parts.append(f"{row['name']}: no plan ({row['error']})")
        else:
            parts.append(f"{row['name']} {row['peak'] / 2**30:.1f} GiB ({'fits' if row['fits'] else 'will not fit'})")
    return [f"Would it fit {data.get('gpu_mem')} per GPU (memory plan before the runs, docs/memory_plan.md): "
            + "; ".join(parts) + "."] if parts else []


def context(grid_dir: Path, per_task: int) -> dict[str, Any]:
    runs = load_grid_runs(grid_dir)
    view = summarize(runs)
    header, rows = table_rows(view)
    rank_head, rank_body = rank_rows(view)
    plots = draw_all(view) + [p for p in (rank_plot(view),) if p is not None]
    sweep = sweep_view(grid_dir, runs)
    sweep_head, sweep_body = sweep_rows(sweep) if sweep else ([], [])
    answer_head, answer_body = answer_rows(view)
    plots += sweep_plots(sweep) if sweep else []
    return {"title": f"vlmtune report: {grid_dir.name}", "grid": grid_dir.name, "header": header,
            "rows": rows, "plots": plots, "items": pick_items(view, per_task),
            "verdicts": verdicts(view, grid_lesson(grid_dir)), "notes": notes(view) + fit_notes(grid_dir), "view": view,
            "vision_header": VISION_HEADER, "vision_rows": vision_rows(view),
            "answer_header": answer_head, "answer_rows": answer_body,
            "rank_header": rank_head, "rank_rows": rank_body, "sweep_answers": sweep_answers(sweep) if sweep else [],
            "sweep_header": sweep_head, "sweep_rows": sweep_body, "format_findings": format_findings(view),
            "built": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "thumbs": THUMBS}


def render_report(grid_dir: Path, per_task: int = 6) -> dict[str, Path]:
    """Write ``report.html``, ``report.md``, the plots' PNGs and the thumbnails into ``grid_dir``."""
    grid_dir = Path(grid_dir)
    ctx = context(grid_dir, per_task)
    env = environment()
    for plot in ctx["plots"]:
        write_bytes(grid_dir / f"{_safe(plot.key)}.png", plot.png)
    for item in ctx["items"]:
        if item.thumbnail_png is not None:
            write_bytes(grid_dir / THUMBS / f"{_safe(item.slug)}.png", item.thumbnail_png)
    ctx["safe"] = _safe
    html = env.get_template("report.html.j2").render(**ctx)
    md = env.get_template("report.md.j2").render(**ctx)
    paths = {"html": grid_dir / "report.html", "md": grid_dir / "report.md"}
    write_text(paths["html"], html)
    write_text(paths["md"], md)
    return paths
