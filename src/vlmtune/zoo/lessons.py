"""``vlmtune demo --lesson NAME``: one shipped grid per finding of the field, on the embedded model.

Why: the findings vlmtune exists to measure (a format mismatch wrecks a fine-tune that
learned the content, forgetting and its cure, a frozen vision tower as the bottleneck, how
much rank a task needs) are believed more when a user watches them happen on their own
CPU, measured, with the noise band. Each lesson is a grid in ``zoo/lessons/<name>.yaml``
(copied to ``configs/lessons/``) whose data paths are file names inside the lesson's
synthesized shapes-world folder; its ``lesson:`` key makes the report open with the
finding in words (:mod:`vlmtune.report.lessons`), or say that the numbers do not show it.

A lesson is one row of ``LESSONS``: the grid's name, the shapes-world tasks it needs,
and optional hooks run before the synthesized data is used (``prepare``), before the grid
(``before``: what to show first) and after it (``after``: diagnostics that need the
finished runs; True rebuilds the report). Adding one: a YAML in ``zoo/lessons/``, a
finding rule in ``report/lessons.py``, one row here.

Layout under ``--out``: ``data-<lesson>/`` (the synthesized set) and ``<lesson>/`` (the
grid: one run dir per variant, ``report.html``/``report.md``). Re-running resumes.

Example:
    >>> list(LESSONS)[:2]
    ['format-drift', 'forgetting']
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from vlmtune.atomic import write_text
from vlmtune.errors import InputError, VlmtuneError
# Function-level imports: the grid runner, the format check and the vision probe load only
# when a lesson runs (CLI start-up).

GRIDS = Path(__file__).parent / "lessons"
PATH_KEYS = (("data", "train"), ("data", "val"), ("data", "general"), ("eval", "test"), ("eval", "general"))


def _none(*_: Any) -> None:
    return None


@dataclass(frozen=True)
class Lesson:
    name: str
    synth: dict[str, Any]  # vlmtune.data.synth.synth arguments
    prepare: Callable[[Path], None] = _none  # (data dir): more files from the synthesized set
    before: Callable[[dict, Any], None] = _none  # (grid dict, console): shown before the grid runs
    after: Callable[[Path, Any], bool] = lambda grid_dir, console: False  # True: rebuild the report
    summary: str = ""


def _mc_letters(data: Path) -> None:
    """The option-text training set converted to letters, with the eval set's closing line."""
    from vlmtune.data.format_check import closing_instruction
    from vlmtune.data.mc_letters import convert_file
    from vlmtune.data.schema import load_samples

    test = load_samples(data / "test_mc.jsonl", require_answer=False)
    instruction = Counter(map(closing_instruction, test)).most_common(1)[0][0]
    convert_file(data / "train_mc_text.jsonl", data / "train_mc_letters.jsonl", instruction=instruction, task="mc")


def _data_check(grid: dict, console: Any) -> None:
    """``vlmtune data check`` of each training set against the test set, before any training."""
    from vlmtune.data.format_check import check_format
    from vlmtune.diagnose.render import findings_table

    test = grid["base"]["eval"]["test"]
    trains = dict.fromkeys([grid["base"]["data"]["train"]] +
                           [v["data"]["train"] for v in grid["variants"] if "train" in v.get("data", {})])
    for train in trains:
        console.print(f"[bold]vlmtune data check --train {Path(train).name} --eval {Path(test).name}[/bold]")
        findings = [f for f in check_format(train, test) if f.severity != "info"]
        console.print(findings_table(findings) if findings else "[green]no format mismatch found[/green]")


def _probe_vision(grid_dir: Path, console: Any) -> bool:
    """``vlmtune diagnose vision`` on the run that trained the tower: how much of its gain is vision."""
    from vlmtune.diagnose.vision_probe import probe_run

    run = grid_dir / "full-vision"
    if (run / "vision_probe.json").is_file():
        return False
    console.print(f"[bold]vlmtune diagnose vision --run {run}[/bold]")
    console.print(probe_run(run)["verdict"])
    return True


LESSONS: dict[str, Lesson] = {lesson.name: lesson for lesson in (
    Lesson("format-drift", {"tasks": ("mc", "mc_text", "vqa"), "n": 1000, "seed": 1},
           prepare=_mc_letters, before=_data_check,
           summary="MC trained on option text, tested on letters; the set converted to letters"),
    Lesson("forgetting", {"tasks": ("grounding", "vqa"), "n": 1000, "seed": 1},
           summary="general VQA after grounding fine-tunes with 0% vs 30% general data mixed in"),
    Lesson("vision-bottleneck", {"tasks": ("detail",), "n": 15000, "seed": 1, "image_size": 48},
           after=_probe_vision,
           summary="the kind of a 9-11 px shape: frozen-vision LoRA vs training the tower; diagnose vision"),
    Lesson("budget", {"tasks": ("grounding",), "n": 1600, "seed": 1, "splits": (0.5, 0.1, 0.4)},
           summary="one memory budget: tiny-shapes with LoRA vs tiny-shapes-small fully fine-tuned"),
    Lesson("rank", {"tasks": ("detail",), "n": 10000, "seed": 1, "image_size": 48},
           summary="LoRA r=2 and r=16 against the full update's rank-need curve (detail, tower trained)"),
)}


def lesson_names(arg: str) -> list[str]:
    """``all`` -> every lesson in order; else the one named; an unknown name is one clear error."""
    if arg == "all":
        return list(LESSONS)
    if arg not in LESSONS:
        raise InputError(f"unknown lesson {arg!r}; choose one of: {', '.join(LESSONS)}, all", field="--lesson")
    return [arg]


def lesson_grid(name: str, data: Path, out_dir: Path) -> dict[str, Any]:
    """The shipped grid of ``name`` with its data file names resolved inside ``data``."""
    grid = yaml.safe_load((GRIDS / f"{name}.yaml").read_text())
    grid["out_dir"] = str(out_dir)
    for section in [grid["base"], *grid["variants"]]:
        for part, key in PATH_KEYS:
            value = (section.get(part) or {}).get(key) if isinstance(section.get(part), dict) else None
            if value and not Path(value).is_absolute():
                section[part][key] = str(data / value)
    return grid


def prepare_data(lesson: Lesson, data: Path) -> None:
    """Synthesize the lesson's set once (a stamp in synth.json), then its extra files."""
    from vlmtune.data.synth import synth

    stamp = json.dumps({"lesson": lesson.name, **lesson.synth}, sort_keys=True, default=list)
    marker = data / "synth.json"
    if not (marker.is_file() and json.loads(marker.read_text()).get("lesson") == stamp):
        synth(data, **lesson.synth)
        write_text(marker, json.dumps({**json.loads(marker.read_text()), "lesson": stamp}, indent=2))
    lesson.prepare(data)


@dataclass
class LessonOutcome:
    name: str
    report: dict[str, Path] = field(default_factory=dict)
    finding: list[str] = field(default_factory=list)


def run_lesson(name: str, out: Path, *, console: Any, jobs: int | None = None) -> LessonOutcome:
    from vlmtune.report import build_report
    from vlmtune.zoo.demo import run_local

    lesson = LESSONS[name]
    out, data = Path(out), Path(out) / f"data-{name}"
    console.rule(f"lesson {name}: {lesson.summary}")
    prepare_data(lesson, data)
    grid = lesson_grid(name, data, out)
    lesson.before(grid, console)
    grid_path = out / f"{name}-grid.yaml"
    write_text(grid_path, yaml.safe_dump(grid, sort_keys=False))
    outcome = run_local(grid_path, console=console, jobs=jobs)
    report = outcome.report
    if lesson.after(outcome.grid.dir, console):
        report = build_report(outcome.grid.dir)
    finding = finding_of(outcome.grid.dir, name)
    for line in finding:
        console.print(f"[bold]{name}:[/bold] {line}", highlight=False)
    return LessonOutcome(name, report, finding)


def finding_of(grid_dir: Path, name: str) -> list[str]:
    from vlmtune.report.lessons import lesson_finding
    from vlmtune.report.read import load_grid_runs
    from vlmtune.report.summary import summarize

    return lesson_finding(name, summarize(load_grid_runs(grid_dir)))


def run_lessons(arg: str, out: Path, *, console: Any, jobs: int | None = None) -> list[LessonOutcome]:
    """Each named lesson in turn (``all``: in ``LESSONS`` order); a failed lesson does not stop
    the next ones, and one error at the end names every failure."""
    outcomes, failed = [], {}
    for name in lesson_names(arg):
        try:
            outcomes.append(run_lesson(name, out, console=console, jobs=jobs))
        except VlmtuneError as err:
            failed[name] = str(err)
            console.print(f"[red]lesson {name} failed:[/red] {err}", highlight=False)
    if failed:
        raise VlmtuneError("; ".join(f"lesson {n}: {e}" for n, e in failed.items()))
    return outcomes
