"""The memory plan of a run config, and of every training variant of a grid before it runs.

Why: a grid of full / LoRA / QLoRA variants is where "will it fit?" is asked most, and a
variant that cannot fit the GPU fails only after its model is loaded. ``vlmtune compare
--gpu-mem`` plans each variant with the same code as ``vlmtune plan`` (the settings the
run will use: method, rank, dropout, targets, trainable roles, max_length, batch,
checkpointing, precision, attention, DeepSpeed stage), flags the ones that will not fit
before any runs, and leaves ``preflight.json`` for the report's "would it fit" note.

Example:
    >>> rows = preflight([("lora", cfg)], gpu_bytes=parse_size("24GiB"))  # doctest: +SKIP
    >>> rows[0]["fits"]
    True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_DTYPES = {"bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2, "fp32": 4, "float32": 4}


def workload_fields(cfg: Any) -> dict[str, Any]:
    """Workload fields (plus ``model``, ``method``, ``data``, ``data_root``) of a RunConfig."""
    m = cfg.method
    roles = tuple(r for r in ("vision", "projector", "language") if getattr(cfg.trainable, r))
    out: dict[str, Any] = {
        "model": cfg.model.path, "seq": cfg.data.max_length, "batch": cfg.train.batch_size,
        "method": {"qlora": f"qlora{m.bits}"}.get(m.kind, m.kind), "lora_r": m.r, "lora_dropout": m.dropout,
        "lora_targets": m.targets, "double_quant": m.double_quant,
        "gradient_checkpointing": cfg.train.gradient_checkpointing, "grad_accum": cfg.train.grad_accum,
        "data": cfg.data.train, "data_root": cfg.data.root,
    }
    if roles:
        out["trainable_roles"] = roles
    dtype = cfg.train.precision if cfg.train.precision != "auto" else cfg.model.dtype
    if dtype in _DTYPES:
        out["weight_bytes"] = _DTYPES[dtype]
    attn = cfg.model.attn_implementation or ""
    if attn:
        out["attn"] = "flash" if "flash" in attn else attn
    if cfg.train.deepspeed:
        out["zero"] = _zero_stage(Path(cfg.train.deepspeed))
    return out


def _zero_stage(path: Path) -> int:
    from vlmtune.errors import InputError

    try:
        return int(json.loads(path.read_text()).get("zero_optimization", {}).get("stage", 0))
    except (OSError, ValueError, AttributeError) as err:
        raise InputError(f"cannot read the DeepSpeed config: {err}", file=path, field="train.deepspeed") from None


def plan_run(cfg: Any, shapes: Any = None, *, on_data: bool = False) -> Any:
    """The MethodPlan of one run config at its max_length and batch size; ``on_data``: at its
    training file's longest sample instead (``vlmtune plan --data``: tokens, images, image side)."""
    from vlmtune.diagnose.memory_plan import Workload, model_shapes, plan_method

    fields = workload_fields(cfg)
    model, method = fields.pop("model"), fields.pop("method")
    data, root = fields.pop("data"), fields.pop("data_root")
    shapes = shapes or model_shapes(model)
    work = Workload(**fields)
    if on_data:
        from vlmtune.diagnose.data_lengths import data_workloads

        work = data_workloads(model, data, root, shapes, work)["longest"]
    return plan_method(shapes, work, method)


def preflight(variants: list[tuple[str, Any]], gpu_bytes: int) -> list[dict[str, Any]]:
    """``[{"name", "method", "peak", "fits"}]`` for (name, RunConfig) pairs; one shapes
    count per base model. A variant whose config cannot be planned gets ``"error"``."""
    from vlmtune.diagnose.memory_plan import model_shapes
    from vlmtune.errors import VlmtuneError

    shapes: dict[str, Any] = {}
    rows = []
    for name, cfg in variants:
        try:
            if cfg.model.path not in shapes:
                shapes[cfg.model.path] = model_shapes(cfg.model.path)
            plan = plan_run(cfg, shapes[cfg.model.path])
        except VlmtuneError as err:
            rows.append({"name": name, "error": str(err)})
            continue
        rows.append({"name": name, "method": plan.method, "seq": plan.seq, "batch": plan.batch,
                     "peak": plan.peak, "gpu_bytes": gpu_bytes, "fits": plan.peak <= gpu_bytes})
    return rows
