"""Predict peak training memory per method (full, LoRA, QLoRA-8, QLoRA-4) from config.json.

Why: "does it fit?" is the first question on limited hardware, and trying it costs a
model download and an out-of-memory crash. Parameters are counted exactly on the meta
device (:mod:`vlmtune.families.shapes`); the rest is arithmetic, itemised so the
user sees what dominates. The derivation of every term, its sources and the validation
against measured memory are in ``docs/memory_plan.md``; in short (bytes; ``wb`` = bytes
per weight of the load dtype, ``a`` = bytes per activation = ``wb``, but 4 under QLoRA;
``T`` = batch x seq tokens, image tokens included; ``P`` = parameters):

* Weights: full/LoRA ``P*wb``; QLoRA stores the language model's Linear weights in NF4
  (half a byte + 0.127 bits of double-quantised constants; QLoRA §2-3) or int8 (+ one fp32
  scale per row; LLM.int8), everything else in fp32 (PEFT's k-bit preparation upcasts it).
* Trainable: full ``P``; adapters ``r*(in+out)`` per target (fp32). Gradients: trainable x
  their dtype. AdamW: 2 fp32 moments (8 B/param); full half-precision training adds an
  fp32 master copy (12 B/param; mixed precision, ZeRO §3.1) unless ``master_weights=False``.
* Saved activations per token and decoder layer, from listing what autograd keeps in
  transformers' Llama/Qwen-style layers with SDPA (cf. Korthikanti et al. 2022 §4; with
  SDPA no s^2 attention scores are kept, only the output and log-sum-exp):
  full ``24h + a(2q + 2k' + 4i)``; LoRA/QLoRA ``8h + a(2q + 2k' + 3i)`` plus, per LoRA
  target, ``4r + in*(4 + m)`` (lora_A output, dropped fp32 input and dropout mask:
  ``m`` = 4 on CPU, 1 on CUDA) and for QLoRA-8 the inputs bitsandbytes' int8 matmul keeps,
  ``4(2h + i)``. ``q`` = heads x head_dim, ``k'`` = the same in a layer SDPA gets a 4-D
  mask for (it then repeats K/V) else KV heads x head_dim; such a layer also keeps the float
  mask copy, ``a*seq``. Masked: every layer of a padded batch or of a model that always
  builds a mask (Gemma 3, PaliGemma), else sliding-window layers once seq >= window.
  Final norm ``12h`` (full) or ``4h``.
* Logits: ``12*T*V`` (vlmtune's loss: logits, their shifted copy and the fp32
  log-softmax in the forward; log-softmax, its gradient and the loss gradient at the start
  of the backward) plus a padded batch's boolean mask ``T*seq``.
* Vision tower (full only; a frozen tower saves nothing): ``(10w + 3i_v)*wb`` per patch
  per layer.
* Peak = weights + AdamW states + max(activations + logits + vision, gradients + AdamW
  scratch): gradients grow while activations are freed, and vlmtune frees gradients
  before the next forward. AdamW scratch: one fp32 copy of the trainable tensors on CUDA
  (``foreach``), two of the largest tensor on CPU (per-tensor loop).

Validation: ``scripts/memory_plan_check.py`` (CPU, fp32, tiny Qwen2-VL, LLaVA, Gemma 3,
Idefics3 and the zoo model ``vlmtune/tiny-shapes``, full/LoRA/QLoRA-8/QLoRA-4, batch 1-8;
peak RSS increase with glibc's mmap threshold fixed at one page, and malloc's in-use
peak): see ``docs/memory_plan.md`` for the table; ``tests/diagnose/test_memory_plan.py``
bounds the error at 15% at batch 1 and 8.

Not counted: the CUDA context (~0.3-1 GiB outside the allocator), allocator caching and
fragmentation, the data loader, per-tensor costs (page or 512-byte rounding of each
tensor, autograd's graph; 0.2-0.8 MiB on the tiny models, noise at real sizes).

Example:
    >>> shapes = model_shapes("/work/shared/model-configs/Qwen-Qwen2-VL-7B-Instruct.json")  # doctest: +SKIP
    >>> [p.fits for p in plan_memory(shapes, Workload(seq=2048), gpu_bytes=parse_size("80GiB"))]  # doctest: +SKIP
    [False, True, True, True]
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from vlmtune.families.shapes import ModelShapes, model_shapes  # noqa: F401  (re-export)
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
    device: str = "cuda"  # cuda | cpu: dropout masks and AdamW scratch differ


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


def activation_bytes(w: Workload, method: str) -> int:
    """Bytes per activation element: the load dtype, but fp32 under QLoRA (PEFT's
    ``prepare_model_for_kbit_training`` upcasts embeddings and norms, so the residual
    stream is fp32 and bitsandbytes' Linear4bit/8bitLt return their input's dtype)."""
    return 4 if method.startswith("qlora") else w.weight_bytes


def padded(batch: int) -> bool:
    """Batches of more than one sample are padded: transformers builds a 4-D mask."""
    return batch > 1


def masked_layers(shapes: ModelShapes, w: Workload, batch: int) -> int:
    """Decoder layers whose SDPA call gets a 4-D mask: all of them for a padded batch or a
    model that always builds one (``ModelShapes.always_masked``: Gemma 3, PaliGemma), else
    the sliding-window layers once the sequence reaches the window. Without a mask,
    transformers passes ``is_causal`` and lets SDPA do grouped-query attention natively."""
    if padded(batch) or shapes.always_masked:
        return shapes.layers
    return shapes.sliding_layers if shapes.sliding_window and w.seq >= shapes.sliding_window else 0


def _adapter_inputs(shapes: ModelShapes, w: Workload, a: int) -> int:
    """Bytes per token the LoRA path keeps, summed over all target layers (see module doc)."""
    r = w.lora_r
    kept = sum(4 * r for _ in shapes.lora_targets)  # lora_A output, saved by lora_B (fp32 adapters)
    if w.lora_dropout > 0:  # dropped fp32 copy (saved by lora_A) + the dropout mask (saved by mul)
        return kept + sum(fan_in * (4 + dropout_mask_bytes(w)) for fan_in, _ in shapes.lora_targets)
    if a == 4:  # lora_A saves its input itself, shared with q/k/v and gate/up: norm outputs + down input
        return kept + shapes.layers * 4 * (2 * shapes.hidden + shapes.intermediate)
    return kept + sum(4 * fan_in for fan_in, _ in shapes.lora_targets)  # one fp32 cast per target


def dropout_mask_bytes(w: Workload) -> int:
    """CUDA's fused ``native_dropout`` keeps a bool mask; on CPU ``dropout`` multiplies by a
    float noise tensor of the (fp32, adapter-dtype) input and keeps that."""
    return 1 if w.device == "cuda" else 4


def language_activations(shapes: ModelShapes, w: Workload, method: str, batch: int) -> int:
    """Bytes autograd keeps for the decoder layers and the final norm (logits excluded)."""
    h, i, a = shapes.hidden, shapes.intermediate, activation_bytes(w, method)
    qd, kvd = shapes.heads * shapes.head_dim, shapes.kv_heads * shapes.head_dim
    tokens = batch * w.seq
    masked = masked_layers(shapes, w, batch)
    # q and k after RoPE, v, output (o_proj's input); with a mask SDPA repeats K/V to all
    # heads and keeps a float copy of the 4-D mask per layer
    unmasked_attention = a * (2 * qd + 2 * kvd)
    masked_attention = a * (4 * qd + w.seq)
    attention_sum = masked * masked_attention + (shapes.layers - masked) * unmasked_attention
    attention_one = masked_attention if masked else unmasked_attention
    # norms keep their fp32 input and normalised tensor (8 B), plus 4 B of output for the two
    # that feed a trained Linear; frozen (LoRA), only the fp32 input
    head_norms = (qd + kvd) if shapes.head_norms else 0
    if method == "full":
        per_layer = 8 * (shapes.hidden_norms * h + head_norms) + 2 * 4 * h + 4 * i * a
        final = 12 * h
        first_layer_saving = 0
    else:
        per_layer = 4 * (shapes.hidden_norms * h + head_norms) + 3 * i * a
        final = 4 * h
        # the first layer's input does not require grad: its first norm and the dropout of
        # the q/k/v inputs keep nothing
        first_layer_saving = 4 * h + (3 * h * dropout_mask_bytes(w) if w.lora_dropout > 0 else 0)
    adapters = _adapter_inputs(shapes, w, a) if method != "full" else 0
    if method == "qlora8":  # bitsandbytes' 8-bit matmul keeps its input on ctx (ctx.A / ctx.tensors)
        adapters += shapes.layers * 4 * (2 * h + i) - 4 * h  # norm outputs, down_proj input; not layer 0's q/k/v
    if w.gradient_checkpointing:  # layer inputs, plus one layer recomputed in the backward
        return tokens * (shapes.layers * h * a + per_layer + attention_one + adapters // shapes.layers + final)
    return tokens * (shapes.layers * per_layer + attention_sum + adapters + final - first_layer_saving)


def logits_bytes(shapes: ModelShapes, w: Workload, batch: int) -> int:
    """vlmtune's loss (``train.token_loss_sum``): 12 bytes per token and vocabulary entry
    (see module doc), plus the padded batch's boolean 4-D mask."""
    tokens = batch * w.seq
    return tokens * shapes.vocab * 12 + (tokens * w.seq if padded(batch) else 0)


def vision_activations(shapes: ModelShapes, w: Workload, method: str, batch: int) -> int:
    """Only a trained tower keeps activations; frozen (LoRA on the language model), its
    forward saves nothing for the backward."""
    patches, _ = image_geometry(shapes, w)
    if not patches or method != "full":
        return 0
    v = shapes.vision
    per_layer = batch * w.images * patches * (10 * v["width"] + 3 * v["intermediate"]) * w.weight_bytes
    return per_layer * (1 if w.gradient_checkpointing else v["layers"])


def optimizer_temporary(shapes: ModelShapes, w: Workload, method: str, trainable: int) -> int:
    """Scratch of one AdamW step. CUDA: the default ``foreach`` implementation takes the
    square root of all second moments at once (one fp32 copy of the trainable tensors);
    CPU: the per-tensor loop, two copies of the largest tensor."""
    if w.device == "cuda":
        return 4 * trainable
    if method == "full":
        largest = max([shapes.vocab * shapes.hidden] + [a * b for a, b in shapes.lora_targets])
    else:
        largest = max((w.lora_r * max(fan_in, fan_out) for fan_in, fan_out in shapes.lora_targets), default=0)
    return 2 * 4 * largest


def plan_method(shapes: ModelShapes, w: Workload, method: str, batch: int | None = None) -> MethodPlan:
    """Itemised peak for one method at ``batch`` (default ``w.batch``)."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose from {', '.join(METHODS)} or all", field="--method")
    if w.device not in ("cuda", "cpu"):
        raise InputError(f"unknown device {w.device!r}; choose cuda or cpu", field="--device")
    batch = w.batch if batch is None else batch
    weights = weight_bytes(shapes, method, w)
    if method == "full":
        trainable, grad_b = shapes.total, w.weight_bytes
        state_b = 12 if (w.master_weights and w.weight_bytes < 4) else 2 * w.weight_bytes
    else:
        trainable, grad_b, state_b = lora_params(shapes, w.lora_r), 4, 8
    grads, optim = trainable * grad_b, trainable * state_b
    acts = language_activations(shapes, w, method, batch)
    logits = logits_bytes(shapes, w, batch)
    vision = vision_activations(shapes, w, method, batch)
    temporary = optimizer_temporary(shapes, w, method, trainable)
    peak = weights + optim + max(acts + logits + vision, grads + temporary)
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
