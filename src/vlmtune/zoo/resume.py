"""Continue an interrupted ``vlmtune zoo build`` (``--resume``): keep what finished, continue the rest.

Why: the recipe takes ~40 CPU-minutes, and hours on a shared machine (session 5's build ran
at 15 steps/min, 10x below an idle core's); a build stopped halfway should not start over.
What comes before the language stages is deterministic and cheap (synth data, tokenizer,
random init: redone, same bytes). Stage 0 is kept when its record (``stage0.json`` beside
its weights) names the same settings; a finished language stage (``resources.json``) is kept
when its saved config is the one the plan gives now, step count included; an unfinished one
continues from its last checkpoint through the training loop's own resume, which refuses a
changed config. Resuming reaches the uninterrupted run's weights to float rounding (the
loop's resume is tested to 1e-6), so a resumed build is not promised to be bit-identical.

Example:
    >>> kept_stage0(work / "vision", settings)  # doctest: +SKIP
    {'steps': 1000, 'held_out': {...}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlmtune.atomic import write_text
from vlmtune.rundir import RunDir, load_run_config

STAGE0_RECORD = "stage0.json"


def kept_stage0(vision_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """Stage 0's record if ``vision_dir`` holds a finished stage 0 run with ``settings``."""
    path = vision_dir / STAGE0_RECORD
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    has_weights = any(vision_dir.glob("model*.safetensors"))
    return saved["record"] if has_weights and saved.get("settings") == settings else None


def record_stage0(vision_dir: Path, settings: dict[str, Any], record: dict[str, Any]) -> None:
    """Written after stage 0's weights, so its presence means the stage finished."""
    write_text(vision_dir / STAGE0_RECORD, json.dumps({"settings": settings, "record": record}, indent=2) + "\n")


def stage_state(cfg: Any) -> str:
    """``"done"`` (finished with this exact config), ``"partial"`` (started: resume it) or
    ``"new"``; a finished run with another config is ``"new"`` (it is retrained)."""
    run = RunDir(cfg.run_dir)
    if not run.config.is_file():
        return "new"
    if not run.resources.is_file():
        return "partial"
    saved = load_run_config(run.path)
    return "done" if saved.model_dump(mode="json") == cfg.model_dump(mode="json") else "new"


def continued_build(from_dir: Path, plan: Any, before: Any) -> dict[str, Any]:
    """The record of the finished build in ``from_dir`` (whose ``build.json`` records the plan
    ``before``) that ``plan`` extends (``--from``): same recipe, its stages the first of
    ``plan``'s, and fewer of them.

    Why: a recipe that gains a last stage (a score short of its gate) need not retrain the
    first stages for an hour; training only the new stages from the previous build's
    weights is what an uninterrupted build of the longer recipe does (to float rounding,
    as with ``--resume``), and the record says which stages came from where.
    """
    from dataclasses import asdict

    from vlmtune.errors import InputError

    record_path = Path(from_dir) / "build.json"
    ignored = ("stages", "threads", "eval_per_task")
    differs = [k for k, v in asdict(plan).items() if k not in ignored and asdict(before)[k] != v]
    if differs:
        raise InputError(f"--from: the build records another recipe ({', '.join(differs)} differ)", file=record_path)
    n = len(before.stages)
    if plan.stages[:n] != before.stages or len(plan.stages) <= n:
        raise InputError(f"--from: its {n} stages are not the first stages of a longer plan "
                         f"({len(plan.stages)} stages)", file=record_path)
    if not any(Path(from_dir).glob("model*.safetensors")):
        raise InputError("--from: no model*.safetensors beside it", file=record_path)
    return json.loads(record_path.read_text(encoding="utf-8"))
