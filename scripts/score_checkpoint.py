"""Score one zoo-build stage's model (``WORK/runs/stageK/model``) while the build goes on.

Why: on a shared machine the recipe runs for hours; scoring each finished stage on the
build's own held-out split shows early whether the where-questions and the MC lookup are
being learnt, without waiting for the build's final scoring. The stage's model is copied
with KV caching re-enabled (the build's ``ship``), then VQA, MC (per question type) and
where are scored by greedy generation (``vlmtune.zoo.quality``).

Usage:
    OMP_NUM_THREADS=1 python scripts/score_checkpoint.py WORK/runs/stage1/model /tmp/stage1 \\
        --data WORK/data/heldout --n 200
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help="a stage's model/ directory")
    p.add_argument("out", type=Path, help="where to copy it (with use_cache on)")
    p.add_argument("--data", type=Path, required=True, help="a shapes-world root with test_{vqa,mc,where}.jsonl")
    p.add_argument("--n", type=int, default=200, help="test samples per task")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    from vlmtune.zoo.build import ship
    from vlmtune.zoo.quality import score_dir

    ship(args.model, args.out)
    scores = score_dir(args.out, args.data, tasks=("vqa", "mc", "where"), limit=args.n)
    for task, row in scores.items():
        metric = {k: row[k] for k in ("exact_match", "mc_accuracy") if k in row}
        print(task, row["n"], json.dumps(metric), json.dumps(row.get("by_type", {})))


if __name__ == "__main__":
    main()
