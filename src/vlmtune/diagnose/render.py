"""Rich renderings of the diagnostics (the CLI prints them; libraries return plain data).

Example:
    >>> console.print(findings_table(check_format("train.jsonl", "test.jsonl")))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

_STYLE = {"error": "red", "warning": "yellow", "info": "cyan"}


def findings_table(findings: list[Any]) -> Table:
    table = Table(title="format check: train vs eval", show_lines=True)
    for col in ("severity", "task", "aspect", "finding", "examples (id: text)"):
        table.add_column(col, overflow="fold")
    for f in findings:
        examples = "\n".join(f"{e['side']} {e['id']} ({e['where']}): {e['text']}" for e in f.examples)
        table.add_row(f"[{_STYLE[f.severity]}]{f.severity}[/]", f.task, f.aspect, f.message, examples)
    return table


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f}"


def plan_table(plans: list[Any], title: str) -> Table:
    table = Table(title=title)
    cases = any(p.case for p in plans)
    if cases:
        table.add_column("case (seq)")
    for col in ("method", "trainable", "weights", "grads", "optimizer", "activations", "logits", "vision act.",
                "peak GiB", "fits", "max batch"):
        table.add_column(col, justify="right" if col not in ("method", "fits") else "left")
    for p in plans:
        fits = "" if p.fits is None else ("[green]yes[/]" if p.fits else "[red]no[/]")
        table.add_row(*([f"{p.case} ({p.seq})"] if cases else []), p.method, f"{p.trainable / 1e6:.1f}M",
                      _gib(p.weights), _gib(p.gradients), _gib(p.optimizer), _gib(p.activations), _gib(p.logits),
                      _gib(p.vision_activations), _gib(p.peak), fits,
                      "" if p.max_batch is None else str(p.max_batch))
    return table
