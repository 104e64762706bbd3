"""``vlmtune eval``: score a model (untuned, k-shot, or a run's tuned model) on a test set.

Writes ``predictions.jsonl`` (id, task, prompt, prediction, references, per-sample scores,
format_ok, latency) and ``metrics.json`` (per task: metrics + format compliance; the
optional general-ability set under ``general``; throughput). When ``data.train`` is set, it
also scores the constant-answer prior (:mod:`vlmtune.evaluate.prior`): ``metrics.json["prior"]`` and
each test record's ``prior_scores``. The same evaluator serves
every variant, so the numbers of a baseline and a fine-tune compare directly.

Metrics per task come from ``eval.metrics`` (a list for every task, or a mapping
task -> list); tasks not named there use
:data:`vlmtune.evaluate.scoring.DEFAULT_METRICS`.

Example:
    >>> result = evaluate(cfg, run=Path("runs/shapes-lora"), out=Path("runs/shapes-lora"))  # doctest: +SKIP
    >>> result["tasks"]["grounding"]["iou"]
    0.41
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from rich.progress import Progress

from vlmtune.atomic import write_json, write_jsonl
from vlmtune.config import RunConfig
from vlmtune.data.schema import Sample, load_samples, text_of
from vlmtune.data.video import VideoSampling
from vlmtune.families import check_video_support
from vlmtune.errors import DataError, RunDirError
from vlmtune.evaluate.generate import MIN_ROUND_ROWS, Generation, Generator
from vlmtune.evaluate.scoring import score_records
from vlmtune.ownership import DirLock, is_empty, mark, marker_kind
from vlmtune.rundir import METRICS, RunDir
# Function-level imports: model loading (transformers, peft) happens only when generating, not when
# scoring records.

def _load_eval_set(path: str, cfg: RunConfig) -> list[Sample]:
    samples = load_samples(path, root=cfg.data.root, allow_outside_root=cfg.data.allow_outside_root,
                           require_answer=False, limit=cfg.eval.max_samples, video=VideoSampling.of(cfg.data),
                           **cfg.data.image_cap)
    for s in samples:
        if not s.answers:
            raise DataError("no reference answer (neither 'answers' nor a final assistant turn)",
                            file=s.file, line=s.line, field="answers")
        if not s.prompt_messages or s.prompt_messages[-1]["role"] != "user":
            raise DataError("the prompt must end with a user turn", file=s.file, line=s.line, field="messages")
    return samples


def shots_for(sample: Sample, pool: list[Sample], k: int, seed: int) -> list[Sample]:
    """``k`` in-context examples of the same task (any task if too few), never the sample itself."""
    if k == 0:
        return []
    rng = random.Random(f"{seed}:{sample.id}")
    same = [s for s in pool if s.task == sample.task and s.id != sample.id]
    source = same if len(same) >= k else [s for s in pool if s.id != sample.id]
    return rng.sample(source, min(k, len(source)))


def build_prompt(sample: Sample, shots: list[Sample]) -> tuple[list[dict], list[Any]]:
    """Messages and images of a (few-shot) prompt: each shot is a user turn and its answer."""
    messages: list[dict] = []
    images: list[Any] = []
    for shot in shots:
        messages += [m for m in shot.prompt_messages if m["role"] != "system"]
        messages.append({"role": "assistant", "content": [{"type": "text", "text": shot.answers[0]}]})
        images += shot.load_images()
    messages += sample.prompt_messages
    images += sample.load_images()
    return messages, images


def prompt_videos(sample: Sample, shots: list[Sample]) -> list[Any]:
    """The video clips of :func:`build_prompt`'s prompt, in the same order."""
    return [clip for s in [*shots, sample] for clip in s.load_videos()]


def _records(samples: list[Sample], generations: list[Any]) -> list[dict]:
    return [{"id": s.id, "task": s.task or "default", "images": [str(p) for p in s.images],
             "prompt": g.prompt, "prediction": g.text, "references": s.answers, "answers": s.answers,
             "options": s.options, "latency_s": g.latency_s}
            for s, g in zip(samples, generations)]


def generate_all(generator: Generator, samples: list[Sample], pool: list[Sample], cfg: RunConfig,
                 label: str) -> list[dict]:
    """Generate for every sample in batches of ``eval.batch_size``; records in input order.

    Batches are formed from samples sorted by (task, images, prompt length) (see
    :func:`batch_order`; samples about the same images first, together, when the generator
    prefills shared images once): similar prompts pad little, and similar answers end
    together. Greedy outputs do not depend on the batch (tested), so the order only changes
    the speed.
    """
    generations: list[Generation | None] = [None] * len(samples)
    bs = cfg.eval.batch_size
    by_image = (generator.share_prefix and generator.share_images and generator.rounds and not pool
                and bs >= MIN_ROUND_ROWS)  # small batches: by task, so short answers end together
    order = batch_order(samples, by_image=by_image)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"eval {label}", total=len(samples))
        for start in range(0, len(order), bs):
            chunk = order[start:start + bs]
            shots = {i: shots_for(samples[i], pool, cfg.eval.shots, cfg.train.seed) for i in chunk}
            prompts = [build_prompt(samples[i], shots[i]) for i in chunk]
            videos = [prompt_videos(samples[i], shots[i]) for i in chunk]
            extra = {"videos": videos} if any(videos) else {}
            for i, gen in zip(chunk, generator([p[0] for p in prompts], [p[1] for p in prompts], **extra)):
                generations[i] = gen
            progress.advance(task, len(chunk))
    return _records(samples, generations)


def batch_order(samples: list[Sample], by_image: bool) -> list[int]:
    """Sample indices in batch order. Samples likely to have equally long prompts and answers
    sort next to each other; with ``by_image``, samples asking about the same images come
    first, together, so a batch can prefill their image tokens once (the rounds of
    :mod:`vlmtune.evaluate.rounds` drop their short answers early)."""
    counts: dict[tuple, int] = {}
    for s in samples:
        counts[tuple(s.images)] = counts.get(tuple(s.images), 0) + 1

    def key(i: int) -> tuple:
        s = samples[i]
        text = sum(len(text_of(m)) for m in s.prompt_messages)
        media = len(s.images) + len(s.videos)
        if by_image and s.images and not s.videos and counts[tuple(s.images)] > 1:
            return (0, str(media), tuple(str(p) for p in s.images), s.task or "", text)
        return (1, s.task or "", media, (), text)
    return sorted(range(len(samples)), key=key)


def load_model_for_eval(cfg: RunConfig, run: Path | None) -> tuple[Any, Any, Any]:
    if run is not None:
        from vlmtune.model.trained import load_trained

        model, processor, family, _ = load_trained(run)
        if cfg.eval.merge and hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
    else:
        from vlmtune.model.load import load_base

        model, processor, family = load_base(cfg.model)
    model.eval()
    return model, processor, family


def evaluate(cfg: RunConfig, *, run: Path | None = None, out: Path, overwrite: bool = False) -> dict[str, Any]:
    """Generate on ``eval.test`` (and ``eval.general``), score, write into ``out``, holding
    its lock (a run being trained or evaluated elsewhere is refused with that PID)."""
    out = Path(out)
    with DirLock() as lock:
        return _evaluate(cfg, run, out, lambda: _claim_out(out, overwrite, lock), overwrite)


def _claim_out(out: Path, overwrite: bool, lock: DirLock) -> None:
    """Create and lock ``out``; redo an evaluation only in a directory vlmtune made."""
    paths = RunDir(out)
    if paths.metrics.exists() and not overwrite:
        raise RunDirError(f"{out}: already evaluated ({METRICS} exists); pass --overwrite to redo it")
    ours = marker_kind(out) is not None or paths.config.is_file()
    if paths.metrics.exists() and not ours:
        raise RunDirError(f"{out}: refusing to replace {METRICS}: vlmtune did not create this directory")
    fresh = is_empty(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"{out}: cannot create the output directory: {err.strerror}") from None
    lock.acquire(out)
    if fresh:
        mark(out, "eval")


def _evaluate(cfg: RunConfig, run: Path | None, out: Path, claim: Any, overwrite: bool) -> dict[str, Any]:
    if RunDir(out).metrics.exists() and not overwrite:
        raise RunDirError(f"{out}: already evaluated ({METRICS} exists); pass --overwrite to redo it")
    test_path = cfg.eval.test or cfg.data.val
    if not test_path:
        raise DataError("no evaluation set: set eval.test (or data.val)", field="eval.test")
    test = _load_eval_set(test_path, cfg)
    general = _load_eval_set(cfg.eval.general, cfg) if cfg.eval.general else []
    pool = (load_samples(cfg.data.train, root=cfg.data.root, video=VideoSampling.of(cfg.data), **cfg.data.image_cap)
            if cfg.eval.shots and cfg.data.train else [])
    if cfg.eval.shots and not pool:
        raise DataError("eval.shots needs data.train to draw in-context examples from", field="data.train")
    claim()  # all input is valid: create and lock the output before the long part
    model, processor, family = load_model_for_eval(cfg, run)
    check_video_support([*test, *general, *pool], family, processor)
    e = cfg.eval
    generator = Generator(model, processor, family, max_new_tokens=e.max_new_tokens,
                          do_sample=e.do_sample, temperature=e.temperature, top_p=e.top_p)
    started = time.perf_counter()
    records = generate_all(generator, test, pool, cfg, "test")
    seconds = time.perf_counter() - started
    result: dict[str, Any] = {"tasks": score_records(records, cfg), "general": None,
                              "samples_per_s": len(records) / seconds if seconds else 0.0,
                              "latency_s_mean": sum(r["latency_s"] for r in records) / len(records),
                              "shots": e.shots, "model": cfg.model.path, "adapter": run is not None
                              and RunDir(run).adapter.is_dir(), "merged": bool(e.merge and run),
                              "test": str(test_path), "n": len(records)}
    if cfg.data.train:
        from vlmtune.evaluate.prior import constant_answers, score_prior

        train = load_samples(cfg.data.train, root=cfg.data.root, allow_outside_root=cfg.data.allow_outside_root)
        result["prior"] = score_prior(records, constant_answers(train), cfg)
    if general:
        # Zero-shot always: the general set measures what the weights still know, and examples
        # of the tuned task would only mislead on other tasks (a k-shot variant cannot forget).
        general_records = generate_all(generator, general, [], cfg, "general")
        result["general"] = score_records(general_records, cfg)
        for rec in general_records:
            rec["split"] = "general"
        records += general_records
    try:
        write_jsonl(RunDir(out).predictions, [{k: v for k, v in r.items() if k != "answers"} for r in records])
        write_json(RunDir(out).metrics, result)
    except OSError as err:
        raise RunDirError(f"{out}: could not write the evaluation: {err.strerror or err}") from None
    return result
