"""``vlmtune data convert`` and ``data split``: data subcommands kept out of cli.py (size).

Registered on cli.py's ``data`` group by :func:`register_data_commands`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from vlmtune.errors import VlmtuneError

console = Console(stderr=True)
# Function-level imports: as in cli.py, `vlmtune --help` starts without the library.


def data_convert(src: Path = typer.Argument(..., help="input: LLaVA/ShareGPT/ms-swift/OpenAI/LLaMA-Factory "
                                                      "json/jsonl, InternVL jsonl or meta file, "
                                                      "dataset_info.json#NAME, parquet/json for HF datasets"),
                 out: Path = typer.Argument(..., help="output canonical JSONL"),
                 fmt: str = typer.Option("auto", "--format",
                                         help="auto|llava|sharegpt|internvl|swift|openai|alpaca|hf"),
                 image_root: Optional[Path] = typer.Option(None, "--image-root",
                                                           help="where the source's image and video paths resolve"),
                 images_outside: str = typer.Option("error", "--images-outside",
                                                    help="images/videos outside the output folder: error|copy|keep"),
                 allow_outside_root: bool = typer.Option(False, "--allow-outside-root",
                                                         help="with --images-outside keep: write ../ paths "
                                                              "(the run config then needs data.allow_outside_root: true)"),
                 task: Optional[str] = typer.Option(None, "--task", help="set every sample's task (picks its metrics)"),
                 boxes: Optional[str] = typer.Option(None, "--boxes", help="rewrite answers' boxes FROM:TO, e.g. "
                                                     "internvl:qwen2.5-vl (pixel, norm, 1000, internvl, qwen2-vl, "
                                                     "qwen2.5-vl, qwen3-vl)"),
                 fetch_urls: bool = typer.Option(False, "--fetch-urls", help="download http(s) image/video URLs once "
                                                 "into the dataset (otherwise they are refused)"),
                 column: Optional[list[str]] = typer.Option(None, "--column", help="HF datasets: KEY=COLUMN with KEY "
                                                            "image|messages|question|answer|id|task (repeatable)")) -> None:
    """Convert a dataset to vlmtune's canonical JSONL."""
    from vlmtune.data.convert import convert

    options = {f"{key}_column": name for key, _, name in (c.partition("=") for c in column or [])}
    if task:
        options["task"] = task
    n = convert(src, out, fmt=fmt, image_root=image_root, images_outside=images_outside,
                allow_outside_root=allow_outside_root, boxes=boxes, fetch_urls=fetch_urls, **options)
    console.print(f"wrote {n} samples to {out}")


def data_split(src: Path = typer.Argument(..., help="canonical JSONL to split"),
               out: Path = typer.Option(..., "--out", help="folder for train.jsonl, val.jsonl, test.jsonl "
                                                           "(must contain the images)"),
               val: float = typer.Option(0.1, "--val", help="share of samples for validation"),
               test: float = typer.Option(0.1, "--test", help="share of samples for test"),
               by: str = typer.Option("id", "--by", help="id: samples split independently; image: samples "
                                                          "sharing an image stay in one split"),
               seed: int = typer.Option(0, "--seed"),
               root: Optional[Path] = typer.Option(None, "--root", help="image paths are relative to this "
                                                   "folder (default: the JSONL's folder)")) -> None:
    """Split a dataset into train/val/test (with --by image, no image is in two splits)."""
    from vlmtune.data.split import split_file

    counts = split_file(src, out, val=val, test=test, by=by, seed=seed, root=root)
    shown = ", ".join(f"{name} {n}" for name, n in counts.items() if n)
    console.print(f"wrote {shown} samples to {out}")


def data_synth(out: Path = typer.Option(..., "--out", help="dataset root to write"),
               tasks: str = typer.Option("caption,vqa,mc,grounding,text", "--tasks",
                                         help="comma-separated: caption,vqa,mc,mc_text,grounding,where,text,detail"),
               n: int = typer.Option(2000, "--n", help="samples per task (before the train/val/test split)"),
               seed: int = typer.Option(0, "--seed"),
               image_size: int = typer.Option(64, "--image-size")) -> None:
    """Generate the synthetic shapes world (deterministic for a seed)."""
    from vlmtune.data.synth import synth

    try:
        files = synth(out, tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()), n=n, seed=seed,
                      image_size=image_size)
    except ValueError as err:  # the arguments (n, tasks, image size): checked before anything is written
        raise VlmtuneError(f"data synth: {err}") from None
    console.print(f"wrote {len(files)} files to {out}: " + ", ".join(sorted(p.name for p in files.values())))


def data_check(train: Path = typer.Option(..., "--train", help="training JSONL"),
               eval_: Path = typer.Option(..., "--eval", help="evaluation JSONL"),
               model: Optional[str] = typer.Option(None, "--model", help="model dir or zoo name: compare the "
                                                                         "rendered chat template too"),
               root: Optional[Path] = typer.Option(None, "--root", help="image paths are relative to this "
                                                   "folder (as data.root; default: each JSONL's folder)"),
               allow_outside_root: bool = typer.Option(False, "--allow-outside-root",
                                                       help="accept image paths outside the root (as "
                                                            "data.allow_outside_root)"),
               as_json: bool = typer.Option(False, "--json", help="print findings as JSON")) -> None:
    """Compare train and eval data formats: instructions, answer types, lengths, images."""
    from vlmtune.data.format_check import check_format
    from vlmtune.diagnose.render import findings_table

    findings = check_format(train, eval_, model=model, root=root, allow_outside_root=allow_outside_root)
    if as_json:
        typer.echo(json.dumps([f.to_dict() for f in findings], indent=2))
    elif findings:
        Console(width=max(console.width, 140)).print(findings_table(findings))
    else:
        console.print("[green]no format mismatch found[/green]")


def data_preview(config: Path = typer.Argument(..., help="run config YAML (model, data, eval sections)"),
                 overrides: Optional[list[str]] = typer.Argument(None, help="key.sub=value overrides"),
                 n: int = typer.Option(3, "--n", min=1, help="samples to show (from the start of the file)"),
                 split: str = typer.Option("train", "--split", help="train|val|test: data.train, data.val "
                                                                     "or eval.test"),
                 as_json: bool = typer.Option(False, "--json", help="one JSON object per sample")) -> None:
    """Show samples as training encodes them: labelled part highlighted, token counts, truncation."""
    from vlmtune.config import located
    from vlmtune.data.preview import preview_split, render_preview
    from vlmtune.model.load import load_processor_only

    from vlmtune.config import load_config

    cfg = load_config(config, overrides or [])
    with located(config, overrides):
        for row in preview_split(cfg, split, n, *load_processor_only(cfg.model)):
            if as_json:
                typer.echo(json.dumps(row.to_json(), ensure_ascii=False))
            else:
                Console(width=max(console.width, 100)).print(render_preview(row))


def register_data_commands(data_app: typer.Typer) -> None:
    data_app.command("convert")(data_convert)
    data_app.command("split")(data_split)
    data_app.command("synth")(data_synth)
    data_app.command("check")(data_check)
    data_app.command("preview")(data_preview)
