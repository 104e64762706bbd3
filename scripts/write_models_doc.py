"""Write docs/models.md from src/vlmtune/families/architectures.json (run after reclassifying).

Usage: PYTHONPATH=src python scripts/write_models_doc.py
"""
from pathlib import Path

from vlmtune.atomic import write_text
from vlmtune.testing.models_doc import render_models_md

out = Path(__file__).resolve().parents[1] / "docs" / "models.md"
write_text(out, render_models_md())
print(f"wrote {out}")
