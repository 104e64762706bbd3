"""The token-independent terms of the memory plan: weights, trainable tensors, gradients,
optimizer states, ZeRO partitioning, and how PyTorch's allocator reports the total.

Why separate: these depend on the method, the quantization, the optimizer and the GPU
count, not on the batch; ``memory_activations`` holds the per-token terms. Sources per
term are in ``docs/memory_plan.md``.
"""

from __future__ import annotations

from typing import Any

from vlmtune.errors import InputError

# PyTorch's caching allocator reserves whole segments (2 MiB for small blocks, 20 MiB for
# blocks up to 10 MiB, rounded to 2 MiB above) and keeps freed blocks cached; what it
# reserves at the peak exceeds what is allocated by the rounding plus blocks split and
# stranded between differently sized allocations. A stated single factor, not fitted per
# row; 1.10 is inside the 1.05-1.15 band where the published rows agree best (docs/memory_plan.md, "Allocator").
ALLOCATOR_FACTOR = 1.10
# The CUDA context (driver state, kernels of torch/cuBLAS/cuDNN loaded lazily since CUDA
# 11.7) lives outside the allocator; nvidia-smi counts it. ~0.5 GiB on A100 / CUDA 11.8.
CUDA_CONTEXT = 512 * 2**20
GPTQ_GROUP = 128
_EMBED_NAMES = ("embed_tokens", "wte", "word_embeddings", "tok_embeddings", "embed_in")
_HEAD_NAMES = ("lm_head", "output", "embed_out")


def select_targets(shapes: Any, targets: list[str] | str | None) -> list[tuple[int, int]]:
    """(in, out) of every Linear that gets an adapter: the family's default, every decoder
    Linear (``all-linear``), or those whose name ends with one of the given leaf names."""
    if targets is None:
        return list(shapes.lora_targets)
    if targets == "all-linear":
        return [(a, b) for _ in range(shapes.layers) for _, a, b in shapes.layer_linears]
    names = [targets] if isinstance(targets, str) else list(targets)
    chosen = [(a, b) for name, a, b in shapes.layer_linears
              if any(name == t or name.endswith("." + t) for t in names)]
    if not chosen:
        known = ", ".join(n for n, _, _ in shapes.layer_linears)
        raise InputError(f"no decoder Linear named {', '.join(names)} (this model has: {known})",
                         field="--lora-targets")
    return chosen * shapes.layers


def lora_params(shapes: Any, r: int, targets: list[tuple[int, int]] | None = None) -> int:
    return sum(r * (fan_in + fan_out) for fan_in, fan_out in (shapes.lora_targets if targets is None else targets))


def adapter_params(shapes: Any, w: Any, targets: list[tuple[int, int]]) -> int:
    """LoRA A and B of every target, plus DoRA's magnitude vector (one value per output)."""
    return lora_params(shapes, w.lora_r, targets) + (sum(b for _, b in targets) if w.dora else 0)


def saved_modules(shapes: Any, names: list[str]) -> int:
    """Parameters of ``modules_to_save`` (PEFT trains a copy of each: embedding and head)."""
    total = 0
    for name in names:
        leaf = name.split(".")[-1]
        if leaf in _EMBED_NAMES:
            total += shapes.embed_params
        elif leaf in _HEAD_NAMES:
            total += shapes.head_params or shapes.embed_params
        else:
            raise InputError(f"modules_to_save {name!r}: the plan sizes the embedding "
                             f"({'/'.join(_EMBED_NAMES)}) and the LM head ({'/'.join(_HEAD_NAMES)})",
                             field="--modules-to-save")
    return total


def _rest_bytes(w: Any, method: str) -> int:
    """Bytes per parameter not quantized: fp32 after PEFT's k-bit upcast, else the dtype."""
    from vlmtune.diagnose.memory_activations import kbit_upcast

    return 4 if method.startswith("qlora") and kbit_upcast(w) else w.weight_bytes


def _role_params(shapes: Any, roles: tuple[str, ...]) -> int:
    return sum(shapes.by_role[r] for r in roles)


def trainable_params(shapes: Any, w: Any, method: str, targets: list[tuple[int, int]]) -> int:
    full = shapes.total if method == "full" else _role_params(shapes, w.trainable_roles)
    return full + adapter_params(shapes, w, targets) + saved_modules(shapes, w.modules_to_save)


def weight_bytes(shapes: Any, method: str, w: Any, targets: list[tuple[int, int]]) -> int:
    """Base weights (quantized or not), adapters, ``modules_to_save`` copies; under ZeRO-3
    a 1/N shard plus two gathered decoder layers."""
    from vlmtune.diagnose.memory_activations import quantized_head

    q = shapes.quantizable + quantized_head(shapes, w, method)
    rest = (shapes.total - q) * _rest_bytes(w, method)
    if method == "qlora8":
        base = rest + q + 4 * shapes.quantizable_rows
    elif method == "qlora4" and w.quant == "gptq4":  # int4 + fp16 scale and int4 zero per group of 128
        g_idx = 4 * shapes.layers * sum(a for _, a, _ in shapes.layer_linears)
        base = rest + q // 2 + q * 5 // (2 * GPTQ_GROUP) + g_idx
    elif method == "qlora4":  # NF4 blocks of 64, double-quantised absmax (QLoRA §2-3)
        base = rest + q // 2 + (q // 64 + q * 4 // (64 * 256) if w.double_quant else q * 4 // 64)
    else:
        base = shapes.total * w.weight_bytes
    if w.zero == 3 and w.gpus > 1:
        layer = sum(a * b for _, a, b in shapes.layer_linears) * w.weight_bytes
        base = base // w.gpus + 2 * layer
    adapters = adapter_params(shapes, w, targets) * w.adapter_bytes
    return base + adapters + saved_modules(shapes, w.modules_to_save) * _rest_bytes(w, method)


def _group_costs(n: int, param_b: int, w: Any) -> tuple[int, int, int]:
    """(gradients, states, foreach scratch) of ``n`` trainable parameters stored in
    ``param_b`` bytes. AdamW: two moments in the parameter dtype (``torch.optim``), or an
    fp32 master copy and fp32 moments (mixed precision; DeepSpeed always keeps them);
    8-bit AdamW: one byte per moment (bitsandbytes, blockwise); SGD without momentum: none."""
    master = 4 if param_b < 4 and (w.master_weights or w.zero) else 0
    moment_b = {"adamw": 4 if master else param_b, "adamw8bit": 1, "paged_adamw8bit": 1, "sgd": 0}[w.optim]
    states = n * (master + 2 * moment_b)
    scratch = n * moment_b if w.optim == "adamw" and w.device == "cuda" else 0
    return n * param_b, states, scratch


def optimizer_terms(shapes: Any, w: Any, method: str, targets: list[tuple[int, int]]) -> tuple[int, int, int]:
    """(gradients, optimizer states, optimizer-step scratch) per GPU."""
    full = shapes.total if method == "full" else _role_params(shapes, w.trainable_roles)
    saved = saved_modules(shapes, w.modules_to_save)
    adapters = adapter_params(shapes, w, targets)
    groups = [(full, w.weight_bytes), (saved, _rest_bytes(w, method)), (adapters, w.adapter_bytes)]
    grads = states = scratch = 0
    for n, param_b in groups:
        g, s, t = _group_costs(n, param_b, w)
        grads, states, scratch = grads + g, states + s, scratch + t
    if w.device == "cpu" and w.optim == "adamw":  # per-tensor loop: two copies of the largest tensor
        scratch = 2 * 4 * _largest_tensor(shapes, w, method, targets)
    if w.gpus > 1 and w.zero == 0:  # DDP's gradient buckets are a second copy of the gradients
        grads *= 2
    if w.zero >= 1:
        states, scratch = states // w.gpus, scratch // w.gpus
    if w.zero >= 2:
        grads //= w.gpus
    return grads, states, scratch


def _largest_tensor(shapes: Any, w: Any, method: str, targets: list[tuple[int, int]]) -> int:
    if method == "full":
        return max([shapes.vocab * shapes.hidden] + [a * b for a, b in shapes.lora_targets])
    return max((w.lora_r * max(fan_in, fan_out) for fan_in, fan_out in targets), default=0)


def zero_buffers(w: Any, trainable: int) -> int:
    """DeepSpeed ZeRO's communication buckets: the gradient reduce bucket and the
    all-gather bucket in 16 bit; with ``overlap_comm`` DeepSpeed documents a footprint of
    4.5 x the bucket sizes ("ZeRO optimizations": 5e8 x 2 B x 2 x 4.5 = 9 GB). A bucket is
    never larger than the trainable parameters it carries. ZeRO-3 also gathers parameters
    per module, bounded by ``stage3_max_live_parameters`` (counted in ``weight_bytes`` as two
    decoder layers)."""
    if not w.zero:
        return 0
    return int(min(w.zero_bucket, trainable) * 2 * 2 * (4.5 if w.overlap_comm else 1))


def measured_as(allocated: int, w: Any) -> int:
    """What a reader of the peak sees: ``allocated`` (``torch.cuda.max_memory_allocated``),
    ``reserved`` (the caching allocator's segments) or ``device`` (nvidia-smi: + context).
    Default: ``device`` on CUDA, ``allocated`` on CPU (no caching allocator there)."""
    measure = w.measure or ("device" if w.device == "cuda" else "allocated")
    if measure == "allocated":
        return allocated
    reserved = int(allocated * ALLOCATOR_FACTOR)
    return reserved + (CUDA_CONTEXT if measure == "device" else 0)
