"""``vlmtune demo``: the product's main job on the embedded default, offline, on a CPU.

It synthesizes the shapes world, then runs the shipped grid (``zoo/demo-grid.yaml``):
the untuned ``vlmtune/tiny-shapes`` (zero-shot and 3-shot) against LoRA r=2, LoRA r=16,
QLoRA r=16 and full fine-tuning on grounding, a skill the model was not pretrained on, with VQA and captions
as the general set that measures forgetting. Re-running resumes: finished variants are
skipped.

Example:
    >>> outcome = run_demo(Path("runs/demo-out"))  # doctest: +SKIP
    >>> outcome.report["html"].name
    'report.html'
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from vlmtune.atomic import write_text
# Function-level imports: the grid runner loads only when the demo runs (CLI start-up).

GRID = Path(__file__).parent / "demo-grid.yaml"
SYNTH = {"tasks": ("grounding", "vqa", "caption"), "n": 1000, "seed": 1, "image_size": 64}


def demo_grid(data: Path, out_dir: Path, *, java: bool) -> dict[str, Any]:
    """The shipped grid with the synthesized data's paths filled in."""
    grid = yaml.safe_load(GRID.read_text())
    grid["out_dir"] = str(out_dir)
    base = grid["base"]
    base["data"].update(train=str(data / "train_grounding.jsonl"), val=str(data / "val_grounding.jsonl"))
    base["eval"].update(test=str(data / "test_grounding.jsonl"),
                        general=str(data / ("test_general.jsonl" if java else "test_vqa.jsonl")))
    if not java:
        base["eval"]["metrics"].pop("caption")
    return grid


def _general_set(data: Path, per_task: int = 60) -> None:
    """VQA + caption test samples in one file: the general-ability set."""
    lines = []
    for task in ("vqa", "caption"):
        lines += (data / f"test_{task}.jsonl").read_text().splitlines()[:per_task]
    write_text(data / "test_general.jsonl", "\n".join(lines) + "\n")


def prepare_data(data: Path) -> None:
    from vlmtune.data.synth import synth

    marker = data / "synth.json"
    if marker.is_file() and json.loads(marker.read_text()).get("demo") == _stamp():
        return
    synth(data, **SYNTH)
    stamp = json.loads(marker.read_text())
    write_text(marker, json.dumps({**stamp, "demo": _stamp()}, indent=2))
    _general_set(data)


def _stamp() -> str:
    return json.dumps(SYNTH, sort_keys=True, default=list)


def run_demo(out: Path, *, console: Any = None) -> Any:
    from vlmtune.compare.run import compare

    out = Path(out)
    data = out / "data"
    prepare_data(data)
    java = shutil.which("java") is not None
    if not java and console is not None:
        console.print("[yellow]note:[/yellow] no Java found: caption metrics (pycocoevalcap) are left out "
                      "of the general set; install a JRE to include them")
    grid_path = out / "demo-grid.yaml"
    write_text(grid_path, yaml.safe_dump(demo_grid(data, out, java=java), sort_keys=False))
    return compare(grid_path, **({"console": console} if console is not None else {}))
