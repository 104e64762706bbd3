"""The report's main table as plain strings: one row per variant, the same in HTML, Markdown
and the terminal summary.

Why: one function decides how each number is shown (units, standard errors, dashes for
"does not apply"), so the three renderings cannot disagree.

Example:
    >>> fmt_bytes(3 * 2**20), fmt_count(1_234_567), fmt_seconds(125), fmt_pct(100.0), fmt_pct(0.0123)
    ('3.0 MiB', '1.23M', '2m 05s', '100%', '0.012%')
"""

from __future__ import annotations

from vlmtune.report.summary import GridView, display
from vlmtune.report.verdict import num

DASH = "—"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return DASH
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return DASH


def fmt_count(n: float | None) -> str:
    if n is None:
        return DASH
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.0f}"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return DASH
    if s < 60:
        return f"{s:.3g} s"
    minutes, sec = divmod(int(round(s)), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"


def fmt_pct(p: float | None) -> str:
    if p is None:
        return DASH
    return f"{p:.0f}%" if p >= 10 else f"{p:.2g}%"


def fmt_estimate(value: float | None, se: float | None) -> str:
    if value is None:
        return DASH
    return f"{num(value)} ± {num(se)}" if se is not None else num(value)


def header(view: GridView) -> list[str]:
    cols = ["variant", "method", "trainable params"]
    for task in view.tasks:
        cols += [f"{task} {display(view.metric[task])}", f"{task} format"]
    if view.general_task:
        cols.append(f"general Δ ({view.general_task} {display(view.general_metric)})")
    return cols + ["peak memory", "train time", "train samples/s", "MFU", "size on disk", "latency"]


def table_rows(view: GridView) -> tuple[list[str], list[list[str]]]:
    """(header, rows) with every cell a string."""
    rows = []
    for run in view.runs:
        res = (run.resources or {}) if run.trains else {}
        trainable = DASH
        if res.get("trainable_params") is not None:
            trainable = f"{fmt_count(res['trainable_params'])} ({fmt_pct(res.get('trainable_pct'))})"
        elif not run.trains:
            trainable = "0"
        method = run.label
        if run.failed:  # a diverged run is not a result: say so where its numbers would be read
            method += f" (FAILED at step {run.failed.get('step')}: {run.failed.get('reason')})"
        row = [run.name, method, trainable]
        for task in view.tasks:
            est = view.estimate(task, run.name)
            e = next(x for x in view.entries[task] if x.name == run.name)
            row += [fmt_estimate(est.value, est.se) if est else DASH,
                    num(e.compliance) if e.compliance is not None else DASH]
        if view.general_task:
            row.append(_general_cell(view, run.name))
        memory = res.get("peak_memory") or {}
        size = f"{res['artefact']} {fmt_bytes(res['artefact_bytes'])}" if res.get("artefact_bytes") else DASH
        latency = (run.metrics or {}).get("latency_s_mean")
        row += [fmt_bytes(memory.get("bytes")), fmt_seconds(res.get("wall_time_s")),
                f"{res['samples_per_s']:.3g}" if res.get("samples_per_s") else DASH,
                fmt_pct(100 * res["mfu"]) if res.get("mfu") is not None else DASH, size,
                fmt_seconds(latency) if latency is not None else DASH]
        rows.append(row)
    return header(view), rows


def _general_cell(view: GridView, name: str) -> str:
    if not view.tasks:
        return DASH
    if view.baseline is not None and name == view.baseline.name:
        e = next(x for x in view.entries[view.tasks[0]] if x.name == name)
        return f"ref {num(e.general)}" if e.general is not None else DASH
    d = view.general_delta(name)
    if d is None:
        return DASH
    sign = "+" if d.value >= 0 else ""
    return f"{sign}{num(d.value)}" + (f" ± {num(d.se)}" if d.se is not None else "")


def memory_kinds(view: GridView) -> list[str]:
    """Which peak-memory measures the table mixes (rss_peak on CPU, cuda_max_allocated on GPU)."""
    kinds = {((r.resources or {}).get("peak_memory") or {}).get("kind") for r in view.runs if r.trains}
    return sorted(k for k in kinds if k)
