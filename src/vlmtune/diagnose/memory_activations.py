"""What autograd keeps for the backward, per token: decoder layers, vision tower, logits.

Why separate from the plan: these are the terms that scale with tokens, and each follows
from listing the tensors a layer saves (``docs/memory_plan.md``, "What autograd keeps").
Attention depends on the implementation: ``flash`` keeps q, k, v, the output and the
log-sum-exp and never a mask; ``sdpa`` the same when transformers passes ``is_causal``,
but K/V repeated to all heads plus the float mask when it builds a 4-D mask; ``eager``
keeps the softmax probabilities (fp32, plus their half-precision copy), ``heads x S`` per
token (Korthikanti et al. 2022 §4's ``5as^2b`` term).
"""

from __future__ import annotations

from typing import Any

# Tokens per chunk of a chunked cross-entropy (the logits of one chunk are alive at a time).
LOSS_CHUNK = 1024
# MLP-width tensors an activation's autograd nodes keep, by transformers' ``ACT2FN`` name:
# (how many, its input included; whether its output is one of them). From the backward
# nodes torch generates (``torch/csrc/autograd/generated/Functions.h``): GeluBackward0,
# SiluBackward0, ErfBackward0 and PowBackward0 keep ``self``; Tanh/Sigmoid/ReluBackward0
# keep ``result``; MulBackward0 (tensor x tensor) keeps both factors, MulBackward1 (x a
# Python number) nothing. So ``F.gelu``/``F.silu`` keep their input only, transformers'
# Python-op GELUs (``gelu_new``: ``0.5 * x * (1 + tanh(c * (x + 0.044715 * x**3)))``) keep
# x, the tanh output, ``0.5 * x`` and ``1 + tanh``. Checked by saved_tensors_hooks in
# ``tests/diagnose/test_memory_plan.py``; names not listed count as one fused op.
ACT_SAVED = {
    "silu": (1, False), "swish": (1, False), "gelu": (1, False), "gelu_pytorch_tanh": (1, False),
    "gelu_new": (4, False), "gelu_python_tanh": (4, False), "gelu_accurate": (4, False), "gelu_python": (3, False),
    "gelu_fast": (7, False), "gelu_10": (2, False), "quick_gelu": (2, False), "relu": (1, True),
    "relu2": (1, False), "relu6": (1, False), "leaky_relu": (1, False), "hardswish": (1, False),
    "laplace": (1, False), "mish": (1, False), "sigmoid": (1, True), "tanh": (1, True), "sqrtsoftplus": (2, True),
    "linear": (0, False),
}


def activation_bytes(w: Any, method: str) -> int:
    """Bytes per activation element: the load dtype; fp32 under bitsandbytes QLoRA with
    PEFT's k-bit preparation (it upcasts embeddings and norms, so the residual stream is
    fp32 and bitsandbytes' layers return their input's dtype)."""
    return 4 if method.startswith("qlora") and kbit_upcast(w) else w.weight_bytes


def kbit_upcast(w: Any) -> bool:
    """PEFT's ``prepare_model_for_kbit_training`` upcasts every 16-bit parameter to fp32,
    except in a GPTQ model (``is_gptq_quantized``)."""
    return w.kbit_upcast and w.quant != "gptq4"


def mlp_tensors(act: str, gated: bool, trains: bool) -> int:
    """MLP-width tensors one MLP keeps per token for the backward. Non-gated (``fc1 -> act ->
    fc2``: phi, GPT-2, GPT-NeoX, ViTs): what the activation keeps, plus its output when
    ``fc2``'s weight trains (a Linear keeps its input only for its weight's gradient).
    Gated (``down(act(gate) * up)``: Llama-style SwiGLU/GeGLU): also the ``up`` output and
    the activation's output (the product keeps both factors), and the product when
    ``down``'s weight trains.

    Example:
        >>> mlp_tensors("silu", gated=True, trains=False), mlp_tensors("gelu_pytorch_tanh", gated=False, trains=True)
        (3, 2)
    """
    kept, output_kept = ACT_SAVED.get(act, (1, False))
    output = 0 if output_kept else 1
    if gated:
        return kept + 1 + output + (1 if trains else 0)
    return kept + (output if trains else 0)


def language_mlp(shapes: Any, w: Any, trains: bool) -> int:
    """``mlp_tensors`` of the decoder's MLP: gating from the module tree (or the config's
    model type), the activation the training code runs (``w.mlp_act``) or the config's."""
    return mlp_tensors(w.mlp_act or shapes.mlp_act, shapes.mlp_gated, trains)


def quantized_head(shapes: Any, w: Any, method: str) -> int:
    """Parameters of an untied LM head stored in 4 bit (``w.quantize_head``: Lightning
    Fabric's ``BitsandbytesPrecision`` replaces every ``nn.Linear``; PEFT/transformers
    keep the head 16-bit); 0 otherwise."""
    return shapes.head_params if method == "qlora4" and w.quant != "gptq4" and w.quantize_head else 0


def dequantized_bytes(shapes: Any, w: Any, method: str) -> tuple[int, int]:
    """(LM head, largest decoder Linear) as bitsandbytes dequantizes them: ``MatMul4Bit``
    runs ``F.linear(A, dequantize_4bit(B).to(A.dtype).t())`` in the forward and the same
    product in the backward, so each 4-bit matmul briefly holds its weight in the
    quantization dtype, plus a copy in the compute dtype when they differ (weights
    quantized from fp16 in a bf16 model: ``w.bnb_fp16_state``). 0 for GPTQ and 16-bit."""
    if method != "qlora4" or w.quant == "gptq4":
        return 0, 0
    per_param = 2 + (2 if w.bnb_fp16_state else 0)
    largest = max((fan_in * fan_out for _, fan_in, fan_out in shapes.layer_linears), default=0)
    return quantized_head(shapes, w, method) * per_param, largest * per_param


def padded(batch: int) -> bool:
    """Batches of more than one sample are padded: transformers builds a 4-D mask."""
    return batch > 1


def masked_layers(shapes: Any, w: Any, batch: int) -> int:
    """Decoder layers whose SDPA/eager call gets a 4-D mask: all of them for a padded batch
    or a model that always builds one (Gemma 3, PaliGemma), else the sliding-window layers
    once the sequence reaches the window. Flash attention never takes a 4-D mask."""
    if w.attn == "flash":
        return 0
    if padded(batch) or shapes.always_masked:
        return shapes.layers
    return shapes.sliding_layers if shapes.sliding_window and w.seq >= shapes.sliding_window else 0


def dropout_mask_bytes(w: Any) -> int:
    """CUDA's fused ``native_dropout`` keeps a bool mask; on CPU ``dropout`` multiplies by a
    float noise tensor of the (adapter-dtype) input and keeps that."""
    return 1 if w.device == "cuda" else w.adapter_bytes


def _attention(shapes: Any, w: Any, a: int, masked: bool) -> int:
    """Bytes per token one layer's attention keeps."""
    qd, kvd = shapes.heads * shapes.head_dim, shapes.kv_heads * shapes.head_dim
    if w.attn == "eager":  # q, repeated k and v, output; softmax probabilities fp32 + cast copy
        probs = shapes.heads * w.seq * (4 + (a if a < 4 else 0))
        return a * 4 * qd + probs + (a * w.seq if masked else 0)
    if masked:  # SDPA with a 4-D mask: K/V repeated to all heads, float mask copy
        return a * (4 * qd + w.seq)
    if w.repeat_kv:  # the training code copies K/V to every query head before the kernel
        return a * 4 * qd
    return a * (2 * qd + 2 * kvd)


def _adapter_inputs(shapes: Any, w: Any, targets: list[tuple[int, int]], a: int) -> int:
    """Bytes per token the LoRA path keeps, summed over all target layers: lora_A's output
    (kept by lora_B) and, with dropout, the dropped input in the adapter dtype and the mask;
    without dropout lora_A keeps the (cast) input. DoRA also keeps the base output per
    target for its magnitude rescaling."""
    r, ab = w.lora_r, w.adapter_bytes
    kept = sum(ab * r for _ in targets)
    if w.dora:
        kept += sum(a * fan_out for _, fan_out in targets)
    if w.lora_dropout > 0:
        return kept + sum(fan_in * (ab + dropout_mask_bytes(w)) for fan_in, _ in targets)
    if ab == a:  # no cast: lora_A keeps the input itself, shared by q/k/v and by gate/up:
        return kept + shapes.layers * a * (2 * shapes.hidden + shapes.intermediate)  # norm outputs, down input
    return kept + sum(ab * fan_in for fan_in, _ in targets)


def language_activations(shapes: Any, w: Any, method: str, batch: int, targets: list[tuple[int, int]]) -> int:
    """Bytes autograd keeps for the decoder layers and the final norm (logits excluded)."""
    h, i, a = shapes.hidden, shapes.intermediate, activation_bytes(w, method)
    head_norms = (shapes.heads + shapes.kv_heads) * shapes.head_dim if shapes.head_norms else 0
    tokens = batch * w.seq
    masked = masked_layers(shapes, w, batch)
    attention_sum = masked * _attention(shapes, w, a, True) + (shapes.layers - masked) * _attention(shapes, w, a, False)
    attention_one = _attention(shapes, w, a, masked > 0)
    trains_layers = method == "full" or "language" in w.trainable_roles
    if trains_layers:  # norms keep fp32 input, normalised tensor and output; MLP (SwiGLU: 4 tensors)
        per_layer = 8 * (shapes.hidden_norms * h + head_norms) + 2 * 4 * h + language_mlp(shapes, w, True) * i * a
        final, first_layer_saving = 12 * h, 0
    else:  # frozen norms keep their fp32 input; MLP (SwiGLU: gate, SiLU and up outputs)
        per_layer = 4 * (shapes.hidden_norms * h + head_norms) + language_mlp(shapes, w, False) * i * a
        final = 4 * h
        first_layer_saving = 4 * h + (3 * h * dropout_mask_bytes(w) if w.lora_dropout > 0 and targets else 0)
    adapters = _adapter_inputs(shapes, w, targets, a) if targets else 0
    if method == "qlora8":  # bitsandbytes' 8-bit matmul keeps its input on ctx
        adapters += shapes.layers * 4 * (2 * h + i) - 4 * h
    if method == "qlora4" and w.quant != "gptq4" and w.bnb_keeps_inputs:  # MatMul4Bit before bitsandbytes#1270
        adapters += shapes.layers * a * (2 * h + i) - a * h + (a * h if quantized_head(shapes, w, method) else 0)
    if not targets and not trains_layers:  # nothing in the decoder trains (freeze: projector only)
        if w.gradient_checkpointing:
            return tokens * shapes.layers * h * a
        return tokens * (shapes.layers * per_layer + attention_sum)
    if w.gradient_checkpointing:  # layer inputs (unless offloaded to CPU), one layer recomputed
        inputs = (1 if w.activation_offload else shapes.layers) * h * a
        return tokens * (inputs + per_layer + attention_one + adapters // shapes.layers + final)
    return tokens * (shapes.layers * per_layer + attention_sum + adapters + final - first_layer_saving)


def logits_bytes(shapes: Any, w: Any, batch: int) -> int:
    """The loss's logits. ``vlmtune`` (``train.loss.token_loss_sum``): the LM head runs
    only where a label follows (``logits_to_keep`` as a mask), 12 B per kept position and
    vocabulary entry (the kept logits and the fp32 log-softmax in the forward; log-softmax,
    its gradient and the logits' gradient at the start of the backward); ``answer_tokens``
    per sample are kept, all ``seq`` when not known. ``hf``: transformers'
    ``ForCausalLMLoss`` on full logits upcast to fp32 (``a`` + 12). ``model``: a model's own
    ``CrossEntropyLoss`` on full logits in their dtype (older remote code: logits, shifted
    copy, log-softmax, its gradient: ``4a``). ``chunked``: only ``LOSS_CHUNK`` tokens'
    logits exist at once. A padded batch adds its boolean 4-D mask (SDPA/eager only)."""
    tokens = batch * w.seq
    mask = tokens * w.seq if padded(batch) and w.attn != "flash" else 0
    per_entry = {"vlmtune": 12, "hf": 12 + w.weight_bytes, "model": 4 * w.weight_bytes, "chunked": 12}[w.loss]
    rows = tokens
    if w.loss == "vlmtune" and w.answer_tokens is not None:
        rows = batch * min(max(w.answer_tokens, 1), w.seq)
    elif w.loss == "chunked":
        rows = min(tokens, LOSS_CHUNK)
    return rows * shapes.vocab * per_entry + mask


def image_geometry(shapes: Any, w: Any) -> tuple[int, int]:
    """(vision patches, language image tokens) per image."""
    v = shapes.vision
    if not v or not w.images:
        return 0, 0
    side = w.image_size or v.get("image_size") or 448
    patches = (side // v["patch"]) ** 2
    return patches, v.get("tokens_per_image") or max(patches // (v["merge"] ** 2), 1)


def vision_activations(shapes: Any, w: Any, method: str, batch: int) -> int:
    """Only a trained tower keeps activations; frozen, its forward saves nothing for the
    backward. Per patch and ViT block: ``10w`` elements (two LayerNorm outputs, q/k/v,
    attention output, residuals) and the trained MLP's tensors of its width
    (``mlp_tensors``: 3 for CLIP's and Qwen2-VL's quick_gelu, 2 for SigLIP's tanh-GELU,
    4 for Qwen2.5-VL's gated SiLU)."""
    patches, _ = image_geometry(shapes, w)
    if not patches or not (method == "full" or "vision" in w.trainable_roles):
        return 0
    v = shapes.vision
    mlp = mlp_tensors(shapes.vision_act, shapes.vision_gated, True)
    per_layer = batch * w.images * patches * (10 * v["width"] + mlp * v["intermediate"]) * w.weight_bytes
    return per_layer * (1 if w.gradient_checkpointing else v["layers"])
