"""``vlmtune data convert`` and ``data split``: data subcommands kept out of cli.py (size).

Registered on cli.py's ``data`` group by :func:`register_data_commands`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

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


def register_data_commands(data_app: typer.Typer) -> None:
    data_app.command("convert")(data_convert)
    data_app.command("split")(data_split)
