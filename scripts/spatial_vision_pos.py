"""Experiment: continue stage 0 (vision tower + projector on per-cell labels) from the
shipped tiny-shapes weights with one more target, the cell's row and column for cells a
shape covers, so the merged tokens carry absolute position.

Why: Qwen2-VL's tower has rotary (relative) positions only, and the probe
(scripts/probe_vision_position.py) finds the shipped tokens hardly know their cell
(0.135). A shape token can work out its absolute position from the image's edges (keys
exist on one side only), but nothing asked it to. The kind/colour/centre heads of stage 0
(fresh, as the shipped ones were discarded) keep the features the language model reads.
Grounding boxes are still never a target: rows and columns are 16-px cells.

Writes the whole checkpoint (language model untouched) to ``--out``; follow with
``scripts/spatial_stage5.py --init OUT`` so the language model adapts to the new tokens.

Usage:
    OMP_NUM_THREADS=1 python scripts/spatial_vision_pos.py --out /tmp/spatial/vpos-vision --steps 500
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

import torch


def position_targets(kind: torch.Tensor, per_image: int, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of every cell (row-major); -100 (ignored) where no shape covers it."""
    cells = torch.arange(per_image).repeat(len(kind) // per_image)
    row, col = cells // grid, cells % grid
    row[kind == 0] = -100
    col[kind == 0] = -100
    return row, col


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init", default="vlmtune/tiny-shapes")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)

    from transformers import AutoModelForImageTextToText, AutoProcessor, get_scheduler

    from vlmtune.data.synth import split_scenes
    from vlmtune.zoo import is_zoo_name, resolve
    from vlmtune.zoo.vision_pretrain import _batch, _cell_size, _Heads

    init = Path(resolve(args.init) if is_zoo_name(args.init) else args.init)
    processor = AutoProcessor.from_pretrained(init)
    model = AutoModelForImageTextToText.from_pretrained(init, dtype="float32")
    scenes = split_scenes("train", 8000, seed=0, image_size=64)
    held = split_scenes("val", 8000, seed=0, image_size=64)[:256]
    cell = _cell_size(model, 64)
    grid = 64 // cell
    per_image = grid * grid
    ce = torch.nn.functional.cross_entropy
    torch.manual_seed(args.seed)
    width = model.config.text_config.hidden_size
    heads = _Heads(width)
    pos = torch.nn.ModuleDict({"row": torch.nn.Linear(width, grid), "col": torch.nn.Linear(width, grid)})
    model.requires_grad_(False)
    model.model.visual.requires_grad_(True)
    params = [*model.model.visual.parameters(), *heads.parameters(), *pos.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    schedule = get_scheduler("cosine", optimizer, num_warmup_steps=30, num_training_steps=args.steps)

    def losses(batch_scenes):
        inputs, labels = _batch(processor, batch_scenes, cell)
        tokens = model.model.visual(inputs["pixel_values"], grid_thw=inputs["grid_thw"]).pooler_output
        row, col = position_targets(labels[0], per_image, grid)
        out = {"kind": heads.kind(tokens), "colour": heads.colour(tokens), "row": pos["row"](tokens),
               "col": pos["col"](tokens)}
        loss = (ce(out["kind"], labels[0]) + ce(out["colour"], labels[1])
                + torch.nn.functional.binary_cross_entropy_with_logits(heads.centre(tokens).squeeze(-1), labels[2])
                + ce(out["row"], row) + ce(out["col"], col))
        return loss, out, labels, row, col

    order = random.Random(f"spatial/{args.seed}")
    queue: list[int] = []
    log, start = [], time.perf_counter()
    model.train()
    for step in range(args.steps):
        while len(queue) < args.batch_size:
            epoch = list(range(len(scenes)))
            order.shuffle(epoch)
            queue += epoch
        picked, queue = queue[:args.batch_size], queue[args.batch_size:]
        loss, *_ = losses([scenes[i] for i in picked])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        log.append(round(loss.item(), 4))
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.4f}", flush=True)
    model.eval()
    hits = {"kind": [0, 0], "colour": [0, 0], "row": [0, 0], "col": [0, 0], "cell": [0, 0]}
    with torch.no_grad():
        for s in range(0, len(held), 64):
            _, out, labels, row, col = losses(held[s:s + 64])
            covered = labels[0] > 0
            r_ok = out["row"].argmax(-1) == row
            c_ok = out["col"].argmax(-1) == col
            for name, ok in (("kind", out["kind"].argmax(-1) == labels[0]), ("row", r_ok), ("col", c_ok),
                             ("cell", r_ok & c_ok)):
                hits[name][0] += int(ok[covered].sum())
                hits[name][1] += int(covered.sum())
            hits["colour"][0] += int((out["colour"].argmax(-1) == labels[1]).sum())
            hits["colour"][1] += labels[1].numel()
    out_dir = Path(args.out)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(init, out_dir)
    for stale in out_dir.glob("model*.safetensors*"):
        stale.unlink()
    model.save_pretrained(out_dir)
    record = {"settings": vars(args), "wall_time_s": round(time.perf_counter() - start, 1),
              "first_loss": log[0], "final_loss": round(sum(log[-20:]) / 20, 4),
              "held_out_covered_cells": {k: round(a / max(b, 1), 4) for k, (a, b) in hits.items()}}
    (out_dir / "vision_pos.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
