"""Predict peak training memory per method (full, LoRA, QLoRA-8, QLoRA-4) from config.json.

Why: "does it fit?" is the first question on limited hardware, and trying it costs a
model download and an out-of-memory crash. Parameters are counted exactly on the meta
device (:mod:`vlmtune.diagnose.model_shapes`); the rest is arithmetic, itemised so the
user sees what dominates. ``wb`` = bytes per weight of the load dtype (2 for bf16, 4 for
fp32), ``T`` = batch x seq tokens (image tokens included in seq), ``P`` = parameters.

Formulas (bytes):

* Weights: full/LoRA ``P*wb``. QLoRA quantises the language model's Linear weights
  (``Q`` of them) only; vision, projector, norms, embeddings and the LM head stay in
  ``max(wb, 4)`` because PEFT's ``prepare_model_for_kbit_training`` upcasts them to fp32.
  4-bit (bitsandbytes NF4, blocksize 64; Dettmers et al. 2023, QLoRA §2): ``Q/2`` plus the
  quantisation constants, one fp32 absmax per 64 weights (``Q*4/64``), or with double
  quantisation one 8-bit absmax per 64 plus one fp32 per 256 blocks (``Q/64 + Q*4/16384``,
  0.127 bits/param, QLoRA §3). 8-bit (LLM.int8, Dettmers et al. 2022): ``Q`` plus one fp32
  scale per output row.
* Trainable: full ``P``; adapters ``r*(in+out)`` summed over the target Linear layers
  (LoRA, Hu et al. 2021), kept in fp32 by PEFT (``autocast_adapter_dtype``).
* Gradients: trainable x its dtype.
* AdamW: two moments. Full fine-tuning in half precision uses the standard mixed-precision
  recipe (Micikevicius et al. 2018; ZeRO, Rajbhandari et al. 2020, §3.1): fp32 master
  weights + 2 fp32 moments = 12 B/param, i.e. 16 B/param with bf16 weights and grads.
  ``master_weights=False`` models plain ``torch.optim.AdamW`` on a bf16 model (moments in
  the parameter dtype, 2*wb), which is what vlmtune's own loop does with a bf16 base.
  Adapters: 8 B/param (fp32 moments).
* Activations kept for backward, per decoder layer per token, in elements (derived by
  listing what autograd saves in a Llama/Qwen-style layer with SDPA attention; cf.
  Korthikanti et al. 2022 §4, whose ``34sbh`` is for GPT-style MLPs and eager attention):
  two RMSNorms ``2h`` each (input + normalised output), query/key/value after RoPE
  ``h + 2kv`` (``kv`` = KV heads x head dim), SDPA output and its reshaped copy ``2h``,
  SwiGLU ``4i`` (gate, up, SiLU(gate), product) -> ``A_layer = 8h + 2kv + 4i``. LoRA
  dropout > 0 adds a dropped copy of every target input (``6h + i``) plus its 1-byte mask.
  Gradient checkpointing keeps ``h`` per layer plus one layer's ``A_layer`` (recompute).
  Logits: ``T*V*(wb + 16)``: model-dtype logits, their fp32 copy and log-softmax output
  in the forward, and in the backward the fp32 gradients of the loss input and of the
  logits while the saved log-softmax is still alive; plus the padded batch's 4-D additive
  attention mask (``2*T*seq*wb``, the mask and its expanded copy) that SDPA keeps.
* Vision tower: ``9w + 2i_v`` per patch per layer (LayerNorm/GELU ViT block), kept for all
  layers only when the tower trains (full); otherwise one layer at a time. Patches per
  image = (image side / patch)^2, language image tokens = patches / merge^2 (or the
  config's ``mm_tokens_per_image``).
* Peak = weights + optimizer + max(activations + logits + grad of the LM head,
  gradients + one parameter-sized AdamW temporary): gradients grow during backward while
  activations are freed, and vlmtune frees gradients (``set_to_none``) before the next
  forward, so both never peak together.

Validation (``scripts/memory_plan_check.py``, CPU fp32, tiny Qwen2-VL and Gemma 3 with
hidden 64, batch 8 x ~265 tokens, 3 steps): the plan under-predicts the increase of peak
RSS by 16-33% (Qwen2-VL full -16%, LoRA -24%, QLoRA-4 -26%, QLoRA-8 -27%; Gemma 3 -20%
to -33%). At ~100 MiB, glibc heap fragmentation and oneDNN scratch buffers are a large
share of what training adds and no formula of tensor sizes sees them; the test bounds the
error at 40%. What autograd keeps (summed with ``torch.autograd.graph.saved_tensors_hooks``)
agrees with the formula: 43.2 MiB saved vs 43.6 MiB predicted (activations + vision +
log-softmax + masks) for tiny Qwen2-VL LoRA; the gap is in transient memory.

Not counted: the CUDA context (~0.3-1 GiB outside the allocator), allocator
fragmentation, the data loader. On CPU the check in ``scripts/memory_plan_check.py``
compares the predicted *increase* of peak RSS over the RSS after the model is loaded.

Example:
    >>> shapes = model_shapes("/work/shared/model-configs/Qwen-Qwen2-VL-7B-Instruct.json")  # doctest: +SKIP
    >>> [p.fits for p in plan_memory(shapes, Workload(seq=2048), gpu_bytes=parse_size("80GiB"))]  # doctest: +SKIP
    [False, True, True, True]
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from vlmtune.diagnose.model_shapes import ModelShapes, model_shapes  # noqa: F401  (re-export)
from vlmtune.errors import InputError

METHODS = ("full", "lora", "qlora8", "qlora4")
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


@dataclass
class Workload:
    """What one training step processes and how. ``weight_bytes`` 2 = bf16, 4 = fp32."""

    seq: int = 2048
    batch: int = 1
    images: int = 1
    image_size: int | None = None  # None: the vision config's, else 448
    weight_bytes: int = 2
    master_weights: bool = True
    gradient_checkpointing: bool = False
    lora_r: int = 16
    lora_dropout: float = 0.05
    double_quant: bool = True


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


def lora_params(shapes: ModelShapes, r: int) -> int:
    return sum(r * (fan_in + fan_out) for fan_in, fan_out in shapes.lora_targets)


def weight_bytes(shapes: ModelShapes, method: str, w: Workload) -> int:
    if method in ("full", "lora"):
        return shapes.total * w.weight_bytes
    rest = (shapes.total - shapes.quantizable) * max(w.weight_bytes, 4)
    q = shapes.quantizable
    if method == "qlora8":
        return rest + q + 4 * shapes.quantizable_rows
    constants = q // 64 + q * 4 // (64 * 256) if w.double_quant else q * 4 // 64
    return rest + q // 2 + constants


def image_geometry(shapes: ModelShapes, w: Workload) -> tuple[int, int]:
    """(vision patches, language image tokens) per image."""
    v = shapes.vision
    if not v or not w.images:
        return 0, 0
    side = w.image_size or v.get("image_size") or 448
    patches = (side // v["patch"]) ** 2
    return patches, v.get("tokens_per_image") or max(patches // (v["merge"] ** 2), 1)


def language_activations(shapes: ModelShapes, w: Workload, method: str, batch: int) -> int:
    """Bytes autograd keeps for the decoder (logits excluded)."""
    h, i, kv = shapes.hidden, shapes.intermediate, shapes.kv_heads * shapes.head_dim
    tokens = batch * w.seq
    per_layer = (8 * h + 2 * kv + 4 * i) * w.weight_bytes
    if method != "full" and w.lora_dropout > 0:
        per_layer += (6 * h + i) * (w.weight_bytes + 1)
    if w.gradient_checkpointing:
        return tokens * (shapes.layers * h * w.weight_bytes + per_layer + 2 * h * w.weight_bytes)
    return tokens * (shapes.layers * per_layer + 2 * h * w.weight_bytes)  # + final norm


def vision_activations(shapes: ModelShapes, w: Workload, method: str, batch: int) -> int:
    patches, _ = image_geometry(shapes, w)
    if not patches:
        return 0
    v = shapes.vision
    per_layer = batch * w.images * patches * (9 * v["width"] + 2 * v["intermediate"]) * w.weight_bytes
    keeps_all = method == "full" and not w.gradient_checkpointing
    return per_layer * (v["layers"] if keeps_all else 1)


def plan_method(shapes: ModelShapes, w: Workload, method: str, batch: int | None = None) -> MethodPlan:
    """Itemised peak for one method at ``batch`` (default ``w.batch``)."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose from {', '.join(METHODS)} or all", field="--method")
    batch = w.batch if batch is None else batch
    weights = weight_bytes(shapes, method, w)
    if method == "full":
        trainable, grad_b = shapes.total, w.weight_bytes
        state_b = 12 if (w.master_weights and w.weight_bytes < 4) else 2 * w.weight_bytes
    else:
        trainable, grad_b, state_b = lora_params(shapes, w.lora_r), 4, 8
    grads, optim = trainable * grad_b, trainable * state_b
    acts = language_activations(shapes, w, method, batch)
    logits = batch * w.seq * (shapes.vocab * (w.weight_bytes + 16) + 2 * w.seq * w.weight_bytes)
    vision = vision_activations(shapes, w, method, batch)
    head_grad = shapes.vocab * shapes.hidden * grad_b if method == "full" else 0
    largest = max([shapes.vocab * shapes.hidden] + [a * b for a, b in shapes.lora_targets]) if method == "full" else 0
    peak = weights + optim + max(acts + logits + vision + head_grad, grads + largest * 4)
    return MethodPlan(method, trainable, weights, grads, optim, acts, logits, vision, peak)


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
    if method == "full" and w.weight_bytes < 4:
        notes.append("AdamW with fp32 master weights (16 B/param)" if w.master_weights
                     else "AdamW moments in the weight dtype (no master copy)")
    if method != "full":
        notes.append(f"LoRA r={w.lora_r} on {len(shapes.lora_targets)} language projections")
    if method.startswith("qlora"):
        notes.append("vision, projector, embeddings and LM head stay unquantised (fp32 after PEFT's upcast)")
    notes.append("gradient checkpointing on" if w.gradient_checkpointing else "no gradient checkpointing")
    return notes


def vision_share(shapes: ModelShapes) -> float:
    """Fraction of all parameters in the vision tower and projector."""
    return (shapes.by_role["vision"] + shapes.by_role["projector"]) / max(shapes.total, 1)
