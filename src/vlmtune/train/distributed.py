"""Several processes on one engine (accelerate): DDP, FSDP for full fine-tuning, DeepSpeed.

``train.distributed`` picks the strategy; ``auto`` follows the launcher (``accelerate launch``
with an FSDP or DeepSpeed config sets ``ACCELERATE_USE_FSDP`` / ``ACCELERATE_USE_DEEPSPEED``),
else a ``train.deepspeed`` JSON, else DDP. A single process trains plainly whatever is set.

FSDP is FSDP2 (``torch.distributed.fsdp.fully_shard``) through accelerate's
``FullyShardedDataParallelPlugin``: each decoder/vision block (the model's
``_no_split_modules``, or ``train.fsdp.wrap``) is one shard unit. Accelerate only enables FSDP
on accelerators; on CPU (gloo) FSDP2 works too, so :func:`make_accelerator` switches the
CPU state to FSDP itself (tested with 2 CPU processes against one process).

Checkpoints and the saved model are full (unsharded) state dicts gathered on rank 0: the
saved model loads with plain ``from_pretrained``, and no checkpoint holds per-process shards.

Example:
    >>> accelerator = make_accelerator(cfg)  # doctest: +SKIP
    >>> weights = trainable_weights(accelerator, model)  # every rank calls; rank 0 gets the tensors
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from vlmtune.config import RunConfig
from vlmtune.errors import ConfigError
# Function-level imports: accelerate and deepspeed load only when several processes run.

ENV_FSDP, ENV_DEEPSPEED = "ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"


# What the launcher asked for, read before any Accelerator of ours sets these variables.
_LAUNCHER_ENV = {name: os.environ.get(name, "false") for name in (ENV_FSDP, ENV_DEEPSPEED)}


def _env_flag(name: str) -> bool:
    return _LAUNCHER_ENV[name].lower() in ("1", "true", "yes")


def strategy(cfg: RunConfig) -> str:
    """``ddp`` | ``fsdp`` | ``deepspeed``; ``auto`` resolved from the launcher and the config."""
    chosen = cfg.train.distributed
    if chosen == "auto":
        chosen = ("fsdp" if _env_flag(ENV_FSDP) else "deepspeed" if _env_flag(ENV_DEEPSPEED) or cfg.train.deepspeed
                  else "ddp")
    launcher = "fsdp" if _env_flag(ENV_FSDP) else "deepspeed" if _env_flag(ENV_DEEPSPEED) else None
    if launcher and launcher != chosen:
        raise ConfigError(f"train.distributed: {chosen}, but accelerate launch was configured for {launcher}; "
                          f"set train.distributed={launcher} (or auto), or launch without that accelerate config")
    if chosen == "fsdp" and cfg.method.uses_adapter:
        raise ConfigError(f"train.distributed: fsdp shards full fine-tuning (method.kind full or freeze), not "
                          f"{cfg.method.kind}; adapter runs keep a frozen base per process: use ddp")
    return chosen


def make_accelerator(cfg: RunConfig) -> Any:
    """An ``Accelerator`` for one process or one of several under ``torchrun`` /
    ``accelerate launch`` (gloo on CPU, which accelerate picks only when told ``cpu=True``)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    precision = cfg.train.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    kind = strategy(cfg)
    # Vision or projector weights may get no gradient in a text-only batch: DDP must allow that.
    unused = any(cfg.trains_role(r) for r in ("vision", "projector")) or "vision" in cfg.method.lora_on
    plugins: dict[str, Any] = {}
    if kind == "fsdp":
        plugins["fsdp_plugin"] = _fsdp_plugin(cfg)
    elif kind == "deepspeed":  # DeepSpeed steps itself at accumulation boundaries: it counts micro-batches
        plugins.update(deepspeed_plugin=_deepspeed_plugin(cfg), gradient_accumulation_steps=cfg.train.grad_accum)
    launcher_fsdp = os.environ.get(ENV_FSDP)
    accelerator = Accelerator(mixed_precision={"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision],
                              cpu=not torch.cuda.is_available(),
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=unused)],
                              **plugins)
    if launcher_fsdp is None:  # accelerate sets it for our plugin: a later run in this
        os.environ.pop(ENV_FSDP, None)  # process must not take it for the launcher's setting
    if kind == "fsdp":
        _fsdp_on_cpu(accelerator, plugins["fsdp_plugin"])
    return accelerator


def _fsdp_plugin(cfg: RunConfig) -> Any:
    from accelerate.utils import FullyShardedDataParallelPlugin

    f = cfg.train.fsdp
    return FullyShardedDataParallelPlugin(
        fsdp_version=2, auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=list(f.wrap) if f.wrap else None,  # set per model: shard_units
        reshard_after_forward=f.reshard_after_forward, cpu_offload=f.cpu_offload,
        state_dict_type="FULL_STATE_DICT", activation_checkpointing=False)


def shard_units(accelerator: Any, model: torch.nn.Module, cfg: RunConfig) -> list[str]:
    """Set the layer classes FSDP shards as units before ``prepare``: ``train.fsdp.wrap``, or
    the model's ``_no_split_modules`` that occur in it (LLaVA lists CLIP text classes too)."""
    if not is_fsdp(accelerator):
        return []
    present = {type(m).__name__ for m in model.modules()}
    wanted = cfg.train.fsdp.wrap
    if wanted:
        unknown = [name for name in wanted if name not in present]
        if unknown:
            layers = sorted(n for n in present if n.endswith(("Layer", "Block")))
            raise ConfigError(f"train.fsdp.wrap: {unknown[0]} is not a module class of this model "
                              f"(its layer classes: {', '.join(layers) or 'none'})")
        names = list(wanted)
    else:
        names = sorted(n for n in (getattr(model, "_no_split_modules", None) or []) if n in present)
    accelerator.state.fsdp_plugin.transformer_cls_names_to_wrap = names
    return names


def _fsdp_on_cpu(accelerator: Any, plugin: Any) -> None:
    """Accelerate enables FSDP only on GPUs and similar devices; FSDP2 also works on CPU with
    gloo. Switch a multi-CPU state to FSDP (both shared states: AcceleratorState copies the
    partial one whenever it is re-created)."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.MULTI_CPU:
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        AcceleratorState._shared_state["distributed_type"] = DistributedType.FSDP
        AcceleratorState._shared_state["fsdp_plugin"] = plugin


def _deepspeed_plugin(cfg: RunConfig) -> Any:
    """DeepSpeed ZeRO-2/3 from a DeepSpeed JSON; GPUs only (DeepSpeed has no gloo/CPU path here)."""
    path = Path(str(cfg.train.deepspeed or ""))
    if not cfg.train.deepspeed:
        raise ConfigError("train.deepspeed: DeepSpeed needs a DeepSpeed JSON config (see configs/deepspeed/)")
    if not torch.cuda.is_available():
        raise ConfigError("train.deepspeed: DeepSpeed ZeRO needs CUDA GPUs; on CPU use train.distributed=ddp "
                          "or fsdp (torchrun --nproc_per_node N)")
    ds_config = read_deepspeed_config(path)
    try:
        from accelerate.utils import DeepSpeedPlugin
        import deepspeed  # noqa: F401
    except ImportError:
        raise ConfigError("train.deepspeed: the deepspeed package is not installed (pip install deepspeed)") from None
    t = cfg.train
    # Our loop sums a step's micro-batches itself; DeepSpeed must agree on the sizes.
    ds_config = {**ds_config, "train_micro_batch_size_per_gpu": t.batch_size,
                 "gradient_accumulation_steps": t.grad_accum,
                 "gradient_clipping": t.max_grad_norm or 0.0}
    return DeepSpeedPlugin(hf_ds_config=ds_config)


def read_deepspeed_config(path: Path) -> dict[str, Any]:
    """Parse a DeepSpeed JSON; ``zero_optimization.stage`` must be 2 or 3."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as err:
        raise ConfigError(f"cannot read the DeepSpeed config: {err.strerror}", file=path) from None
    except ValueError as err:
        raise ConfigError(f"invalid JSON: {err}", file=path) from None
    stage = data.get("zero_optimization", {}).get("stage") if isinstance(data, dict) else None
    if stage not in (2, 3):
        raise ConfigError(f"zero_optimization.stage: expected 2 or 3, got {stage!r}", file=path)
    return data


def check_fsdp_data(samples: list[Any], processes: int) -> None:
    """Under FSDP with several processes every training sample must carry an image: FSDP
    gathers the vision tower's weights in every pass that runs it, so a process whose
    micro-batch is text-only would skip collectives the others wait in (a hang)."""
    if processes < 2:
        return
    text_only = [s for s in samples if not s.images]
    if text_only and len(text_only) < len(samples):
        raise ConfigError(f"train.distributed: fsdp on {processes} processes needs an image in every training "
                          f"sample, but {len(text_only)} of {len(samples)} have none (first: {text_only[0].where}); "
                          "use train.distributed=ddp, or leave text-only samples out")


def is_deepspeed(accelerator: Any) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.DEEPSPEED


@contextmanager
def micro_batch(accelerator: Any, model: torch.nn.Module, last: bool) -> Iterator[None]:
    """Gradients are synchronised across processes on a step's last micro-batch only."""
    if is_deepspeed(accelerator):
        with accelerator.accumulate(model):  # sets DeepSpeed's accumulation boundary
            yield
    elif last:
        yield
    else:
        with accelerator.no_sync(model):
            yield


def loss_scale(accelerator: Any, grad_accum: int) -> int:
    """Factor on the step-normalised loss: DDP, FSDP and ZeRO average gradients over
    processes (undo it: the loss is already normalised by the step's tokens on every
    process); DeepSpeed also divides each micro-batch's loss by the accumulation steps."""
    return accelerator.num_processes * (grad_accum if is_deepspeed(accelerator) else 1)


def is_fsdp(accelerator: Any) -> bool:
    return bool(getattr(accelerator, "is_fsdp2", False))


def trainable_weights(accelerator: Any, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Full trainable weights on CPU. Under FSDP every rank must call (it gathers the shards);
    rank 0 receives the tensors, the others an empty dict."""
    if not is_fsdp(accelerator):
        unwrapped = accelerator.unwrap_model(model)
        return {n: p.detach().to("cpu").contiguous() for n, p in unwrapped.named_parameters() if p.requires_grad}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    names = {n for n, p in model.named_parameters() if p.requires_grad}
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {n: t.contiguous() for n, t in full.items() if n in names}


def optimizer_state(accelerator: Any, model: torch.nn.Module, optimizer: Any) -> dict[str, Any]:
    """The optimizer's state dict; under FSDP gathered full and keyed by parameter name."""
    if not is_fsdp(accelerator):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, _raw(optimizer),
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def restore(accelerator: Any, model: torch.nn.Module, optimizer: Any, weights: dict[str, torch.Tensor],
            optim_state: dict[str, Any]) -> None:
    """Load full trainable weights and optimizer state (every rank passes the full dicts)."""
    params = dict(accelerator.unwrap_model(model).named_parameters())
    missing = [n for n in weights if n not in params]
    if missing:
        raise RuntimeError(f"checkpoint has parameters the model lacks: {missing[:3]}")
    if not is_fsdp(accelerator):
        with torch.no_grad():
            for name, tensor in weights.items():
                params[name].copy_(tensor.to(params[name].device, params[name].dtype))
        optimizer.load_state_dict(optim_state)
        return
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)

    options = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(model, weights, options=options)
    set_optimizer_state_dict(model, _raw(optimizer), optim_state, options=StateDictOptions(full_state_dict=True))


def full_state_dict(accelerator: Any, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The whole model's state dict for ``save_pretrained`` when it is sharded (FSDP,
    DeepSpeed); ``None`` when the unwrapped model can save itself. Every rank must call."""
    if is_fsdp(accelerator) or is_deepspeed(accelerator):
        return accelerator.get_state_dict(model)
    return None


def _raw(optimizer: Any) -> torch.optim.Optimizer:
    while hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    return optimizer
