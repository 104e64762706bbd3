"""Predict peak training memory per method from config.json and the training settings.

Why: "does it fit, and with which method?" is the first question on limited hardware, and
trying it costs a model download and an out-of-memory crash. Parameters are counted
exactly on the meta device when transformers knows the architecture, else from the
config's fields (remote-code models, read as data); the rest is arithmetic, itemised so
the user sees what dominates. Every setting that changes memory is a :class:`Workload`
field (and a ``vlmtune plan`` flag). The derivation of every term and its source, and the
validation against published GPU measurements, are in ``docs/memory_plan.md``:

* weights: 16-bit (or fp32) parameters; QLoRA stores the decoder's Linear weights in NF4
  (bitsandbytes, + double-quantised constants) or GPTQ int4 (+ group-128 scales/zeros),
  everything else in 16 bit, or fp32 after PEFT's k-bit preparation (not for GPTQ);
  ``modules_to_save`` adds a trainable copy of the embedding / head;
* trainable tensors, their gradients and optimizer states by optimizer (AdamW: 2 moments
  in the parameter dtype, fp32 master + moments with master weights; 8-bit AdamW: 2 B),
  partitioned across GPUs by ZeRO stage;
* activations per token and layer (``memory_activations``), logits as the loss needs them;
* peak = weights + optimizer states + max(activations + logits (+ gradients when
  accumulating over micro-batches, + a 4-bit weight dequantized for its matmul),
  gradients + optimizer scratch), then the measure asked for: ``allocated`` (PyTorch's ``max_memory_allocated``),
  ``reserved`` (x ``ALLOCATOR_FACTOR``, the caching allocator's segments) or ``device``
  (reserved + ``CUDA_CONTEXT``, what nvidia-smi shows).

Example:
    >>> shapes = model_shapes("/work/shared/model-configs/Qwen-Qwen2-VL-7B-Instruct.json")  # doctest: +SKIP
    >>> [p.fits for p in plan_memory(shapes, Workload(seq=2048), gpu_bytes=parse_size("80GiB"))]  # doctest: +SKIP
    [False, True, True, True]
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from vlmtune.diagnose.memory_activations import (  # noqa: F401  (re-exported)
    ACT_SAVED, activation_bytes, dequantized_bytes, image_geometry, kbit_upcast, language_activations, logits_bytes,
    masked_layers, vision_activations,
)
from vlmtune.diagnose.memory_terms import (  # noqa: F401  (re-exported)
    ALLOCATOR_FACTOR, CUDA_CONTEXT, lora_params, measured_as, optimizer_terms, select_targets, trainable_params,
    weight_bytes, zero_buffers,
)
from vlmtune.families.shapes import ModelShapes, model_shapes  # noqa: F401  (re-export)
from vlmtune.errors import InputError

METHODS = ("full", "lora", "qlora8", "qlora4")  # what ``--method all`` plans
ALL_METHODS = ("full", "freeze", "lora", "dora", "qlora8", "qlora4")
_CHOICES = {"attn": ("eager", "sdpa", "flash"), "optim": ("adamw", "adamw8bit", "paged_adamw8bit", "sgd"),
            "quant": ("bnb4", "nf4", "gptq4"), "loss": ("vlmtune", "hf", "model", "chunked"),
            "measure": ("allocated", "reserved", "device"), "device": ("cuda", "cpu"), "mlp_act": tuple(ACT_SAVED)}
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


@dataclass
class Workload:
    """What one training step processes and how. ``weight_bytes`` 2 = bf16/fp16, 4 = fp32."""

    seq: int = 2048
    batch: int = 1
    images: int = 1
    image_size: int | None = None  # None: the vision config's, else 448
    weight_bytes: int = 2
    master_weights: bool = True
    gradient_checkpointing: bool = False
    activation_offload: bool = False  # checkpointed layer inputs kept in CPU memory
    lora_r: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] | str | None = None  # None: the family's default; "all-linear"; leaf names
    modules_to_save: list[str] = field(default_factory=list)  # embed_tokens/wte, lm_head: trained copies
    trainable_roles: tuple[str, ...] | None = None  # full weights that train; None: the method's default
    adapter_bytes: int = 4  # PEFT keeps adapters in fp32 (autocast_adapter_dtype); old PEFT: the base dtype
    double_quant: bool = True
    quant: str = "bnb4"  # bnb4 | nf4 (the same: bitsandbytes NF4) | gptq4
    kbit_upcast: bool = True  # PEFT's prepare_model_for_kbit_training (vlmtune calls it)
    bnb_keeps_inputs: bool = False  # bitsandbytes < 0.43.2: each 4-bit matmul keeps its input for the backward
    optim: str = "adamw"
    gpus: int = 1
    zero: int = 0  # DeepSpeed ZeRO stage / FSDP equivalent: 0 none, 1-2 states (+grads), 3 weights too
    zero_bucket: int = 500_000_000  # DeepSpeed reduce/allgather bucket (elements; its default 5e8)
    overlap_comm: bool = True  # DeepSpeed overlap_comm (4.5x bucket footprint)
    attn: str = "sdpa"
    loss: str = "vlmtune"
    answer_tokens: int | None = None  # labelled tokens per sample (vlmtune's loss keeps only their logits)
    measure: str | None = None  # None: device on CUDA, allocated on CPU
    device: str = "cuda"  # cuda | cpu: dropout masks and AdamW scratch differ
    dora: bool = False  # set by plan_method for method "dora"
    mlp_act: str | None = None  # the MLP activation as the training code runs it; None: the config's hidden_act
    grad_accum: int = 1  # micro-batches per optimizer step: >1 keeps the gradients through the later ones
    repeat_kv: bool = False  # the training code copies K/V to every query head before attention (lit-gpt)
    quantize_head: bool = False  # QLoRA-4 bitsandbytes: the untied LM head is 4-bit too (Lightning Fabric's plugin)
    bnb_fp16_state: bool = False  # 4-bit weights quantized from fp16 (bitsandbytes < 0.43.0, Fabric) in a bf16 model

    def check(self) -> None:
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value is not None and value not in choices:
                raise InputError(f"unknown {name} {value!r}; choose from {', '.join(choices)}",
                                 field=f"--{name.replace('_', '-')}")
        if self.zero not in (0, 1, 2, 3) or self.gpus < 1:
            raise InputError(f"--zero must be 0-3 and --gpus >= 1 (got {self.zero}, {self.gpus})", field="--zero")
        if self.seq < 1 or self.batch < 1 or (self.answer_tokens is not None and self.answer_tokens < 1):
            raise InputError("--seq, --batch and --answer-tokens must be >= 1", field="--seq")
        if self.grad_accum < 1:
            raise InputError(f"--grad-accum must be >= 1 (got {self.grad_accum})", field="--grad-accum")


@dataclass
class MethodPlan:
    method: str
    trainable: int
    weights: int
    gradients: int
    optimizer: int
    activations: int
    logits: int
    vision_activations: int
    peak: int
    dequantized: int = 0  # a 4-bit weight dequantized for its matmul, where it adds to the peak
    allocated: int = 0  # before the allocator factor and the CUDA context
    optimizer_scratch: int = 0
    zero_buffers: int = 0
    seq: int = 0
    batch: int = 0
    case: str = ""  # with --data: longest | p95 | p50
    fits: bool | None = None
    max_batch: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def parse_size(text: str) -> int:
    """``"80GiB"`` -> bytes; accepts B, KB/MB/GB/TB (powers of 10) and KiB/MiB/GiB/TiB.

    Example:
        >>> parse_size("1.5GiB")
        1610612736
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    if not match or match.group(2).upper() not in _UNITS:
        raise InputError(f"not a memory size: {text!r} (use e.g. 80GiB, 24GB, 512MiB)", field="--gpu-mem")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _for_method(w: Workload, method: str) -> Workload:
    """The workload as ``method`` runs it: default trainable roles, DoRA flag."""
    from dataclasses import replace

    roles = w.trainable_roles
    if roles is None:
        roles = {"full": ("vision", "projector", "language"), "freeze": ("projector",)}.get(method, ())
    return replace(w, trainable_roles=tuple(roles), dora=method == "dora")


def plan_method(shapes: ModelShapes, w: Workload, method: str, batch: int | None = None) -> MethodPlan:
    """Itemised peak for one method at ``batch`` (default ``w.batch``)."""
    if method not in ALL_METHODS:
        raise InputError(f"unknown method {method!r}; choose from {', '.join(ALL_METHODS)} or all", field="--method")
    w.check()
    w = _for_method(w, method)
    batch = w.batch if batch is None else batch
    targets = select_targets(shapes, w.lora_targets) if method in ("lora", "dora", "qlora4", "qlora8") else []
    weights = weight_bytes(shapes, method, w, targets)
    trainable = trainable_params(shapes, w, method, targets)
    grads, optim, scratch = optimizer_terms(shapes, w, method, targets)
    acts = language_activations(shapes, w, method, batch, targets)
    logits = logits_bytes(shapes, w, batch)
    vision = vision_activations(shapes, w, method, batch)
    buffers = zero_buffers(w, trainable)
    held = held_gradients(w, grads)
    head_deq, layer_deq = dequantized_bytes(shapes, w, method)  # the head's lives with the logits
    dequantized = max(logits + head_deq, layer_deq) - logits
    allocated = weights + optim + buffers + max(acts + logits + dequantized + vision + held, grads + scratch)
    peak = measured_as(allocated, w)
    return MethodPlan(method, trainable, weights, grads, optim, acts, logits, vision, peak, dequantized=dequantized,
                      allocated=allocated, optimizer_scratch=scratch, zero_buffers=buffers, seq=w.seq, batch=batch)


def held_gradients(w: Workload, grads: int) -> int:
    """Gradients alive during a forward and backward. One micro-batch per step: none (the
    previous step's were freed by ``zero_grad(set_to_none=True)``, the default since torch
    2.0, and this backward's grow as activations are freed). With gradient accumulation
    (HF Trainer, accelerate, lit-gpt, vlmtune: ``zero_grad`` only after the optimizer step)
    every trainable tensor's ``.grad`` from the first micro-batch is alive through the
    later micro-batches' forward and backward. Not under ZeRO (``w.zero``): DeepSpeed
    reduces gradients into its own partitions as they are produced; the plan keeps its
    gradient term as the optimizer step's."""
    return grads if w.grad_accum > 1 and not w.zero else 0


def plan_memory(shapes: ModelShapes, w: Workload, *, gpu_bytes: int | None = None,
                methods: tuple[str, ...] = METHODS) -> list[MethodPlan]:
    """One :class:`MethodPlan` per method; with ``gpu_bytes``: fits? and the largest batch."""
    plans = []
    for method in methods:
        p = plan_method(shapes, w, method)
        if gpu_bytes is not None:
            p.fits = p.peak <= gpu_bytes
            p.max_batch = max_batch(shapes, w, method, gpu_bytes)
        p.notes = _notes(shapes, w, method)
        plans.append(p)
    return plans


def max_batch(shapes: ModelShapes, w: Workload, method: str, gpu_bytes: int, limit: int = 4096) -> int:
    """Largest batch (at ``w.seq``) whose predicted peak fits; 0 if even 1 does not."""
    if plan_method(shapes, w, method, 1).peak > gpu_bytes:
        return 0
    low, high = 1, 2
    while high <= limit and plan_method(shapes, w, method, high).peak <= gpu_bytes:
        low, high = high, high * 2
    high = min(high, limit + 1)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if plan_method(shapes, w, method, mid).peak <= gpu_bytes else (low, mid)
    return low


def _notes(shapes: ModelShapes, w: Workload, method: str) -> list[str]:
    notes = []
    if not shapes.exact:
        notes.append(f"sizes from config.json fields (model_type {shapes.model_type!r} is not built by "
                     "transformers here; no remote code runs)")
    if method == "full" and w.weight_bytes < 4:
        notes.append("AdamW with fp32 master weights (16 B/param)" if w.master_weights or w.zero
                     else "AdamW moments in the weight dtype (no master copy)")
    if method in ("lora", "dora", "qlora4", "qlora8"):
        targets = w.lora_targets or "the family's default projections"
        notes.append(f"LoRA r={w.lora_r} on {len(select_targets(shapes, w.lora_targets))} Linears ({targets})")
    if method.startswith("qlora"):
        rest = "fp32 (PEFT's k-bit upcast)" if kbit_upcast(w) else "16 bit"
        notes.append(f"{'GPTQ int4' if w.quant == 'gptq4' else 'bitsandbytes'} decoder Linears; vision, "
                     f"projector, embeddings, norms and LM head stay {rest}")
    notes.append(f"{w.attn} attention, " + ("gradient checkpointing on" if w.gradient_checkpointing
                                            else "no gradient checkpointing"))
    if w.grad_accum > 1 and not w.zero:
        notes.append(f"gradients held through {w.grad_accum} accumulated micro-batches")
    if w.gpus > 1 or w.zero:
        notes.append(f"{w.gpus} GPU(s), ZeRO-{w.zero}: per-GPU peak")
    return notes


def vision_share(shapes: ModelShapes) -> float:
    """Fraction of all parameters in the vision tower and projector."""
    return (shapes.by_role["vision"] + shapes.by_role["projector"]) / max(shapes.total, 1)
