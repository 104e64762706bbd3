"""``vlmtune diagnose ...``, ``vlmtune zoo ...`` and ``vlmtune demo``: commands over finished runs
and over the embedded model, registered on the app by ``cli.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from vlmtune.errors import InputError, VlmtuneError
# Function-level imports: as in cli.py, `vlmtune --help` starts without the library.

console = Console(stderr=True)


def diagnose_rank(full_run: Path = typer.Option(..., "--full-run", help="run dir of a full fine-tune (has model/)"),
                  base: Optional[str] = typer.Option(None, "--base", help="base model (default: config.yaml model.path)"),
                  rank: int = typer.Option(16, "--rank", help="LoRA rank the verdict is about")) -> None:
    """Singular spectrum of each ΔW: how much a rank-r LoRA could express; writes rank.json + PNG."""
    from vlmtune.diagnose.rank import analyse_run

    summary = analyse_run(full_run, base=base, rank=rank)
    energies = "  ".join(f"r={k}: {v:.0%}" for k, v in summary["median_energy"].items())
    console.print(f"median update energy kept  {energies}")
    console.print(summary["verdict"])
    console.print(f"wrote {full_run / 'rank.json'} and {summary['plot']}")


def diagnose_vision(run: Path = typer.Option(..., "--run", help="run dir to probe (adapter/ or model/)"),
                    vision_from: Optional[Path] = typer.Option(None, "--vision-from",
                                                               help="take the tuned vision side from this run"),
                    max_samples: Optional[int] = typer.Option(None, "--max-samples", help="test items to use")) -> None:
    """Swap base/tuned vision tower + projector, re-evaluate: how much gain comes from vision."""
    from vlmtune.diagnose.vision_probe import probe_run

    result = probe_run(run, vision_from=vision_from, max_samples=max_samples)
    for task, t in result["tasks"].items():
        cells = "  ".join(f"{k} {v:.3g}" for k, v in t["scores"].items() if v is not None)
        console.print(f"{task} ({t['metric']}): {cells}")
    console.print(result["verdict"])
    console.print(f"wrote {run / 'vision_probe.json'}")


def diagnose_curve(config: Path = typer.Argument(..., help="run config YAML"),
                   sizes: str = typer.Option(..., "--sizes", help="training-set sizes, e.g. 50,100,200,400"),
                   out: Optional[Path] = typer.Option(None, "--out", help="dir (default: <out_dir>/<name>-curve)"),
                   overrides: Optional[list[str]] = typer.Argument(None, help="key.sub=value overrides")) -> None:
    """Train + evaluate at each size (resumable grid); learning_curve.json/.png: would more data help?"""
    from vlmtune.compare.curve import learning_curve, parse_sizes

    result = learning_curve(config, parse_sizes(sizes), out=out, overrides=overrides or [], console=console)
    for task, t in result["tasks"].items():
        points = "  ".join(f"n={p['n']}: {p['value']:.3g}" for p in t["points"])
        console.print(f"{task} ({t['metric']}): {points}")
    console.print(result["answer"])
    console.print(f"wrote {result['plot']} and learning_curve.json")


def zoo_tiny(family: str = typer.Argument(..., help="model_type, e.g. qwen2_vl, gemma4, glm4v_moe "
                                          "(any supported one in docs/models.md)"),
             out: Path = typer.Option(..., "--out", help="checkpoint directory to write"),
             hidden: int = typer.Option(64, "--hidden", help="width of both towers (multiple of 16)"),
             kv_heads: int = typer.Option(2, "--kv-heads", help="decoder key/value heads"),
             seed: int = typer.Option(0, "--seed")) -> None:
    """Build a tiny random-weight checkpoint of a real architecture (for trying the pipeline).

    The defaults (hidden 64, 2 KV heads) suit bitsandbytes' CPU kernels, so QLoRA runs too.
    """
    from vlmtune.families import REGISTRY, classification
    from vlmtune.testing import build_tiny

    verdict = classification().get(family)
    if family not in REGISTRY and (verdict is None or verdict["status"] != "supported"):
        why = verdict["reason"] if verdict else "not an image-text-to-text model_type of this transformers"
        raise VlmtuneError(f"zoo tiny: {family!r} is not supported: {why} (see docs/models.md)")
    try:
        build_tiny(family, out, hidden=hidden, kv_heads=kv_heads, seed=seed)
    except ValueError as err:
        raise VlmtuneError(str(err)) from None
    console.print(f"wrote a tiny {family} checkpoint to {out}")


def demo(out: Path = typer.Option(Path("runs/demo"), "--out", help="where data, runs and the report go"),
         lesson: Optional[str] = typer.Option(None, "--lesson",
                                              help="run a lesson grid instead: format-drift, forgetting, "
                                                   "vision-bottleneck, budget, rank, or all (in that order)"),
         jobs: Optional[int] = typer.Option(None, "--jobs", min=1,
                                            help="variants at once, one torch thread each, on a local Ray "
                                                 "(default: one per core when Ray is installed; 1: serial)")) -> None:
    """The embedded default: baseline and 3-shot vs LoRA r=2/r=16 and full on grounding, offline.

    With --lesson: one shipped grid per finding (configs/lessons/NAME.yaml), whose report opens
    with the finding in words and numbers, or says the numbers do not show it.
    """
    if lesson is not None:
        from vlmtune.zoo.lessons import lesson_names, run_lessons

        lesson_names(lesson)  # an unknown name fails before anything is written
        for outcome in run_lessons(lesson, out, console=console, jobs=jobs):
            console.print(f"[green]lesson {outcome.name} done[/green]: open {outcome.report['html']}")
        return
    from vlmtune.zoo.demo import run_demo

    outcome = run_demo(out, console=console, jobs=jobs)
    console.print(f"[green]demo done[/green]: open {outcome.report['html']}")


def zoo_build(out: Optional[Path] = typer.Option(None, "--out", help="where to write the checkpoint "
                                                                   "(default: ./<model>)"),
              model: str = typer.Option("tiny-shapes", "--model",
                                        help="which shipped size's recipe: tiny-shapes or tiny-shapes-small"),
              minutes: Optional[float] = typer.Option(None, "--minutes",
                                                      help="cap training time (fewer steps; machine-dependent)"),
              work: Path = typer.Option(Path("/tmp/vlmtune-zoo-build"), "--work",
                                        help="scratch dir for data, init and run (absent, or one a build made: "
                                             "its stage folders are replaced)"),
              threads: int = typer.Option(1, "--threads", min=1,
                                          help="torch CPU threads; the shipped weights were built with 1 "
                                               "(2 on 2 idle cores: ~25 min instead of ~40, weights differ by "
                                               "rounding)"),
              plan_file: Optional[Path] = typer.Option(None, "--plan",
                                                       help="a build.json: rebuild the recipe it records "
                                                            "instead of today's defaults"),
              resume: bool = typer.Option(False, "--resume",
                                          help="keep the finished stages in --work and continue a started "
                                               "one from its last checkpoint (same plan only)"),
              continue_from: Optional[Path] = typer.Option(None, "--from",
                                                           help="a finished build (its dir, with build.json) whose "
                                                                "stages are the plan's first ones: train only the "
                                                                "plan's later stages, from its weights")
              ) -> None:
    """Rebuild vlmtune/tiny-shapes (or tiny-shapes-small) from scratch: synth data, tokenizer, Qwen2-VL,
    pretrain, score."""
    from dataclasses import replace

    from vlmtune.zoo.build import PLANS, build, read_plan

    if model not in PLANS:
        raise InputError(f"no recipe for {model!r}; choose one of: {', '.join(PLANS)}", field="--model")
    plan = read_plan(plan_file) if plan_file else PLANS[model]
    out = out or Path(model)
    record = build(out, plan=replace(plan, threads=threads), work=work, minutes=minutes, resume=resume,
                   continue_from=continue_from)
    scores = record["scores"]
    where = f"where EM {scores['where']['exact_match']:.3f}  " if "where" in scores else ""
    console.print(f"[green]done[/green] {out}  {record['total_params'] / 1e6:.1f}M params, "
                  f"{'+'.join(str(st['steps']) for st in record['plan']['stages'])} steps in "
                  f"{record['train_wall_time_s'] / 60:.1f} min; "
                  f"VQA EM {scores['vqa']['exact_match']:.3f}  MC {scores['mc']['mc_accuracy']:.3f}  {where}"
                  f"grounding IoU {scores['grounding']['iou']:.3f}")


def register_tool_commands(app: typer.Typer, diagnose_app: typer.Typer, zoo_app: typer.Typer) -> None:
    diagnose_app.command("rank")(diagnose_rank)
    diagnose_app.command("vision")(diagnose_vision)
    diagnose_app.command("curve")(diagnose_curve)
    zoo_app.command("tiny")(zoo_tiny)
    zoo_app.command("build")(zoo_build)
    app.command()(demo)
