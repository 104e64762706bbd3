"""Experiment: continue stage 0 (vision tower + projector on per-cell labels) from the
shipped tiny-shapes weights with one more target, the cell's row and column for cells a
shape covers (``VisionStage(position=True)``), so the merged tokens carry absolute position.

Why: Qwen2-VL's tower has rotary (relative) positions only, and the probe
(scripts/probe_vision_position.py) finds the shipped tokens hardly know their cell
(0.135). A shape token can work out its absolute position from the image's edges (keys
exist on one side only), but nothing asked it to. The kind/colour/centre heads of stage 0
(fresh, as the shipped ones were discarded) keep the features the language model reads.
Grounding boxes are still never a target: rows and columns are 16-px cells.

Session 4 (2026-11-25, 500 steps, lr 3e-4, batch 32, one thread, 187 s) measured held-out
covered-cell accuracy 0.998 with the first version of this script (commit b38a6b3, the same
training written out inline; this one calls :func:`vlmtune.zoo.vision_pretrain.pretrain_vision`,
whose sample order and head initialisation differ, so its numbers differ slightly).

Writes the whole checkpoint (language model untouched) to ``--out``; follow with
``scripts/spatial_stage5.py --init OUT`` so the language model adapts to the new tokens.

Usage:
    OMP_NUM_THREADS=1 python scripts/spatial_vision_pos.py --out /tmp/spatial/vpos-vision --steps 500
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


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

    from vlmtune.atomic import write_json
    from vlmtune.data.synth import split_scenes
    from vlmtune.zoo import is_zoo_name, resolve
    from vlmtune.zoo.vision_pretrain import VisionStage, pretrain_vision

    init = Path(resolve(args.init) if is_zoo_name(args.init) else args.init)
    scenes = split_scenes("train", 8000, seed=0, image_size=64)
    held = split_scenes("val", 8000, seed=0, image_size=64)[:256]
    stage = VisionStage(args.steps, lr=args.lr, batch_size=args.batch_size, position=True)
    record = {"settings": vars(args), **pretrain_vision(init, Path(args.out), scenes, held, stage, seed=args.seed)}
    write_json(Path(args.out) / "vision_pos.json", record)
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
