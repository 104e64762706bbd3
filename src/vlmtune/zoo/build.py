"""How ``vlmtune/tiny-shapes`` is made: synth data -> tokenizer -> Qwen2-VL -> vision
pretraining (stage 0) -> language stages -> score.

Why a script in the repo: the embedded default model must be rebuildable by anyone from
nothing but this package (no download, CPU only), and its model card must point at the
exact recipe that produced the shipped weights. Every step reuses the library: the
shapes world (:func:`vlmtune.data.synth.synth`), the tiny-checkpoint builder
(:func:`vlmtune.testing.build_tiny` gives the locally trained tokenizer, the Qwen2-VL
processor, chat template and generation config), the ordinary training loop
(:func:`vlmtune.train.loop.train`, ``method.kind: full``) and the project metrics.

Only ``build_tiny``'s *architecture* is resized here (a language model wider than the
vision tower, grouped-query KV). The tasks are caption, VQA, multiple choice and the 3x3
"where" question; grounding (boxes) is left out on purpose: a skill the base lacks.

Stage 0 (:mod:`vlmtune.zoo.vision_pretrain`) first trains the vision tower and projector
alone on per-cell labels of the training scenes (shape, colour, and the cell's row and
column), the way released VLMs start from a separately pretrained vision encoder;
``minutes`` budgets only the language stages. Example: ``build(out, plan=BuildPlan(...))``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vlmtune.atomic import write_text
from vlmtune.ownership import DirLock, check_owned, is_empty, mark
from vlmtune.rundir import RunDir, read_json
from vlmtune.data.synth_tasks import NUMBER_WORDS
from vlmtune.zoo.vision_pretrain import VisionStage
# Function-level imports: the build's heavy stack (torch, transformers, the training loop) loads
# only when a build runs (CLI start-up).

FAMILY = "qwen2_vl"


@dataclass(frozen=True)
class Stage:
    """One training run of the recipe: its data mix and optimizer settings.

    ``max_shapes`` keeps only scenes with at most that many shapes (a curriculum: with one
    shape, "what colour/shape" needs no search over the image, and the vision tower learns
    colours and shapes in a few hundred steps instead of not at all). ``caption_every``
    keeps the caption of every n-th kept scene (1: all, 0: none); ``repeat_short`` lists
    each VQA and multiple-choice sample that many times. Those two set how much of the
    gradient the short, image-dependent answers get: the loss is averaged over answer
    tokens, and a caption has ~19 of them against ~2 for a VQA or MC answer.
    """

    steps: int
    lr: float
    batch_size: int = 16
    warmup_ratio: float = 0.05
    max_shapes: int = 3
    caption_every: int = 1
    repeat_short: int = 1
    repeat_mc: int = 1  # multiple-choice samples are listed repeat_short x repeat_mc times
    repeat_where: int = 1  # "where" samples (3x3 region of a shape) are listed this many times


@dataclass(frozen=True)
class BuildPlan:
    """Every number the recipe depends on (the defaults are the shipped model's)."""

    tasks: tuple[str, ...] = ("caption", "vqa", "mc", "where")
    n_scenes: int = 8000          # scenes before the 80/10/10 split; one sample per task each
    seed: int = 0
    image_size: int = 64          # 8-px patches, 2x2 merge -> 16 image tokens
    vocab_size: int = 1024
    text_hidden: int = 256
    text_layers: int = 4
    text_heads: int = 4
    text_kv_heads: int = 2
    text_ffn: int = 1024
    vision_hidden: int = 192
    vision_layers: int = 4
    vision_heads: int = 3
    vision_mlp_ratio: int = 4
    stages: tuple[Stage, ...] = (
        Stage(steps=400, lr=3.0e-4, max_shapes=1, repeat_where=2),       # curriculum: 1 shape
        Stage(steps=1800, lr=3.0e-4, caption_every=2, repeat_where=3),   # every scene
        Stage(steps=600, lr=1.0e-4, caption_every=4, repeat_where=3),    # short answers, lower lr
        Stage(steps=3000, lr=3.0e-4, caption_every=4, repeat_mc=3, repeat_where=2),  # MC letter lookup
        # short answers again at a low lr: after stage 4 the MC letter lookup stood at 0.59 (the
        # where-questions shared its steps) and relative left/right near chance
        Stage(steps=1500, lr=1.0e-4, caption_every=8, repeat_short=2, repeat_mc=2, repeat_where=1),
        # stage 5 took MC to 0.655 / 0.615 (seeds 0 / 1), VQA 0.845 / 0.79: the letter lookup again,
        # at the rate that taught it in the build before the where-questions
        Stage(steps=2000, lr=2.0e-4, caption_every=8, repeat_short=2, repeat_mc=4, repeat_where=1),
        # stage 6 took MC to 0.825 / 0.735 (seeds 0 / 1), VQA 0.89 / 0.84: the same mix at half the rate
        Stage(steps=1500, lr=1.0e-4, caption_every=8, repeat_short=2, repeat_mc=4, repeat_where=1),
        # stage 7 took MC to 0.845 / 0.765, VQA 0.905 / 0.87; seed 1's MC misses on counts and
        # positions that its VQA answers (0.63 vs 0.77, 0.62 vs 0.94): more of the letter lookup
        Stage(steps=2000, lr=1.0e-4, caption_every=8, repeat_short=2, repeat_mc=6, repeat_where=1))
    weight_decay: float = 0.01
    # stage 0 (vision_pretrain; None: skip), with the cell's row/column as a target
    vision: VisionStage | None = VisionStage(steps=1000, position=True)
    second_seed: int | None = 1   # also score a test split synthesized with this seed (None: skip)
    vision_held_out: int = 256    # validation scenes its cell accuracy is measured on
    train_vision: bool = False    # the language stages keep the stage-0 tower frozen (LLaVA-style)
    train_projector: bool = False  # the patch merger keeps its stage-0 (or seeded random) weights
    eval_per_task: int = 200      # held-out test samples scored per task after training
    threads: int = 1              # torch CPU threads: 1 is reproducible on any core count and,
                                  # on shared cores, 3x faster than 2 contended threads

    @property
    def total_steps(self) -> int:
        return sum(stage.steps for stage in self.stages)


# The shipped sizes, by zoo name. tiny-shapes-small is the same recipe at about half the
# parameters (3.6M vs 6.8M; head dims kept at 64), sized so that fully fine-tuning it on the
# demo's grounding set plans about the training memory of LoRA r=16 on tiny-shapes (`vlmtune
# plan` at the data's longest sample, batch 8, fp32: 100 vs 90 MiB), for the `budget` lesson. It
# stops after stage 7: stage 8 was added for tiny-shapes' seed-1 MC gate after it was built.
PLANS: dict[str, BuildPlan] = {
    "tiny-shapes": BuildPlan(),
    "tiny-shapes-small": BuildPlan(text_hidden=192, text_heads=3, text_kv_heads=1, text_ffn=768,
                                   vision_hidden=128, vision_heads=2, stages=BuildPlan().stages[:7]),
}


def read_plan(path: Path) -> BuildPlan:
    """The :class:`BuildPlan` a ``build.json`` records (``vlmtune zoo build --plan``), so its weights
    stay reproducible after the defaults move on. Fields newer than that build take their
    defaults, the neutral ones (no where-questions, no position target, no second seed)."""
    from vlmtune.errors import InputError

    try:
        plan = dict(json.loads(Path(path).read_text(encoding="utf-8"))["plan"])
        plan.update(stages=tuple(Stage(**stage) for stage in plan["stages"]), tasks=tuple(plan["tasks"]),
                    vision=VisionStage(**plan["vision"]) if plan.get("vision") else None)
        return BuildPlan(**{"second_seed": None, **plan})
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"not a build.json with a valid plan ({type(err).__name__}: {err})", file=path) from None


def synth_data(plan: BuildPlan, data_dir: Path) -> dict[str, Path]:
    """The shapes world for ``plan``, and in a separate directory (so training never sees it)
    the same scenes with grounding too, for scoring (images depend only on seed, split, i)."""
    from vlmtune.data.synth import synth

    files = synth(data_dir / "train", tasks=plan.tasks, n=plan.n_scenes, seed=plan.seed,
                  image_size=plan.image_size)
    held = synth(data_dir / "heldout", tasks=(*plan.tasks, "grounding"), n=plan.n_scenes,
                 seed=plan.seed, image_size=plan.image_size)
    return {"train": files["train"], "test_root": held["test"].parent}


def heldout_data(plan: BuildPlan, data_dir: Path, seed: int) -> Path:
    """Root of a shapes world of another ``seed``: its test split is a second held-out set."""
    from vlmtune.data.synth import synth

    files = synth(data_dir / f"heldout-seed{seed}", tasks=(*plan.tasks, "grounding"), n=plan.n_scenes,
                  seed=seed, image_size=plan.image_size)
    return files["test"].parent


def corpus_lines(train_jsonl: Path) -> list[str]:
    """Every text turn and reference answer of the training set, for the tokenizer."""
    lines = ["system user assistant", "You are a helpful assistant."]
    for row in train_jsonl.read_text(encoding="utf-8").splitlines():
        sample = json.loads(row)
        for message in sample["messages"]:
            lines += [part["text"] for part in message["content"] if part["type"] == "text"]
        lines += sample.get("answers", [])
    return lines


def resize_config(config: Any, plan: BuildPlan) -> Any:
    """A Qwen2-VL config with ``plan``'s tower sizes, keeping the tokenizer's ids.

    M-RoPE splits the rotary half-dimension over (time, height, width) like the released
    models (16/24/24 of 64 at head_dim 128; here 8/12/12 of 32 at head_dim 64).
    """
    from transformers import Qwen2VLConfig

    from vlmtune.testing.spec import mrope_section

    head_dim = plan.text_hidden // plan.text_heads
    data = config.to_dict()
    text = data["text_config"]
    for key in ("layer_types", "head_dim"):
        text.pop(key, None)
    text.update(hidden_size=plan.text_hidden, num_hidden_layers=plan.text_layers,
                num_attention_heads=plan.text_heads, num_key_value_heads=plan.text_kv_heads,
                intermediate_size=plan.text_ffn, use_cache=True)
    text["rope_parameters"] = {**text["rope_parameters"], "mrope_section": mrope_section(head_dim)}
    data["vision_config"].update(depth=plan.vision_layers, embed_dim=plan.vision_hidden,
                                 num_heads=plan.vision_heads, mlp_ratio=plan.vision_mlp_ratio,
                                 hidden_size=plan.text_hidden)
    for key in ("model_type", "transformers_version", "architectures"):
        data.pop(key, None)
    return Qwen2VLConfig(**data)


def init_checkpoint(plan: BuildPlan, corpus: list[str], out: Path) -> Path:
    """Seeded random-init Qwen2-VL at ``plan``'s sizes with a tokenizer trained on ``corpus``."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from vlmtune.testing import build_tiny

    build_tiny(FAMILY, out, corpus=corpus, vocab_size=plan.vocab_size, image_size=plan.image_size,
               seed=plan.seed)
    config = resize_config(AutoConfig.from_pretrained(out), plan)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.seed)
        model = AutoModelForImageTextToText.from_config(config)
    for stale in out.glob("model*.safetensors*"):
        stale.unlink()
    model.save_pretrained(out)
    return out


def run_config(plan: BuildPlan, init_dir: Path, train_jsonl: Path, runs_dir: Path, *,
               stage: int = 1) -> Any:
    """The vlmtune RunConfig of one training stage (1-based): full fine-tune, fp32, fixed seed.

    The patch merger (the projector) is frozen unless ``plan.train_projector``: trained
    from scratch, its output drifts to a large, nearly image-independent vector (norm 3 ->
    170, pairwise cosine of different images 0.24 -> 0.98 within 800 steps at lr 1e-3:
    nothing after it normalizes the scale back, the LM's RMSNorm makes it invisible to the
    loss), and the language model stops seeing the image. A random merger is a fixed,
    information-preserving map of the LayerNormed vision features.
    """
    from vlmtune.config import build_config

    s = plan.stages[stage - 1]
    return build_config({
        "name": f"stage{stage}",
        "model": {"path": str(init_dir), "dtype": "float32"},
        "method": {"kind": "full"},
        "trainable": {"projector": plan.train_projector, "vision": plan.train_vision},
        "data": {"train": str(train_jsonl), "max_length": 512},
        "train": {"max_steps": s.steps, "batch_size": s.batch_size, "lr": s.lr,
                  "warmup_ratio": s.warmup_ratio, "weight_decay": plan.weight_decay,
                  "schedule": "cosine", "seed": plan.seed, "out_dir": str(runs_dir),
                  "checkpoint_every": 250, "keep_checkpoints": 1, "log_every": 10,
                  "precision": "fp32"},
    })


def scene_sizes(train_jsonl: Path) -> dict[str, int]:
    """Number of shapes in each training scene (by image path), read from its caption
    ("There are two shapes: ..." is always the second reference)."""
    sizes = {}
    for row in train_jsonl.read_text(encoding="utf-8").splitlines():
        sample = json.loads(row)
        if sample["task"] == "caption":
            sizes[sample["images"][0]] = NUMBER_WORDS.index(sample["answers"][1].split()[2])
    return sizes


def stage_mix(train_jsonl: Path, stage: Stage, index: int) -> Path:
    """The training file of stage ``index`` (1-based): scenes with at most
    ``stage.max_shapes`` shapes, their captions thinned to every ``stage.caption_every``-th
    scene, VQA and MC samples repeated ``stage.repeat_short`` times, MC ``repeat_mc`` times
    more (repeats get an ``-r<k>`` id suffix: ids must be unique).

    Example (``caption_every=4, repeat_short=2``): 100 scenes -> 25 captions, 200 VQA,
    200 MC samples.
    """
    sizes = scene_sizes(train_jsonl)
    kept, n_captions = [], 0
    for row in train_jsonl.read_text(encoding="utf-8").splitlines():
        sample = json.loads(row)
        if sizes[sample["images"][0]] > stage.max_shapes:
            continue
        if sample["task"] == "caption":
            n_captions += 1
            if stage.caption_every and (n_captions - 1) % stage.caption_every == 0:
                kept.append(row)
            continue
        repeats = (stage.repeat_where if sample["task"] == "where"
                   else stage.repeat_short * (stage.repeat_mc if sample["task"] == "mc" else 1))
        kept.append(row)
        kept += [json.dumps({**sample, "id": f"{sample['id']}-r{k}"}) for k in range(1, repeats)]
    # The name carries the mix's own settings and the write is atomic: two builds sharing a
    # work directory never read each other's half-written or different mix.
    mix = f"s{stage.max_shapes}c{stage.caption_every}r{stage.repeat_short}m{stage.repeat_mc}w{stage.repeat_where}"
    out = train_jsonl.with_name(f"train_stage{index}-{mix}.jsonl")
    write_text(out, "\n".join(kept) + "\n")
    return out


def train_model(plan: BuildPlan, init_dir: Path, train_jsonl: Path, runs_dir: Path, *, stage: int,
                resume: bool = False) -> Path:
    """One stage with the vlmtune loop; returns the run directory (``model/`` inside). With
    ``resume``, a finished stage of the same config is kept and a started one continued."""
    from vlmtune.train.loop import train
    from vlmtune.zoo.resume import stage_state

    cfg = run_config(plan, init_dir, train_jsonl, runs_dir, stage=stage)
    state = stage_state(cfg) if resume else "new"
    if state == "done":
        print(f"resume: stage {stage} finished, kept ({cfg.run_dir})")
        return cfg.run_dir
    return train(cfg, overwrite=state == "new", resume=state == "partial")


def vision_stage(plan: BuildPlan, init_dir: Path, out: Path, *, resume: bool = False) -> dict[str, Any]:
    """Stage 0 into ``out`` (kept on ``resume`` when its record names the same settings)."""
    from vlmtune.data.synth import split_scenes
    from vlmtune.zoo.resume import kept_stage0, record_stage0
    from vlmtune.zoo.vision_pretrain import pretrain_vision

    settings = {"vision": asdict(plan.vision), "seed": plan.seed, "n_scenes": plan.n_scenes,
                "image_size": plan.image_size, "held_out": plan.vision_held_out, "init": str(init_dir)}
    if resume and (kept := kept_stage0(out, settings)) is not None:
        print(f"resume: stage 0 finished, kept ({out})")
        return kept
    scenes = {split: split_scenes(split, plan.n_scenes, seed=plan.seed, image_size=plan.image_size)
              for split in ("train", "val")}
    record = pretrain_vision(init_dir, out, scenes["train"], scenes["val"][:plan.vision_held_out], plan.vision,
                             seed=plan.seed)
    record_stage0(out, settings, record)
    return record


def ship(model_dir: Path, out: Path) -> Path:
    """Copy the trained checkpoint into ``out`` with KV caching re-enabled for generation
    (the training loop turns it off). Other files in ``out`` (the model card) are kept."""
    from transformers import AutoConfig

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("model*.safetensors*"):
        stale.unlink()
    for item in model_dir.iterdir():
        shutil.copy2(item, out / item.name)
    config = AutoConfig.from_pretrained(out)
    config.use_cache = True
    config.text_config.use_cache = True
    config.save_pretrained(out)
    return out


def build(out: str | Path, *, plan: BuildPlan = BuildPlan(), work: str | Path = "/tmp/vlmtune-zoo-build",
          minutes: float | None = None, eval_per_task: int | None = None, resume: bool = False,
          continue_from: str | Path | None = None) -> dict[str, Any]:
    """Run the whole recipe; write the checkpoint to ``out`` and ``out/build.json``.

    The stages run in order, each from the previous one's weights, each on its own mix
    (see :func:`stage_mix`). ``minutes`` caps training time by shrinking them all
    (:mod:`vlmtune.zoo.budget`); without it the build is fully determined by ``plan``.
    ``resume`` keeps the finished stages in ``work`` (:mod:`vlmtune.zoo.resume`);
    ``continue_from`` (a finished build whose stages are the plan's first ones) trains only the
    plan's later stages, from its weights. Returns the provenance record."""
    import torch

    from vlmtune.errors import InputError

    if continue_from is not None and minutes is not None:
        raise InputError("--from and --minutes do not combine: a time budget shrinks the kept stages too",
                         field="--minutes")
    out, work = Path(out), Path(work)
    if not is_empty(work):  # the build replaces its stage folders in here: only in a folder it made
        check_owned(work, "zoo work")
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(plan.threads)
    try:
        with DirLock(work):
            mark(work, "zoo work")
            return _build(out, plan, work, minutes, eval_per_task, t0, resume, continue_from)
    finally:
        torch.set_num_threads(threads)


def _build(out: Path, plan: BuildPlan, work: Path, minutes: float | None, eval_per_task: int | None,
           t0: float, resume: bool, continue_from: str | Path | None = None) -> dict[str, Any]:
    files = synth_data(plan, work / "data")
    before: dict[str, Any] = {"stage_wall_time_s": [], "final_train_loss": [], "train_samples": [],
                              "train_wall_time_s": 0.0}
    if continue_from is not None:
        from vlmtune.zoo.resume import continued_build

        before = continued_build(Path(continue_from), plan, read_plan(Path(continue_from) / "build.json"))
        init_dir = work / "continued"  # a copy: ``out`` may be the build continued from
        if init_dir.exists():
            shutil.rmtree(init_dir)
        shutil.copytree(continue_from, init_dir)
        vision_record = before["vision_stage"]
    else:
        init_dir = init_checkpoint(plan, corpus_lines(files["train"]), work / "init")
        vision_record = None
        if plan.vision is not None:
            vision_record = vision_stage(plan, init_dir, work / "vision", resume=resume)
            init_dir = work / "vision"
    kept = len(before["stage_wall_time_s"])
    if minutes is not None:
        from vlmtune.zoo.budget import fit_budget, steps_for_budget

        cfg = run_config(plan, init_dir, files["train"], Path("/nonexistent"))
        plan = fit_budget(plan, steps_for_budget(cfg, files["train"], plan.stages[0].batch_size, minutes))
        print(f"time budget {minutes} min -> {' + '.join(str(s.steps) for s in plan.stages)} steps")
    runs, model_dir = [], init_dir
    for index, stage in enumerate(plan.stages[kept:], kept + 1):
        runs.append(train_model(plan, model_dir, stage_mix(files["train"], stage, index), work / "runs",
                                stage=index, resume=resume))
        model_dir = RunDir(runs[-1]).model
    ship(model_dir, out)
    stage_resources = [read_json(RunDir(r).resources) for r in runs]
    n_eval = plan.eval_per_task if eval_per_task is None else eval_per_task
    from vlmtune.zoo.quality import score_dir

    t1 = time.perf_counter()
    scores = score_dir(out, files["test_root"], limit=n_eval) if n_eval else {}
    second = {}
    if n_eval and plan.second_seed is not None:
        second = {"seed": plan.second_seed,
                  "scores": score_dir(out, heldout_data(plan, work / "data", plan.second_seed), limit=n_eval)}
    vision_time = vision_record["wall_time_s"] if vision_record and not kept else 0.0
    record = {"plan": asdict(plan), "total_params": stage_resources[-1]["total_params"],
              "train_wall_time_s": round(before["train_wall_time_s"] + vision_time +
                                         sum(r["wall_time_s"] for r in stage_resources), 1),
              "vision_stage": vision_record,
              "stage_wall_time_s": before["stage_wall_time_s"] + [r["wall_time_s"] for r in stage_resources],
              "final_train_loss": before["final_train_loss"] + [r["final_train_loss"] for r in stage_resources],
              "build_wall_time_s": round(time.perf_counter() - t0, 1),
              "eval_wall_time_s": round(time.perf_counter() - t1, 1),
              "train_samples": before["train_samples"] + [read_json(RunDir(r).data)["train"]["samples"]
                                                          for r in runs],
              "machine": stage_resources[-1]["machine"], "scores": scores, "second_seed": second,
              "resumed": resume}
    if kept:  # which stages this run trained, and the build whose weights it started from
        record["continued_from"] = {"stages_kept": kept, "build_wall_time_s": before.get("build_wall_time_s"),
                                    "resumed": before.get("resumed"), "machine": before.get("machine"),
                                    "provenance": before.get("provenance"),
                                    "continued_from": before.get("continued_from")}
    write_text(out / "build.json", json.dumps(record, indent=2) + "\n")
    return record
