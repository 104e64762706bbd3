"""Recompute the memory plan for the published GPU measurements and print the Markdown
table that docs/memory_plan.md shows (tests/diagnose/test_memory_published.py checks that
the docs hold exactly this table).

Usage:
    python scripts/memory_plan_published.py [--json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vlmtune.diagnose.memory_validate import evaluate_published, markdown_table, summary

ROWS = Path(__file__).resolve().parents[1] / "tests" / "diagnose" / "data" / "published_memory.json"

if __name__ == "__main__":
    rows = evaluate_published(ROWS)
    if "--json" in sys.argv:
        print(json.dumps({"summary": summary(rows), "rows": rows}, indent=1))
    else:
        print(markdown_table(rows))
        print()
        s = summary(rows)
        print(f"{s['rows']} rows: median |error| {s['median_abs_error']:.1%}, within 15%: {s['within_15']:.0%}, "
              f"max |error| {s['max_abs_error']:.1%}")
