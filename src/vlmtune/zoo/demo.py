"""``vlmtune demo``: the product's main job on the embedded default, offline, on a CPU.

It synthesizes the shapes world, then runs the shipped grid (``zoo/demo-grid.yaml``):
the untuned ``vlmtune/tiny-shapes`` (zero-shot and 3-shot) against LoRA r=2, LoRA r=16
and full fine-tuning on grounding, a skill the model was not pretrained on, with VQA and
captions as the general set that measures forgetting. Re-running resumes: finished
variants are skipped.

On a machine with several cores and Ray installed (``vlmtune[ray]``, in ``make setup``) the
variants run side by side on a local Ray, one torch thread each (:mod:`vlmtune.compare.ray_grid`):
a tiny model's matrices are too small for two threads to halve a step, so two one-thread
runs at once finish the grid sooner (on 2 cores: 21.7 samples/s for one one-thread LoRA
run, 20.9 each for two at once, 30.0 for one two-thread run). ``jobs=1`` runs serially.
QLoRA is not in the grid: bitsandbytes' CPU kernels make it ~5x slower than LoRA here, and
what it buys (GPU memory) a CPU cannot show; ``vlmtune plan`` measures that.

Example:
    >>> outcome = run_demo(Path("runs/demo-out"))  # doctest: +SKIP
    >>> outcome.report["html"].name
    'report.html'
"""

from __future__ import annotations

import json
import os
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


def local_jobs(grid: Any, jobs: int | None = None) -> int:
    """Variants at once: ``jobs``, else one per core (up to the grid's trained variants) when
    Ray is installed, else 1."""
    if jobs is not None:
        return max(1, jobs)
    try:
        import ray  # noqa: F401
    except ImportError:
        return 1
    return max(1, min(os.cpu_count() or 1, sum(1 for v in grid.variants if v.trains)))


def run_local(grid_path: Path, *, console: Any = None, jobs: int | None = None) -> Any:
    """Run a shipped grid on this machine: side by side on a local Ray when ``local_jobs`` > 1."""
    from vlmtune.compare.grid import load_grid
    from vlmtune.compare.run import run_grid

    grid = load_grid(grid_path)
    kwargs = {"console": console} if console is not None else {}
    jobs = local_jobs(grid, jobs)
    if jobs == 1:
        return run_grid(grid, **kwargs)
    from vlmtune.compare.ray_grid import run_grid_ray

    if console is not None:
        console.print(f"running {jobs} variants at a time on a local Ray, one torch thread each "
                      f"(--jobs 1: one after another)")
    return run_grid_ray(grid, num_cpus=jobs, **kwargs)


def run_demo(out: Path, *, console: Any = None, jobs: int | None = None) -> Any:
    out = Path(out)
    data = out / "data"
    prepare_data(data)
    java = shutil.which("java") is not None
    if not java and console is not None:
        console.print("[yellow]note:[/yellow] no Java found: caption metrics (pycocoevalcap) are left out "
                      "of the general set; install a JRE to include them")
    grid_path = out / "demo-grid.yaml"
    write_text(grid_path, yaml.safe_dump(demo_grid(data, out, java=java), sort_keys=False))
    return run_local(grid_path, console=console, jobs=jobs)
