"""Recompute the memory plan for published GPU measurements (``docs/memory_plan.md``).

Why: a plan validated only against CPU RSS of tiny models says little about an 80 GB
A100. The rows (``tests/diagnose/data/published_memory.json``) are numbers model authors
and frameworks published with the settings they state (source repository, commit and
line per row); each setup lists its workload once and each row what differs. The plan
gets exactly those settings, nothing fitted per row.

Example:
    >>> rows = evaluate_published("tests/diagnose/data/published_memory.json")  # doctest: +SKIP
    >>> summary(rows)["median_abs_error"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

_KEYS = ("method", "measure")
_PUBLISHED = ("line", "gib", "gb")  # "gb": a source that prints 1e9-byte GB (lit-gpt: max_memory_allocated() / 1e9)


def evaluate_published(path: str | Path, configs: str | Path | None = None) -> list[dict[str, Any]]:
    """One dict per published row: setting, measured and predicted GiB, relative error."""
    from vlmtune.diagnose.memory_plan import Workload, model_shapes, plan_method

    path = Path(path)
    configs = Path(configs) if configs else path.parent / "model-configs"
    data = json.loads(path.read_text())
    out, shapes_cache = [], {}
    for setup in data["setups"]:
        shapes = shapes_cache.get(setup["model"]) or model_shapes(str(configs / setup["model"]))
        shapes_cache[setup["model"]] = shapes
        for row in setup["rows"]:
            fields = {**setup["workload"], **{k: v for k, v in row.items() if k not in (*_PUBLISHED, *_KEYS)}}
            if "trainable_roles" in fields:
                fields["trainable_roles"] = tuple(fields["trainable_roles"])
            method = row.get("method", setup["method"])
            w = Workload(**fields, measure=row.get("measure", setup["measure"]))
            predicted = plan_method(shapes, w, method).peak / 2**30
            gib = row["gib"] if "gib" in row else row["gb"] * 1e9 / 2**30
            out.append({"setup": setup["id"], "model": setup["model"], "method": method,
                        "seq": w.seq, "batch": w.batch, "measured": round(gib, 2), "predicted": round(predicted, 2),
                        "error": predicted / gib - 1, "source": {**setup["source"], "line": row["line"]},
                        "varied": {k: v for k, v in row.items() if k not in _PUBLISHED}})
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    errors = [abs(r["error"]) for r in rows]
    return {"rows": len(rows), "median_abs_error": statistics.median(errors),
            "within_15": sum(e <= 0.15 for e in errors) / len(errors), "max_abs_error": max(errors)}


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| setup | method | seq | batch | varied | measured GiB | plan GiB | error | source |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        s = r["source"]
        varied = ", ".join(f"{k}={v}" for k, v in r["varied"].items() if k not in ("seq", "batch")) or ""
        where = f"{s['repo']}@{s['commit'][:8]} {s['path']}:{s['line']}"
        lines.append(f"| {r['setup']} | {r['method']} | {r['seq']} | {r['batch']} | {varied} | "
                     f"{r['measured']:.2f} | {r['predicted']:.2f} | {r['error']:+.1%} | {where} |")
    return "\n".join(lines)
