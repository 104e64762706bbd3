"""Experiment: a "stage 5" of language training from the shipped tiny-shapes weights that
teaches positions, then measures whether a grounding LoRA (the demo's settings) beats the
constant-box prior.

Why: the demo's fine-tunes never beat answering the median training box (IoU 0.111);
the probe (scripts/probe_vision_position.py) says the base does not know where things are.
This script tests cheap pretraining changes on top of the shipped weights:

- position-heavy mix: every training scene's left/right or above/below question (VQA and
  MC), repeated ``--pos-repeat`` times, on top of the stage-4 mix (VQA, MC 3x, caption 1/4);
- ``--where-repeat``: a new question type, "Where is the red square?" -> a 3x3 region word
  ("top left", "top", ..., "center", ..., "bottom right", from the shape's box centre);
  never a box, so grounding stays unseen by the base;
- ``--train-vision`` / ``--train-projector``: unfreeze the tower / merger for the stage.

Then: VQA and MC on the first 200 held-out test samples (the card's set) by question type,
a dedicated position set (200 left/right + above/below test questions) and the where set
(200 test questions), and a LoRA r16 grounding run with the demo grid's settings on the
demo data (``vlmtune.zoo.demo.prepare_data``), evaluated by ``vlmtune.evaluate.run`` (IoU vs prior).

Result (2026-11-25, /work/notes/spatial-results.json; prior = median box, IoU 0.111):
language-only (1000 steps, position x2 + where x2) learns nothing positional (where 0.115,
left/right 0.50, grounding LoRA 0.045). After scripts/spatial_vision_pos.py (tower learns
row/column, 500 steps) + 1000 steps: where 0.295, LoRA 0.067; + 1500 more (where x4):
where 0.825, above/below 0.92, left/right still 0.48, VQA 0.855 / MC 0.80, LoRA 0.119
(4 epochs) and 0.268 (12 epochs; shipped weights: 0.078).

Usage:
    OMP_NUM_THREADS=1 python scripts/spatial_stage5.py --name pos --steps 1000 --pos-repeat 2
    OMP_NUM_THREADS=1 python scripts/spatial_stage5.py --name base --steps 0   # shipped weights
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path

import yaml

WHERE_SUFFIX = "Answer the question using a single word or phrase."
ROWS = ("top", "", "bottom")
COLS = ("left", "", "right")


def region_word(box: tuple[int, int, int, int], size: int) -> str:
    """3x3 region of the box centre: "top left", "top", ..., "center", ..., "bottom right"."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    col, row = min(2, int(cx * 3 / size)), min(2, int(cy * 3 / size))
    return " ".join(w for w in (ROWS[row], COLS[col]) if w) or "center"


def _sample(sid: str, image: str, task: str, prompt: str, answers: list[str], **extra) -> dict:
    return {"id": sid, "images": [image], "task": task, "answers": answers, **extra,
            "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]},
                         {"role": "assistant", "content": [{"type": "text", "text": answers[0]}]}]}


def where_samples(scenes: list, split: str, rng: random.Random, size: int) -> list[dict]:
    out = []
    for i, scene in enumerate(scenes):
        shape = rng.choice(scene.unique())
        out.append(_sample(f"{split}-{i:05d}-where", f"images/{split}_scene_{i:05d}.png", "where",
                           f"Where is the {shape.name}?\n{WHERE_SUFFIX}", [region_word(shape.box, size)]))
    return out


def position_samples(scenes: list, split: str, rng: random.Random) -> list[dict]:
    """One VQA and one MC left/right-or-above/below question per scene that has one."""
    from vlmtune.data.synth_tasks import MC_LETTER_SUFFIX, VQA_SUFFIX, _options, questions

    out = []
    for i, scene in enumerate(scenes):
        pos = questions(scene, rng)["position"]
        if not pos:
            continue
        image = f"images/{split}_scene_{i:05d}.png"
        q = rng.choice(pos)
        out.append(_sample(f"{split}-{i:05d}-posvqa", image, "vqa", f"{q.text}\n{VQA_SUFFIX}", list(q.answers)))
        q = rng.choice(pos)
        options, right = _options(q, rng)
        lines = [f"{chr(65 + k)}. {o}" for k, o in enumerate(options)]
        out.append(_sample(f"{split}-{i:05d}-posmc", image, "mc", "\n".join([q.text, *lines, MC_LETTER_SUFFIX]),
                           [chr(65 + right)], options=options))
    return out


def qtype(sample: dict) -> str:
    text = sample["messages"][0]["content"][1]["text"]
    for key, name in (("What color", "colour"), ("What shape", "shape"), ("How many", "count"),
                      ("left or to the right", "left/right"), ("above or below", "above/below"),
                      ("Where is", "where")):
        if key in text.split("\n")[0]:
            return name
    return "other"


def score_sets(model_dir: Path, sets: dict[str, list[dict]], root: Path) -> dict:
    from vlmtune.metrics import score
    from vlmtune.zoo.quality import generate, load_model

    model, processor = load_model(model_dir)
    out = {}
    for name, samples in sets.items():
        preds = generate(model, processor, samples, root)
        metric = "mc_accuracy" if name.startswith("mc") else "exact_match"
        records = [{"id": s["id"], "prediction": p, "answers": s["answers"],
                    **({"options": s["options"]} if "options" in s else {})} for s, p in zip(samples, preds)]
        summary, per = score(records, [metric])
        row = {"n": len(samples), metric: summary[metric], "by_type": {}}
        for t in sorted({qtype(s) for s in samples}):
            idx = [k for k, s in enumerate(samples) if qtype(s) == t]
            row["by_type"][t] = {"n": len(idx), metric: round(sum(per[k][metric] for k in idx) / len(idx), 3)}
        row["examples"] = [[s["messages"][0]["content"][1]["text"].split("\n")[0], s["answers"][0], p]
                           for s, p in list(zip(samples, preds))[:3]]
        out[name] = row
    return out


def grounding(model_dir: Path, work: Path, demo_data: Path, epochs: float) -> dict:
    from vlmtune.config import build_config
    from vlmtune.zoo.demo import prepare_data
    from vlmtune.evaluate.run import evaluate
    from vlmtune.train.loop import train

    prepare_data(demo_data)
    grid = yaml.safe_load((Path(__file__).parents[1] / "src/vlmtune/zoo/demo-grid.yaml").read_text())
    base = grid["base"]
    lora = next(v for v in grid["variants"] if v["name"] == "lora-r16")
    cfg = build_config({
        "name": "lora-r16", "model": {"path": str(model_dir)}, "method": lora["method"],
        "data": {**base["data"], "train": str(demo_data / "train_grounding.jsonl"),
                 "val": str(demo_data / "val_grounding.jsonl")},
        "train": {**base["train"], "epochs": epochs, "out_dir": str(work)},
        "eval": {**base["eval"], "test": str(demo_data / "test_grounding.jsonl"),
                 "metrics": {"grounding": ["iou"]}},
    })
    t0 = time.perf_counter()
    run = train(cfg, overwrite=True)
    result = evaluate(cfg, run=run, out=run, overwrite=True)
    g, prior = result["tasks"]["grounding"], result["prior"]["grounding"]
    preds = [json.loads(line)["prediction"] for line in (run / "predictions.jsonl").read_text().splitlines()]
    return {"iou": g["iou"], "iou_acc@0.5": g["iou_acc@0.5"], "unparseable": g["iou_unparseable"],
            "prior_iou": prior["iou"], "prior_answer": prior["answer"], "distinct_predictions": len(set(preds)),
            "examples": preds[:5], "wall_time_s": round(time.perf_counter() - t0, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True)
    p.add_argument("--steps", type=int, default=1000, help="0: score the shipped weights")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--pos-repeat", type=int, default=0)
    p.add_argument("--where-repeat", type=int, default=0)
    p.add_argument("--train-vision", action="store_true")
    p.add_argument("--train-projector", action="store_true")
    p.add_argument("--init", default=None, help="model dir to start from (default: the shipped weights)")
    p.add_argument("--work", default="/tmp/spatial")
    p.add_argument("--demo-data", default="/tmp/demo5/data")
    p.add_argument("--ground-epochs", type=float, default=4)
    p.add_argument("--no-ground", action="store_true")
    args = p.parse_args()

    import torch

    from vlmtune.data.synth import split_scenes
    from vlmtune.zoo import resolve
    from vlmtune.zoo.build import BuildPlan, Stage, ship, stage_mix, synth_data, train_model

    torch.set_num_threads(1)
    work = Path(args.work)
    plan = BuildPlan()
    files = synth_data(plan, work / "data") if not (work / "data/train/train.jsonl").is_file() else \
        {"train": work / "data/train/train.jsonl", "test_root": work / "data/heldout"}
    exp = work / args.name
    record: dict = {"settings": vars(args)}
    model_dir = Path(args.init) if args.init else Path(resolve("vlmtune/tiny-shapes"))
    if args.steps:
        stage = Stage(steps=args.steps, lr=args.lr, caption_every=4, repeat_mc=3)
        plan = replace(plan, stages=(*plan.stages, stage), train_vision=args.train_vision,
                       train_projector=args.train_projector)
        rows = stage_mix(files["train"], stage, 5).read_text().splitlines()
        scenes = split_scenes("train", plan.n_scenes, seed=plan.seed, image_size=plan.image_size)
        extra = []
        if args.pos_repeat:
            pos = position_samples(scenes, "train", random.Random(11))
            extra += [{**s, "id": f"{s['id']}-p{k}"} for k in range(args.pos_repeat) for s in pos]
        if args.where_repeat:
            wh = where_samples(scenes, "train", random.Random(12), plan.image_size)
            extra += [{**s, "id": f"{s['id']}-w{k}"} for k in range(args.where_repeat) for s in wh]
        rows += [json.dumps(s) for s in extra]
        random.Random(13).shuffle(rows)
        mix = files["train"].with_name(f"train_stage5-{args.name}.jsonl")  # images resolve against its dir
        mix.write_text("\n".join(rows) + "\n")
        record["mix_samples"] = len(rows)
        record["extra_samples"] = len(extra)
        t0 = time.perf_counter()
        run = train_model(plan, model_dir, mix, exp / "runs", stage=5)
        record["train_wall_time_s"] = round(time.perf_counter() - t0, 1)
        record["final_train_loss"] = json.loads((run / "resources.json").read_text())["final_train_loss"]
        model_dir = ship(run / "model", exp / "model")
    root = files["test_root"]
    test = [json.loads(line) for line in (root / "test.jsonl").read_text().splitlines()]
    test_scenes = split_scenes("test", plan.n_scenes, seed=plan.seed, image_size=plan.image_size)
    sets = {"vqa": [s for s in test if s["task"] == "vqa"][:200],
            "mc": [s for s in test if s["task"] == "mc"][:200]}
    pos = position_samples(test_scenes, "test", random.Random(21))
    sets["vqa_pos"] = [s for s in pos if s["task"] == "vqa"][:200]
    sets["mc_pos"] = [s for s in pos if s["task"] == "mc"][:200]
    sets["vqa_where"] = where_samples(test_scenes, "test", random.Random(22), plan.image_size)[:200]
    t0 = time.perf_counter()
    record["scores"] = score_sets(model_dir, sets, root)
    record["score_wall_time_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({k: {"all": v.get("exact_match", v.get("mc_accuracy")),
                          **{t: list(b.values())[1] for t, b in v["by_type"].items()}}
                      for k, v in record["scores"].items()}), flush=True)
    if not args.no_ground:
        record["grounding"] = grounding(model_dir, exp / "ground", Path(args.demo_data), args.ground_epochs)
        print(json.dumps(record["grounding"]), flush=True)
    exp.mkdir(parents=True, exist_ok=True)
    (exp / "result.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
