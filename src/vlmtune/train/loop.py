"""``vlmtune train``: the one training loop, the same for full, freeze, LoRA, DoRA, QLoRA.

Read top to bottom: open the run directory, load model and data, build optimizer and
schedule, (resume), loop over optimizer steps, save what deploys and what it cost.

The loss is the token-level cross-entropy summed over an optimizer step's micro-batches
and divided by the step's number of answer tokens, so gradient accumulation gives the same
update as one large batch, whatever the padding.

Example:
    >>> run = train(load_config("cfg.yaml", ["train.max_steps=20"]))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from vlmtune.train import checkpoint as ckpt
from vlmtune.train import distributed as dist
from vlmtune.atomic import dir_bytes, staged_dir, write_json, write_text
from vlmtune.train.compile import compile_decoder_layers
from vlmtune.config import RunConfig, dump_config
from vlmtune.data.collate import Collator
from vlmtune.data.dataset import EncodedDataset
from vlmtune.data.encode import IGNORE, image_token_ids
from vlmtune.data.mix import mix_general
from vlmtune.data.schema import load_samples
from vlmtune.data.video import VideoSampling
from vlmtune.families import check_video_support
from vlmtune.data.format_check import warn_format_mismatch
from vlmtune.train.vision_share import VisionShare
from vlmtune.errors import ConfigError, DataError, VlmtuneError
from vlmtune.model.load import BASE_SIGNATURE, base_signature
from vlmtune.train.logs import RunLog
from vlmtune.train.loss import n_target_tokens, token_loss_sum
from vlmtune.train.flops import FlopCounter
from vlmtune.train.fused_lora import fuse_lora
from vlmtune.train.measure import Throughput, machine_info, peak_memory, reset_peak
from vlmtune.model.methods import count_parameters, param_groups, prepare, trainable_by_role
from vlmtune.train.tracking import check_installed as check_trackers, for_run as trackers_for
from vlmtune.ownership import DirLock, is_empty
from vlmtune.train.divergence import Diverged, DivergenceGuard
from vlmtune.rundir import (ADAPTER, FAILED, RunDir, check_resume_config, check_run_dir, mark_failed, open_run_dir,
                            remove_stale_saves)
from vlmtune.train.packing import check_packing, pack, packed_attention, packed_lengths
from vlmtune.train.steps import StepPlan
from vlmtune.train.vision_cache import VisionCache, resolve_mode as resolve_vision_cache
# Function-level imports: transformers' logging is adjusted only inside a run.


def load_split(cfg: RunConfig, path: str, processor: Any, family: Any, model_config: Any, *,
               mix: bool = False) -> EncodedDataset:
    """Load and encode a split; ``mix`` adds ``data.mix_general`` of general data (training)."""
    video = VideoSampling.of(cfg.data)
    samples = load_samples(path, root=cfg.data.root, allow_outside_root=cfg.data.allow_outside_root,
                           limit=cfg.data.max_samples, video=video, **cfg.data.image_cap)
    if mix and cfg.data.mix_general > 0:
        general = load_samples(cfg.data.general, allow_outside_root=cfg.data.allow_outside_root, video=video,
                               **cfg.data.image_cap)
        samples = mix_general(samples, general, cfg.data.mix_general, seed=cfg.train.seed)
    check_video_support(samples, family, processor)
    data = EncodedDataset(samples, processor, family, image_token_ids(processor, model_config),
                          cfg.data.max_length)
    if not len(data):
        raise DataError(f"no sample fits data.max_length={cfg.data.max_length} "
                        f"(skipped: {dict(data.skipped)})", file=path)
    return data


@torch.no_grad()
def validation_loss(model: torch.nn.Module, data: EncodedDataset, collate: Collator, batch_size: int,
                    device: torch.device) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(data), batch_size):
        batch = collate([data[i] for i in range(start, min(start + batch_size, len(data)))])
        count += n_target_tokens(batch)
        total += float(token_loss_sum(model, {k: _to(v, device) for k, v in batch.items()}))
    model.train()
    return total / max(count, 1)


def _no_labels(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    batch["labels"] = torch.full_like(batch["labels"], IGNORE)
    return batch


def _to(value: Any, device: torch.device) -> Any:
    return value.to(device) if isinstance(value, torch.Tensor) else value


@dataclass
class MicroBatch:
    """One micro-batch ready for ``model(**batch)``, with what the loop counts."""

    keys: list[int]  # dataset indices, in row order
    image_tokens: list[int]  # image placeholder tokens per example (vision cache)
    batch: dict[str, Any]
    samples: int
    tokens: int  # non-pad input tokens
    targets: int  # labelled tokens


def _micro_batch(keys: list[int], data: EncodedDataset, collate: Collator, cache: VisionCache,
                 model: torch.nn.Module, family: Any, packing: bool) -> MicroBatch:
    """Collate; drop pixel inputs whose features are cached; pack into one row if asked."""
    examples = [data[i] for i in keys]
    batch = collate(examples)
    counts = cache.image_tokens(examples)
    stats = dict(samples=len(keys), tokens=int(batch["attention_mask"].sum()), targets=n_target_tokens(batch))
    batch = cache.prepare(keys, counts, batch)
    if packing:
        batch = pack(batch, family, model)
    return MicroBatch(list(keys), counts, batch, **stats)


def _attention(model: torch.nn.Module, family: Any, batch: dict[str, Any], packed: bool) -> Any:
    """Packed rows attend per sample (``vlmtune.train.packing.segment_attention``), not through a
    dense ``(T, T)`` block mask; padded batches keep the model's own attention."""
    return packed_attention(model, family, packed_lengths(batch)) if packed else nullcontext()


def _save_artefacts(run: Path, model: Any, processor: Any, cfg: RunConfig, accelerator: Any,
                    state_dict: dict[str, torch.Tensor] | None) -> Path:
    """Adapter (PEFT format) or full model (HF format), each with the processor;
    ``state_dict``: the gathered full weights when the model is sharded (FSDP, ZeRO-3)."""
    target = RunDir(run).adapter if cfg.method.uses_adapter else RunDir(run).model
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.config.use_cache = True  # off while training; generation wants it back
    with staged_dir(target) as tmp:
        unwrapped.save_pretrained(tmp, safe_serialization=True,
                                  **({"state_dict": state_dict} if state_dict is not None else {}))
        processor.save_pretrained(tmp)
        if cfg.method.uses_adapter:
            write_json(tmp / BASE_SIGNATURE, base_signature(unwrapped))
    return target


def train(cfg: RunConfig, *, overwrite: bool = False, resume: bool = False,
          on_step: Callable[[int, int, dict[str, Any]], None] | None = None) -> Path:
    """Train one run into ``cfg.run_dir``, holding the directory's lock throughout (a
    second writer is refused with this process's PID; the kernel drops the lock if killed).
    ``on_step(done, total, row)`` is told after every optimizer step and after the final
    validation (``row`` has ``val_loss`` when it was measured): how a grid's progress table
    and a sweep's early stopping follow a run."""
    with DirLock() as lock:
        try:
            return _train(cfg, lock, overwrite=overwrite, resume=resume, on_step=on_step)
        except Diverged as err:
            if lock.held:  # the main process: record the failure where the report reads it
                mark_failed(cfg.run_dir, err.step, err.reason, str(err))
            last = ckpt.latest_checkpoint(RunDir(cfg.run_dir).checkpoints, warn=False)
            kept = f"the last complete checkpoint is {last}" if last else "no checkpoint was saved"
            raise VlmtuneError(f"{cfg.run_dir}: {err}; the run is marked failed ({FAILED}), {kept}; "
                               "start again with --overwrite") from None


def _train(cfg: RunConfig, lock: DirLock, *, overwrite: bool, resume: bool,
           on_step: Callable[[int, int, dict[str, Any]], None] | None) -> Path:
    if not cfg.data.train:
        raise VlmtuneError("data.train: no training set given")
    check_trackers(cfg.train.report_to)
    accelerator = dist.make_accelerator(cfg)
    main = accelerator.is_main_process
    if main:  # only the main process owns the run directory; fail before any work
        resuming = check_run_dir(cfg.run_dir, overwrite=overwrite, resume=resume)
        if not is_empty(cfg.run_dir):  # replacing or resuming: a second writer fails now
            lock.acquire(cfg.run_dir)
        if resuming:
            check_resume_config(cfg.run_dir, cfg)
            remove_stale_saves(cfg.run_dir)
        warn_format_mismatch(cfg)  # train vs eval answer format; prints only, never raises
    torch.manual_seed(cfg.train.seed)
    reset_peak(accelerator.device)
    model, processor, family = prepare(cfg, device=accelerator.device)
    check_packing(cfg.train.packing, family)  # speed options this family cannot take: fail before any work
    # LoRA's update inside one addmm (same math, fewer passes over the outputs); not under DeepSpeed,
    # whose ZeRO-3 gathers a weight only when its own module is called
    fused = fuse_lora(model) if cfg.method.uses_adapter and dist.strategy(cfg) == "ddp" else 0
    if cfg.train.compile and dist.strategy(cfg) != "ddp":
        raise ConfigError(f"train.compile: not with {dist.strategy(cfg)} (it compiles modules that "
                           "FSDP/DeepSpeed wrap and gather); use one process or DDP")
    compiled = compile_decoder_layers(model, family) if cfg.train.compile else 0
    resolve_vision_cache(cfg, family)
    train_data = load_split(cfg, cfg.data.train, processor, family, model.config, mix=True)
    val_data = load_split(cfg, cfg.data.val, processor, family, model.config) if cfg.data.val else None
    if dist.strategy(cfg) == "fsdp":
        dist.check_fsdp_data([e.sample for e in train_data.examples], accelerator.num_processes)
    run = cfg.run_dir
    if main:  # all input is valid: only now is anything written
        run = open_run_dir(cfg.run_dir, overwrite=overwrite, resume=resume, lock=lock)
        write_text(RunDir(run).config, dump_config(cfg))
        general_file = str(cfg.data.general) if cfg.data.general else None
        mixed = sum(e.sample.file == general_file for e in train_data.examples)
        write_json(RunDir(run).data, {"train": {**_data_stats(train_data), "general_mixed": mixed},
                                       "val": _data_stats(val_data) if val_data else None})
        for split, data in (("train", train_data), ("val", val_data)):
            if data is not None and data.skipped:
                reasons = ", ".join(f"{n} {why}" for why, n in sorted(data.skipped.items()))
                accelerator.print(f"skipped {sum(data.skipped.values())} {split} samples ({reasons}); "
                                  f"which ones: {RunDir(run).data}")
            if data is not None and data.images_shrunk:
                accelerator.print(f"shrank {data.images_shrunk} {split} images to data.max_image_pixels="
                                  f"{cfg.data.max_image_pixels:,} (counted in {RunDir(run).data})")
    accelerator.wait_for_everyone()
    t = cfg.train
    collate = Collator(processor, cfg.data.max_length, cache_bytes=t.input_cache_max_bytes)
    plan = StepPlan(len(train_data), t.batch_size, t.grad_accum, t.epochs, t.max_steps, t.seed,
                    accelerator.num_processes, accelerator.process_index,
                    lengths=tuple(e.length for e in train_data.examples) if t.group_by_length else None)
    groups = param_groups(model, family, t.lr, {"vision": t.vision_lr, "projector": t.projector_lr})
    optimizer = torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)
    scheduler = _scheduler(optimizer, t.schedule, math.ceil(t.warmup_ratio * plan.total_steps), plan.total_steps)
    dist.shard_units(accelerator, model, cfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    params = [p for p in model.parameters() if p.requires_grad]  # FSDP replaced them with sharded ones
    model.train()
    vision = VisionShare(model, family, plan.total_steps)  # hooks on steps 2-5 only
    cache = VisionCache.for_run(cfg, accelerator.unwrap_model(model), family, run, accelerator.process_index)
    flops = FlopCounter(accelerator.unwrap_model(model), family)

    start_step, carried = 0, {"train_seconds": 0.0, "samples": 0, "tokens": 0}
    if resume and dist.is_deepspeed(accelerator):
        raise VlmtuneError(f"{run}: --resume is not supported under DeepSpeed (its ZeRO states are sharded "
                           "per process); use train.distributed=fsdp or ddp for resumable runs")

    def restore(state: dict[str, Any]) -> None:
        dist.restore(accelerator, model, optimizer, state["weights"], state["optimizer"])

    if resume and (state := ckpt.load_latest(RunDir(run).checkpoints, scheduler, restore)) is not None:
        start_step, carried = state["step"], state["carried"]
        accelerator.print(f"resumed from {state['path']} (step {start_step})")
        if start_step >= plan.total_steps:
            accelerator.print(f"nothing left to train (checkpoint step {start_step} >= {plan.total_steps} "
                              "steps): saving its weights")

    scale = dist.loss_scale(accelerator, t.grad_accum)
    meter = Throughput(samples=carried["samples"], tokens=carried["tokens"], seconds=carried["train_seconds"],
                       flops=carried.get("flops", 0.0), steps=start_step, world=accelerator.num_processes)
    loss_value = carried.get("loss", float("nan"))  # a resume with no step left reports the checkpoint's
    guard = DivergenceGuard(t.lr)
    with RunLog(run, plan.total_steps, start_step, enabled=main,
                tracking=trackers_for(cfg, run, start_step=start_step)) as log:
        for step in range(start_step, plan.total_steps):
            meter.start()
            vision.begin(step)
            micro = [_micro_batch(idx, train_data, collate, cache, model, family, t.packing)
                     for idx in plan.micro_batches(step)]
            n_samples, n_input = sum(m.samples for m in micro), sum(m.tokens for m in micro)
            step_flops = sum(flops.of_batch(m.batch, packed_lengths(m.batch) if t.packing else None) for m in micro)
            if dist.is_fsdp(accelerator):  # a short last batch: still join every all-gather
                for idx in plan.padding(step):
                    pad = _micro_batch(idx, train_data, collate, cache, model, family, t.packing)
                    _no_labels(pad.batch)
                    micro.append(MicroBatch(pad.keys, pad.image_tokens, pad.batch, 0, 0, 0))
            n_tokens = sum(m.targets for m in micro)
            n_tokens = int(accelerator.reduce(torch.tensor(n_tokens, device=accelerator.device), "sum"))
            loss_value = 0.0
            for k, m in enumerate(micro):
                batch = {key: _to(v, accelerator.device) for key, v in m.batch.items()}
                # the backward too: gradient checkpointing recomputes the forward there
                with dist.micro_batch(accelerator, model, last=k == len(micro) - 1), \
                        _attention(model, family, batch, t.packing):
                    with accelerator.autocast(), cache.serving(m.keys, m.image_tokens, batch["input_ids"]):
                        loss = token_loss_sum(model, batch) / max(n_tokens, 1)
                    accelerator.backward(loss * scale)
                loss_value += float(loss.detach())
            if accelerator.num_processes > 1:  # the step's loss over every process's tokens
                loss_value = float(accelerator.reduce(torch.tensor(loss_value, device=accelerator.device), "sum"))
            guard.check_loss(step + 1, loss_value)
            grad_norm = accelerator.clip_grad_norm_(params, t.max_grad_norm or math.inf)  # inf: measure only
            guard.after_step(step + 1, loss=loss_value, grad_norm=None if grad_norm is None else float(grad_norm))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            meter.stop(n_samples * accelerator.num_processes, n_input * accelerator.num_processes,
                       step_flops * accelerator.num_processes)
            vision.end(step)
            done = step + 1
            row = {"loss": loss_value, "lr": scheduler.get_last_lr()[0], "epoch": round(plan.epoch_of(done), 4),
                   "samples_per_s": meter.samples_per_s, "tokens_per_s": meter.tokens_per_s, "mfu": meter.mfu}
            if grad_norm is not None:  # DeepSpeed reports it only after its first step
                row["grad_norm"] = float(grad_norm)
            if val_data is not None and t.eval_every and done % t.eval_every == 0 and done < plan.total_steps:
                row["val_loss"] = validation_loss(model, val_data, collate, t.batch_size, accelerator.device)
            if done % t.log_every == 0 or done == plan.total_steps or "val_loss" in row:
                log.record(done, row)
            log.advance(done, loss_value, meter.samples_per_s, meter.mfu)
            if on_step is not None and main:
                on_step(done, plan.total_steps, row)
            if done % t.checkpoint_every == 0 or done == plan.total_steps:
                guard.check_weights(done, params, accelerator)
                _checkpoint(run, done, model, optimizer, scheduler, accelerator, meter, plan, t.keep_checkpoints,
                            loss_value)
        guard.check_weights(plan.total_steps, params, accelerator)
        if not math.isfinite(loss_value):  # resumed with no step left, from a checkpoint older than "loss"
            loss_value = log.last("loss", float("nan"))
        final_val = log.last("val_loss", None, step=plan.total_steps) if start_step >= plan.total_steps else None
        if val_data is not None and final_val is None:
            final_val = validation_loss(model, val_data, collate, t.batch_size, accelerator.device)
            log.record(plan.total_steps, {"val_loss": final_val})
            if on_step is not None and main:
                on_step(plan.total_steps, plan.total_steps, {"val_loss": final_val, "final": True})
        cache.close()
        accelerator.wait_for_everyone()
        full = dist.full_state_dict(accelerator, model)  # every process takes part in gathering shards
        if main:
            with _saving(run, "adapter/model"):
                artefact = _save_artefacts(run, model, processor, cfg, accelerator, full)
            write_json(RunDir(run).resources, {**_resources(cfg, model, family, meter, artefact, accelerator,
                                                             plan, loss_value, final_val),
                                                "vision_share": vision.result(), "vision_cache": cache.stats(),
                                                "packing": t.packing, "group_by_length": t.group_by_length,
                                                "compiled_modules": compiled,
                                                "fused_lora_layers": fused})
            RunDir(run).failed.unlink(missing_ok=True)  # an earlier attempt's failure no longer holds
            log.resources(RunDir(run).resources)
    return run


def _checkpoint(run: Path, done: int, model: Any, optimizer: Any, scheduler: Any, accelerator: Any,
                meter: Throughput, plan: StepPlan, keep: int, loss: float) -> None:
    """Gather (every process, for FSDP) and write (main process) the step's checkpoint.
    DeepSpeed runs are not checkpointed: their optimizer states stay sharded in DeepSpeed."""
    if dist.is_deepspeed(accelerator):
        return
    weights = dist.trainable_weights(accelerator, model)
    optim_state = dist.optimizer_state(accelerator, model, optimizer)
    if accelerator.is_main_process:
        carried = {"train_seconds": meter.seconds, "samples": meter.samples, "tokens": meter.tokens,
                   "flops": meter.flops, "loss": loss}
        with _saving(run, "checkpoint"):
            ckpt.save_checkpoint(RunDir(run).checkpoints, done, weights, optim_state, scheduler,
                                 {"carried": carried, "epoch": plan.epoch_of(done)},
                                 keep=keep)
    accelerator.wait_for_everyone()


@contextmanager
def _saving(run: Path, what: str) -> Iterator[None]:
    """Turn a failed write (disk full, permissions) into one clear message; the atomic
    writers have already removed their temporary files, so earlier checkpoints are intact.
    Disk full surfaces as ``OSError`` from Python, ``RuntimeError`` from ``torch.save``
    ("file write failed") and ``SafetensorError`` from safetensors."""
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, RuntimeError, SafetensorError) as err:
        detail = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0][:200]
        last = ckpt.latest_checkpoint(RunDir(run).checkpoints, warn=False)
        kept = f"the last complete checkpoint {last} is intact" if last else "no checkpoint was saved"
        raise VlmtuneError(f"{run}: could not save the {what}: {detail}; {kept} (resume with --resume once "
                           "there is room)") from None


def _scheduler(optimizer: torch.optim.Optimizer, kind: str, warmup: int, total: int) -> Any:
    from transformers import get_scheduler

    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[kind]
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)


def _data_stats(data: EncodedDataset) -> dict[str, Any]:
    lengths = [e.length for e in data.examples]
    return {"samples": len(data), "skipped": dict(data.skipped), "skipped_where": data.skipped_where[:50],
            "images_shrunk": data.images_shrunk,
            "tokens": data.total_tokens, "max_length": data.max_length,
            "longest": max(lengths, default=0), "mean_length": sum(lengths) / max(len(lengths), 1)}


def _resources(cfg: RunConfig, model: Any, family: Any, meter: Throughput, artefact: Path, accelerator: Any,
               plan: StepPlan, final_loss: float, final_val: float | None) -> dict[str, Any]:
    unwrapped = accelerator.unwrap_model(model)
    counts = count_parameters(unwrapped)
    return {
        "method": cfg.method.kind, "family": family.name,
        "wall_time_s": round(meter.seconds, 3), "train_cpu_s": round(meter.cpu_seconds, 3), "steps": plan.total_steps,
        "samples_per_s": meter.samples_per_s, "tokens_per_s": meter.tokens_per_s,
        "flops_per_step": meter.flops / max(meter.steps, 1), "achieved_flops_per_s": meter.flops_per_s,
        "peak_flops_per_s": meter.peak_flops_per_s, "mfu": meter.mfu,
        "peak_memory": peak_memory(accelerator.device),
        "trainable_params": counts["trainable"], "total_params": counts["total"],
        "trainable_pct": 100.0 * counts["trainable"] / max(counts["total"], 1),
        "trainable_by_role": trainable_by_role(unwrapped, family),
        "artefact": artefact.name, "artefact_bytes": dir_bytes(artefact),
        "adapter_bytes": dir_bytes(artefact) if artefact.name == ADAPTER else None,
        "final_train_loss": final_loss, "final_val_loss": final_val,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(accelerator.device),
    }
