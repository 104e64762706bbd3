"""Do a model's merged vision tokens say *where* in the image they are?

Why: a box answer needs the absolute position of the object's image tokens. Qwen2-VL's
vision tower has rotary (relative) positions only and no absolute position embedding, so
its tokens carry their position only if training asked for it (a stage-0 row/column target
does: ``VisionStage(position=True)`` reaches 0.998 on covered cells); otherwise the language
model has only M-RoPE's relative offsets to work out where a token is. This probe measures how much absolute position a single token's features carry: a linear
classifier (Adam, 300 full-batch steps on standardised features) predicts each token's cell
index, and its column, from that token alone, on held-out scenes; a sanity probe predicts
the shape kind covering the cell.

Result on vlmtune/tiny-shapes (2026-11-25, 1000 training + 200 held-out scenes): cell index
0.135 on object tokens and 0.113 on background tokens (chance 1/16 = 0.06), column 0.346
and 0.347 (chance 0.25), kind 0.980. The features know *what* a cell holds, hardly *where* it is.

Usage:
    python scripts/probe_vision_position.py [--model vlmtune/tiny-shapes] [--scenes 1200] [--seed 5] [--image-size 64]
"""

from __future__ import annotations

import argparse
import random

import torch


def features(model_path: str, n_scenes: int, seed: int,
             size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Merged tokens (standardised), their cell index, the kind label, and tokens per image."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlmtune.data.synth_scene import sample_scene
    from vlmtune.zoo import is_zoo_name, resolve
    from vlmtune.zoo.vision_pretrain import _batch, _cell_size

    path = resolve(model_path) if is_zoo_name(model_path) else model_path
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    cell = _cell_size(model, size)
    per_image = (size // cell) ** 2
    rng = random.Random(seed)
    scenes = [sample_scene(rng, size) for _ in range(n_scenes)]
    feats, kinds = [], []
    with torch.no_grad():
        for start in range(0, n_scenes, 100):
            inputs, labels = _batch(processor, scenes[start:start + 100], cell)
            feats.append(model.model.visual(inputs["pixel_values"], grid_thw=inputs["grid_thw"]).pooler_output)
            kinds.append(labels[0])
    x = torch.cat(feats)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    cells = torch.arange(per_image).repeat(n_scenes)
    return x, cells, torch.cat(kinds), per_image


def probe(x: torch.Tensor, target: torch.Tensor, classes: int, mask: torch.Tensor, n_train: int) -> float:
    """Held-out accuracy of a linear classifier trained on the first ``n_train`` rows under ``mask``."""
    torch.manual_seed(0)
    head = torch.nn.Linear(x.shape[1], classes)
    opt = torch.optim.Adam(head.parameters(), 1e-2)
    train = mask.clone()
    train[n_train:] = False
    test = mask.clone()
    test[:n_train] = False
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(x[train]), target[train]).backward()
        opt.step()
    with torch.no_grad():
        return (head(x[test]).argmax(-1) == target[test]).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vlmtune/tiny-shapes")
    parser.add_argument("--scenes", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=64, help="scene size in pixels (the model's build size)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, cells, kinds, per_image = features(args.model, args.scenes, args.seed, args.image_size)
    n_train = per_image * (args.scenes * 5 // 6)
    side = int(per_image ** 0.5)
    obj = kinds > 0
    print(f"cell index ({per_image} classes, chance {1 / per_image:.2f}): object tokens "
          f"{probe(x, cells, per_image, obj, n_train):.3f}, background tokens {probe(x, cells, per_image, ~obj, n_train):.3f}")
    column = cells % side
    print(f"column ({side} classes, chance {1 / side:.2f}): object tokens {probe(x, column, side, obj, n_train):.3f}, "
          f"background tokens {probe(x, column, side, ~obj, n_train):.3f}")
    print(f"kind of the covering shape (sanity): {probe(x, kinds, int(kinds.max()) + 1, torch.ones_like(obj), n_train):.3f}")


if __name__ == "__main__":
    main()
