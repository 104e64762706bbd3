"""Stage 0 of the tiny-shapes recipe: pretrain the vision tower on dense scene labels.

Why: released VLMs start from a vision encoder that was pretrained on its own (CLIP,
SigLIP) before any language model sees it. Trained from scratch through the language
model's loss alone, the zoo model's tower learnt colours but never told circles,
squares and triangles apart (shape questions stayed at chance, 0.32, after 2,800 steps).
Given the answer directly, per image cell, it learns shapes in a few hundred steps.

The labels come from the scene geometry of the training split's own images
(:func:`vlmtune.data.synth.split_scenes`), one set per merged image token, i.e. per
``cell`` x ``cell`` pixel square (16 x 16 at 64 px with 8-px patches merged 2 x 2):

- ``kind``: the shape (circle, square, triangle) covering most of the cell, or none
  (a cell counts as covered from 5% of its pixels);
- ``colour``: that shape's colour, or none;
- ``centre``: whether a shape's box centre lies in the cell (a counting cue);
- opt-in (``VisionStage.position``): the cell's row and column, on cells a shape covers.
  Qwen2-VL's tower has rotary (relative) positions only, so without this target its
  tokens hardly know where they are (scripts/probe_vision_position.py: cell 0.135, chance
  0.06) and the language model cannot localise; with it, continued from the shipped
  weights, 500 steps reach 0.998 (session 4's experiment, 2026-11-25; now the build's default). A shape
  token can infer its place from the image's edges (its attention has keys on one side).

Three linear heads read the merged tokens (the projector's output, i.e. exactly what the
language model will see); the tower and the projector train, the heads are discarded.
Grounding boxes are never a target: the cells are 16 px, far coarser than a box, and no
head predicts coordinates.

Example:
    >>> import random
    >>> from vlmtune.data.synth_scene import sample_scene
    >>> kind, colour, centre = cell_targets(sample_scene(random.Random(0), 64), cell=16)
    >>> kind.shape, int(centre.sum()) == len(sample_scene(random.Random(0), 64).shapes)
    (torch.Size([16]), True)
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vlmtune.data.synth_scene import COLOURS, KINDS, Scene, _mask, render_scene
# Function-level imports: transformers loads only when stage 0 runs.

COLOUR_NAMES = tuple(sorted(COLOURS))
COVERED = 0.05  # share of a cell's pixels from which a shape labels the cell


@dataclass(frozen=True)
class VisionStage:
    """Optimizer settings of the vision pretraining (AdamW, linear warmup, cosine decay)."""

    steps: int
    lr: float = 1e-3
    batch_size: int = 32
    warmup_steps: int = 30
    weight_decay: float = 0.01
    position: bool = False  # also predict each covered cell's row and column (see above)


def cell_targets(scene: Scene, *, cell: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-cell labels of ``scene`` in row-major cell order: kind (0 none, 1 + index in
    ``KINDS``), colour (0 none, 1 + index in sorted colour names), centre (0/1 float)."""
    grid = scene.size // cell
    kind = torch.zeros(grid * grid, dtype=torch.long)
    colour = torch.zeros(grid * grid, dtype=torch.long)
    centre = torch.zeros(grid * grid)
    best = torch.full((grid * grid,), COVERED)
    for shape in scene.shapes:
        pixels = torch.frombuffer(bytearray(_mask(shape.kind, shape.region, scene.size).tobytes()),
                                  dtype=torch.uint8).view(scene.size, scene.size) > 0
        share = pixels[:grid * cell, :grid * cell].view(grid, cell, grid, cell).float().mean((1, 3)).flatten()
        wins = share > best
        kind[wins] = KINDS.index(shape.kind) + 1
        colour[wins] = COLOUR_NAMES.index(shape.colour) + 1
        best = torch.where(wins, share, best)
        cx, cy = (shape.box[0] + shape.box[2]) / 2, (shape.box[1] + shape.box[3]) / 2
        centre[min(int(cy // cell), grid - 1) * grid + min(int(cx // cell), grid - 1)] = 1.0
    return kind, colour, centre


def cell_position(kind: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column targets of row-major cells (any number of ``grid`` x ``grid``
    images back to back); -100 (ignored by the loss) where ``kind`` says no shape covers it.

    Example:
        >>> cell_position(torch.tensor([0, 2, 0, 1]), 2)
        (tensor([-100,    0, -100,    1]), tensor([-100,    1, -100,    1]))
    """
    cells = torch.arange(len(kind)) % (grid * grid)
    covered = kind > 0
    return (torch.where(covered, cells // grid, -100), torch.where(covered, cells % grid, -100))


class _Heads(torch.nn.Module):
    def __init__(self, width: int, position_grid: int = 0):
        super().__init__()
        self.kind = torch.nn.Linear(width, len(KINDS) + 1)
        self.colour = torch.nn.Linear(width, len(COLOUR_NAMES) + 1)
        self.centre = torch.nn.Linear(width, 1)
        self.grid = position_grid
        if position_grid:  # created last: without it the other heads' seeded init is unchanged
            self.row = torch.nn.Linear(width, position_grid)
            self.col = torch.nn.Linear(width, position_grid)


def _cell_size(model: Any, image_size: int) -> int:
    vision = model.config.vision_config
    cell = vision.patch_size * vision.spatial_merge_size
    if image_size % cell:
        raise ValueError(f"image_size {image_size} is not a multiple of the merged token's {cell} px")
    return cell


def _batch(processor: Any, scenes: list[Scene], cell: int) -> tuple[dict, list[torch.Tensor]]:
    inputs = processor.image_processor(images=[render_scene(s) for s in scenes], return_tensors="pt")
    labels = [torch.cat(parts) for parts in zip(*(cell_targets(s, cell=cell) for s in scenes))]
    return {"pixel_values": inputs["pixel_values"], "grid_thw": inputs["image_grid_thw"]}, labels


def _losses(model: Any, heads: _Heads, inputs: dict, labels: list[torch.Tensor]):
    tokens = model.model.visual(inputs["pixel_values"], grid_thw=inputs["grid_thw"]).pooler_output
    kind, colour, centre = heads.kind(tokens), heads.colour(tokens), heads.centre(tokens).squeeze(-1)
    loss = (torch.nn.functional.cross_entropy(kind, labels[0])
            + torch.nn.functional.cross_entropy(colour, labels[1])
            + torch.nn.functional.binary_cross_entropy_with_logits(centre, labels[2]))
    cell = None
    if heads.grid:
        row, col = cell_position(labels[0], heads.grid)
        row_logits, col_logits = heads.row(tokens), heads.col(tokens)
        if bool((row >= 0).any()):
            loss = (loss + torch.nn.functional.cross_entropy(row_logits, row)
                    + torch.nn.functional.cross_entropy(col_logits, col))
        cell = (row_logits.argmax(-1) == row) & (col_logits.argmax(-1) == col)
    return loss, (kind, colour, centre, cell)


@torch.no_grad()
def cell_accuracy(model: Any, heads: _Heads, processor: Any, scenes: list[Scene], cell: int) -> dict[str, float]:
    """Held-out accuracy of the heads: kind on covered cells, colour on all cells, the
    share of images whose predicted centre count equals their number of shapes, and with
    position heads the share of covered cells whose row and column are both right."""
    hits = {"kind": [0, 0], "colour": [0, 0], "count": [0, 0], **({"cell": [0, 0]} if heads.grid else {})}
    for start in range(0, len(scenes), 64):
        inputs, labels = _batch(processor, scenes[start:start + 64], cell)
        _, (kind, colour, centre, cell_ok) = _losses(model, heads, inputs, labels)
        covered = labels[0] > 0
        if cell_ok is not None:
            hits["cell"][0] += int(cell_ok[covered].sum())
            hits["cell"][1] += int(covered.sum())
        hits["kind"][0] += int((kind.argmax(-1)[covered] == labels[0][covered]).sum())
        hits["kind"][1] += int(covered.sum())
        hits["colour"][0] += int((colour.argmax(-1) == labels[1]).sum())
        hits["colour"][1] += labels[1].numel()
        per_image = len(labels[2]) // len(scenes[start:start + 64])
        predicted = (centre > 0).view(-1, per_image).sum(1)
        hits["count"][0] += int((predicted == labels[2].view(-1, per_image).sum(1)).sum())
        hits["count"][1] += predicted.numel()
    return {name: round(right / max(total, 1), 4) for name, (right, total) in hits.items()}


def pretrain_vision(init_dir: Path, out_dir: Path, scenes: list[Scene], held_out: list[Scene],
                    stage: VisionStage, *, seed: int) -> dict[str, Any]:
    """Train ``init_dir``'s vision tower and projector on ``scenes``; write the whole
    checkpoint (language model untouched) to ``out_dir``; return the stage's record."""
    from transformers import AutoModelForImageTextToText, AutoProcessor, get_scheduler

    processor = AutoProcessor.from_pretrained(init_dir)
    model = AutoModelForImageTextToText.from_pretrained(init_dir, dtype="float32")
    cell = _cell_size(model, scenes[0].size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        heads = _Heads(model.config.text_config.hidden_size, scenes[0].size // cell if stage.position else 0)
        model.requires_grad_(False)
        model.model.visual.requires_grad_(True)
        params = [*model.model.visual.parameters(), *heads.parameters()]
        optimizer = torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)
        schedule = get_scheduler("cosine", optimizer, num_warmup_steps=stage.warmup_steps,
                                 num_training_steps=stage.steps)
        order = random.Random(f"vlmtune-zoo/{seed}/vision")
        queue: list[int] = []
        losses, start = [], time.perf_counter()
        model.train()
        for _ in range(stage.steps):
            while len(queue) < stage.batch_size:
                epoch = list(range(len(scenes)))
                order.shuffle(epoch)
                queue += epoch
            picked, queue = queue[:stage.batch_size], queue[stage.batch_size:]
            loss, _ = _losses(model, heads, *_batch(processor, [scenes[i] for i in picked], cell))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(round(loss.item(), 4))
        model.eval()
        accuracy = cell_accuracy(model, heads, processor, held_out, cell)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(init_dir, out_dir)
    for stale in out_dir.glob("model*.safetensors*"):
        stale.unlink()
    model.save_pretrained(out_dir)
    return {"steps": stage.steps, "wall_time_s": round(time.perf_counter() - start, 1),
            "first_loss": losses[0], "final_loss": sum(losses[-20:]) / len(losses[-20:]),
            "held_out": {"images": len(held_out), **accuracy}}
