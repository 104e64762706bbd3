"""The ``vlmtune`` command line: each subcommand is a thin function over the library.

Errors a user can fix print one line (file, line, field, what is wrong) and exit 2,
without a traceback; set ``VLMTUNE_DEBUG=1`` to see the traceback.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from vlmtune.cli_data import register_data_commands
from vlmtune.cli_plan import plan
from vlmtune.cli_tools import register_tool_commands
from vlmtune.errors import VlmtuneError
# Function-level imports: every command imports its library module inside its function: `vlmtune
# --help` and the light commands start without torch/transformers.

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Adapt vision-language models to your task: LoRA, QLoRA and full fine-tunes, measured.")
data_app = typer.Typer(no_args_is_help=True, help="Dataset tools: convert formats to canonical JSONL, split, synthesize, check train vs eval format, preview labels.")
app.add_typer(data_app, name="data")
register_data_commands(data_app)
zoo_app = typer.Typer(no_args_is_help=True, help="Tiny models: random checkpoints of real architectures; rebuild vlmtune/tiny-shapes.")
app.add_typer(zoo_app, name="zoo")
diagnose_app = typer.Typer(no_args_is_help=True, help="Diagnostics: rank of a full update, vision bottleneck, learning curve.")
app.add_typer(diagnose_app, name="diagnose")
console = Console(stderr=True)


def _config(path: Path, overrides: list[str], trust_remote_code: bool):
    from vlmtune.config import load_config

    if trust_remote_code:
        overrides = [*overrides, "model.trust_remote_code=true"]
    return load_config(path, overrides)


@app.command()
def train(config: Path = typer.Argument(..., help="run config YAML"),
          overrides: Optional[list[str]] = typer.Argument(None, help="key.sub=value overrides"),
          resume: bool = typer.Option(False, "--resume", help="continue from the run's last complete checkpoint"),
          overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing run directory"),
          trust_remote_code: bool = typer.Option(False, "--trust-remote-code",
                                                 help="allow the model's own Python code to run")) -> None:
    """Train one run: writes runs/<name>/ (adapter/ or model/, metrics, resources)."""
    from vlmtune.train.loop import train as run_training

    from vlmtune.config import located

    from vlmtune.rundir import RunDir, read_json

    cfg = _config(config, overrides or [], trust_remote_code)
    try:
        with located(config, overrides):
            run = run_training(cfg, overwrite=overwrite, resume=resume)
    except KeyboardInterrupt:
        _interrupted(cfg.run_dir, f"vlmtune train {config} {' '.join(overrides or [])} --resume".replace("  ", " "))
    if int(os.environ.get("RANK", "0")) != 0:  # one summary line per launch, from the main process
        return
    resources = read_json(RunDir(run).resources)
    loss = resources["final_train_loss"]
    console.print(f"[green]done[/green] {run}  loss {'n/a' if loss is None else f'{loss:.4f}'}  "
                  f"{resources['samples_per_s']:.1f} samples/s  "
                  f"peak {resources['peak_memory']['bytes'] / 2**30:.2f} GiB ({resources['peak_memory']['kind']})")


def _interrupted(run: Path, again: str) -> None:
    """Ctrl-C during training: say what is on disk and the command that continues."""
    from vlmtune.train.checkpoint import latest_checkpoint
    from vlmtune.rundir import RunDir

    last = latest_checkpoint(RunDir(run).checkpoints, warn=False)
    if not RunDir(run).config.is_file():
        kept, again = "nothing was written", again.removesuffix(" --resume")
    elif last:
        kept = f"kept {run} up to its last checkpoint {last.name}"
    else:
        kept = f"no checkpoint was saved yet in {run} (resuming starts at step 0)"
    console.print(f"[yellow]interrupted[/yellow]: {escape(kept)}; continue with: {escape(again)}", highlight=False,
                  soft_wrap=True)
    sys.exit(130)


@app.command()
def merge(run: Path = typer.Option(..., "--run", help="run directory with adapter/"),
          out: Path = typer.Option(..., "--out", help="where to write the merged HF model"),
          dequantize: bool = typer.Option(False, "--dequantize",
                                          help="QLoRA: merge into a full-precision copy of the base"),
          overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out directory")) -> None:
    """Merge a run's adapter into its base; prints the max logit difference merged vs unmerged."""
    from vlmtune.model.merge import merge_run

    report = merge_run(run, out, dequantize=dequantize, overwrite=overwrite)
    console.print(f"merged -> {out}: max |logit diff| merged vs unmerged = {report['max_abs_diff']:.3g} "
                  f"(logits up to {report['logit_scale']:.3g}, {report['samples']} samples)")
    if "quantized_merge_max_abs_diff" in report:
        console.print(f"QLoRA: merging into the 4-bit base changes logits by up to "
                      f"{report['quantized_merge_max_abs_diff']:.3g}"
                      + ("" if dequantize else "; use --dequantize to merge into a full-precision base"))


@app.command("eval")
def eval_(config: Optional[Path] = typer.Argument(None, help="config YAML: evaluates the untuned cfg.model"),
          overrides: Optional[list[str]] = typer.Argument(None, help="key.sub=value overrides"),
          run: Optional[Path] = typer.Option(None, "--run", help="evaluate the tuned model of this run"),
          out: Optional[Path] = typer.Option(None, "--out", help="where to write (default: the run dir, or "
                                             "<out_dir>/<name>-base / -<k>shot for a config)"),
          overwrite: bool = typer.Option(False, "--overwrite", help="redo an evaluation that exists"),
          trust_remote_code: bool = typer.Option(False, "--trust-remote-code",
                                                 help="allow the model's own Python code to run")) -> None:
    """Score a model: writes predictions.jsonl and metrics.json."""
    from vlmtune.evaluate.run import evaluate
    from vlmtune.rundir import RunDir, load_run_config

    if run is not None and config is not None and "=" in str(config):
        overrides, config = [str(config), *(overrides or [])], None  # `--run R key=value`
    if (config is None) == (run is None):
        raise VlmtuneError("give either a CONFIG or --run RUN_DIR")
    if run is not None:
        from vlmtune.config import apply_overrides

        cfg = apply_overrides(load_run_config(run), overrides or [], source=RunDir(run).config)
        target = out or run
    else:
        cfg = _config(config, overrides or [], trust_remote_code)
        suffix = f"{cfg.eval.shots}shot" if cfg.eval.shots else "base"
        target = out or cfg.run_dir.with_name(f"{cfg.name}-{suffix}")
    from vlmtune.config import located

    with located(RunDir(run).config if run is not None else config, overrides):
        result = evaluate(cfg, run=run, out=target, overwrite=overwrite)
    for task, values in result["tasks"].items():
        shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if isinstance(v, float))
        console.print(f"[bold]{task}[/bold] (n={values['n']}): {shown}")
        prior = (result.get("prior") or {}).get(task)
        if prior:
            floor = ", ".join(f"{k} {v:.4g}" for k, v in prior.items() if isinstance(v, float))
            console.print(f"  constant answer {prior['answer']!r} ({prior['rule']}) to every item: {floor}",
                          highlight=False, markup=False)
    console.print(f"wrote {RunDir(target).predictions} and {RunDir(target).metrics}")


@app.command()
def predict(model: str = typer.Option(..., "--model", help="base or merged model dir, full fine-tune run "
                                                         "dir, hub id or zoo name"),
            adapter: Optional[list[str]] = typer.Option(None, "--adapter", help="PEFT adapter dir or run dir "
                                                        "(runs/X finds runs/X/adapter; repeatable)"),
            image: Optional[list[str]] = typer.Option(None, "--image", help="image file (repeatable)"),
            prompt: str = typer.Option(..., "--prompt"),
            max_new_tokens: int = typer.Option(64, "--max-new-tokens"),
            trust_remote_code: bool = typer.Option(False, "--trust-remote-code",
                                                   help="allow the model's own Python code to run")) -> None:
    """Answer one prompt with the model and each adapter (swapped on one loaded base)."""
    from vlmtune.evaluate.predict import predict as run_predict

    answers = run_predict(model, adapter or [], image or [], prompt, max_new_tokens=max_new_tokens,
                          trust_remote_code=trust_remote_code)
    for name, text in answers.items():
        typer.echo(f"{name}: {text}")


@app.command()
def score(predictions: Path = typer.Argument(..., help="JSONL: id, prediction, answers (or references, "
                                                          "as in eval's predictions.jsonl)[, options]"),
          metrics: str = typer.Option(..., "--metrics", help="comma-separated metric names"),
          per_sample: Optional[Path] = typer.Option(None, "--per-sample", help="write per-sample scores here")) -> None:
    """Score predictions made elsewhere; prints one JSON object."""
    from vlmtune.evaluate.scoring import score_file

    summary = score_file(predictions, [m.strip() for m in metrics.split(",") if m.strip()], per_sample)
    typer.echo(json.dumps(summary))


@app.command()
def compare(grid: Path = typer.Argument(..., help="grid YAML: name, out_dir, base, variants[, ray]"),
            gpu_mem: Optional[str] = typer.Option(None, "--gpu-mem", help="memory per GPU (e.g. 24GiB): flag the "
                                                  "variants the memory plan says will not fit, before any runs"),
            ray: bool = typer.Option(False, "--ray", help="run the variants as Ray tasks (local Ray, or the "
                                                        "cluster at --address / the grid's ray.address)"),
            address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address, e.g. "
                                                  "10.0.0.1:6379 (with --ray; default: start a local Ray)")) -> None:
    """Train and evaluate every variant of a grid (finished ones are skipped), then write the report."""
    from vlmtune.compare.grid import load_grid

    if address and not ray:
        raise VlmtuneError("--address needs --ray")
    if ray:
        from vlmtune.compare.cluster import require_ray

        require_ray()  # before anything else: the one line that says how to install it
    loaded = load_grid(grid)
    if ray:
        from vlmtune.compare.ray_grid import run_grid_ray

        run_grid_ray(loaded, address=address, console=console, gpu_mem=gpu_mem)
        return
    from vlmtune.compare.run import run_grid

    run_grid(loaded, console=console, gpu_mem=gpu_mem)


@app.command()
def sweep(config: Path = typer.Argument(..., help="run config YAML (needs data.val and train.eval_every)"),
          search: list[str] = typer.Option(..., "--search", help="key=v1,v2,... (each tried) or key=log:LOW..HIGH "
                                           "(drawn); repeatable, e.g. method.r=1,2,4,8 train.lr=log:1e-5..1e-3"),
          samples: int = typer.Option(1, "--samples", help="trials per point of the listed values"),
          ray: bool = typer.Option(False, "--ray", help="run trials side by side on the cluster's resources "
                                                      "(default: one at a time on a local Ray)"),
          address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: local Ray)"),
          out: Optional[Path] = typer.Option(None, "--out", help="sweep dir (default: <train.out_dir>/<name>-sweep)"),
          cpus_per_trial: float = typer.Option(1.0, "--cpus-per-trial"),
          gpus_per_trial: Optional[float] = typer.Option(None, "--gpus-per-trial",
                                                         help="default: 1 when the cluster has GPUs, else 0"),
          seed: int = typer.Option(0, "--seed", help="seed of the drawn values"),
          overrides: Optional[list[str]] = typer.Argument(None, help="key.sub=value overrides")) -> None:
    """Search rank / learning rate on Ray Tune with ASHA early stopping; every trial is a run dir."""
    from vlmtune.compare.cluster import require_ray

    require_ray("vlmtune sweep")
    from vlmtune.compare.search import parse_search
    from vlmtune.compare.sweep import run_sweep
    from vlmtune.config import located
    from vlmtune.report import build_report
    from vlmtune.report.sweep import sweep_answers

    cfg = _config(config, overrides or [], False)
    axes = [parse_search(s) for s in search]
    with located(config, overrides):
        record = run_sweep(cfg, axes, samples=samples, concurrent=ray or bool(address), address=address, out=out,
                           cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, seed=seed, console=console)
    sweep_dir = Path(record["dir"])
    paths = build_report(sweep_dir)
    counts = {s: sum(t["status"] == s for t in record["trials"]) for s in ("finished", "stopped", "failed")}
    console.print(f"{len(record['trials'])} trials: {counts['finished']} finished, {counts['stopped']} stopped "
                  f"early by ASHA, {counts['failed']} failed")
    for line in sweep_answers(sweep_dir):
        console.print(line, highlight=False, markup=False)
    console.print(f"report: {paths['html']}  {paths['md']}")


@app.command()
def report(grid_dir: Path = typer.Argument(..., help="a grid directory (out_dir/<grid name>) or a sweep's")) -> None:
    """Rebuild a grid's (or a sweep's) report.html and report.md from its run directories."""
    from vlmtune.compare.run import summary_table
    from vlmtune.report import build_report

    from vlmtune.report.sweep import sweep_answers

    paths = build_report(grid_dir)
    console.print(summary_table(grid_dir))
    for line in sweep_answers(grid_dir):  # a sweep's directory: what the search found
        console.print(line, highlight=False, markup=False)
    console.print(f"report: {paths['html']}  {paths['md']}")


app.command("plan")(plan)
register_tool_commands(app, diagnose_app, zoo_app)


def _quiet_libraries() -> None:
    """Our progress bars and messages replace the libraries' own on the command line."""
    import logging
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)  # optional hub kernel
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()  # e.g. its retry warning before our one-line "cannot load" error
    except ImportError:
        pass


_DISK_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.ENOTDIR,
                errno.EISDIR, errno.EEXIST}


def main() -> None:
    _quiet_libraries()
    try:
        app(standalone_mode=True)
    except VlmtuneError as err:
        if os.environ.get("VLMTUNE_DEBUG"):
            raise
        console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: files already written are complete (every write is "
                      "atomic); re-run the command to redo the rest")
        sys.exit(130)
    except OSError as err:  # the disk, not the code: full, read-only, no permission
        if os.environ.get("VLMTUNE_DEBUG") or err.errno not in _DISK_ERRORS:
            raise
        where = f"{err.filename}: " if err.filename else ""
        console.print(f"[red]error:[/red] {escape(where + str(err.strerror))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
