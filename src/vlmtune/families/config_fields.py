"""Sizes of any decoder LM or VLM from its ``config.json`` fields, read as data.

Why: "will it fit?" must be answered for every model a team has, including remote-code
architectures (Qwen-VL, Qwen-7B, MiniCPM-V) whose Python code vlmtune must not run and
text-only LMs it does not train. Their memory depends only on dimensions the config
states: hidden size, MLP width, layers, heads, KV heads, vocabulary, and a vision block
(``vision_config`` in transformers' VLMs, ``visual`` in Qwen-VL). This module turns those
fields into parameter counts and per-layer Linear shapes; no code from the model's
repository is imported or executed. When transformers knows the architecture,
``model_shapes`` counts exactly on the meta device instead, so this is the fallback.

Field names differ between code bases (GPT-2's ``n_embd``, ChatGLM's ``ffn_hidden_size``,
Qwen-1's ``kv_channels``); each is listed in ``_ALIASES``. One documented quirk is data
too: Qwen-1's ``QWenMLP`` builds ``w1``/``w2`` of width ``intermediate_size // 2``.

Example:
    >>> dims = dims_from_fields({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
    ...     "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100})
    >>> dims["layers"], dims["kv_heads"], dims["by_role"]["language"]
    (2, 4, 95040)
"""

from __future__ import annotations

from typing import Any

from vlmtune.errors import InputError

_ALIASES = {
    "hidden": ("hidden_size", "n_embd", "d_model", "dim"),
    "intermediate": ("intermediate_size", "ffn_hidden_size", "n_inner", "ffn_dim"),
    "layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "kv_heads": ("num_key_value_heads", "multi_query_group_num", "n_kv_heads", "num_kv_heads"),
    "head_dim": ("head_dim", "kv_channels"),
    "vocab": ("vocab_size", "padded_vocab_size"),
}
# Sub-configs that hold the language model's fields in composite configs.
_TEXT_KEYS = ("text_config", "llm_config", "language_config", "text_model")
# Model types whose MLP halves ``intermediate_size`` (Qwen-1: ``ff_dim_in = intermediate_size // 2``).
_HALF_MLP = frozenset({"qwen"})
# Qwen-1 names its fused projections c_attn/c_proj and its MLP w1/w2/c_proj.
# Model types whose query/key/value projections carry a bias whatever the config says.
_QKV_BIAS = frozenset({"qwen", "qwen2"})
_QWEN1_LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.w1", "mlp.w2", "mlp.c_proj")
# Model types whose MLP is ``fc1 -> activation -> fc2`` (no gate projection); every other
# type is sized as a gated MLP (gate, up, down: Llama, Qwen, InternLM2, ChatGLM, MiniCPM).
NON_GATED = frozenset({"phi", "phi-msft", "mixformer-sequential", "gpt2", "gpt_neo", "gpt_neox", "gptj",
                       "gpt_bigcode", "codegen", "falcon", "RefinedWeb", "RefinedWebModel", "opt", "bloom", "mpt",
                       "starcoder2", "biogpt", "xglm"})
# Keys naming the MLP activation (transformers' ``ACT2FN`` names); Gemma's ``hidden_activation``
# overrides its ``hidden_act``.
_ACT_KEYS = ("hidden_activation", "hidden_act", "activation_function")


def _field(block: dict[str, Any], key: str, default: Any = None) -> Any:
    for name in _ALIASES[key]:
        if block.get(name) is not None:
            return block[name]
    return default


def activation(block: dict[str, Any], default: str) -> str:
    """The MLP activation a config names (``hidden_act`` and its aliases), else ``default``."""
    return next((block[k] for k in _ACT_KEYS if isinstance(block.get(k), str)), default)


def text_block(raw: dict[str, Any]) -> dict[str, Any]:
    """The dict holding the decoder's fields: a text sub-config if present and sized, else
    the top level (Qwen-VL, MiniCPM-V and plain LMs keep them there)."""
    for key in _TEXT_KEYS:
        sub = raw.get(key)
        if isinstance(sub, dict) and _field(sub, "hidden") is not None:
            return sub
    return raw


def text_dims(raw: dict[str, Any], source: str = "<config>") -> dict[str, Any]:
    block = text_block(raw)
    hidden = _field(block, "hidden")
    layers = _field(block, "layers")
    heads = _field(block, "heads")
    vocab = _field(block, "vocab")
    for name, value in (("hidden_size", hidden), ("num_hidden_layers", layers),
                        ("num_attention_heads", heads), ("vocab_size", vocab)):
        if not value:
            raise InputError(f"config has no {name} (nor an alias of it): cannot size the language model",
                             file=source, field=name)
    model_type = str(block.get("model_type") or raw.get("model_type") or "")
    inter = int(_field(block, "intermediate", 4 * hidden))
    if model_type in _HALF_MLP or raw.get("model_type") in _HALF_MLP:
        inter //= 2
    head_dim = int(_field(block, "head_dim", 0) or hidden // heads)
    return {"hidden": int(hidden), "intermediate": inter, "layers": int(layers), "heads": int(heads),
            "kv_heads": int(_field(block, "kv_heads", 0) or heads), "head_dim": head_dim, "vocab": int(vocab),
            "tied": bool(block.get("tie_word_embeddings", raw.get("tie_word_embeddings", False))),
            "model_type": model_type}


def layer_linears(dims: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(name, in, out) of each Linear in one decoder layer."""
    h, i = dims["hidden"], dims["intermediate"]
    q, kv = dims["heads"] * dims["head_dim"], dims["kv_heads"] * dims["head_dim"]
    if dims["model_type"] == "qwen":
        return list(zip(_QWEN1_LINEARS, (h, q, h, h, i), (q + 2 * kv, h, i, i, h)))
    attention = [("self_attn.q_proj", h, q), ("self_attn.k_proj", h, kv), ("self_attn.v_proj", h, kv),
                 ("self_attn.o_proj", q, h)]
    if dims["model_type"] in NON_GATED:
        return attention + [("mlp.fc1", h, i), ("mlp.fc2", i, h)]
    return attention + [("mlp.gate_proj", h, i), ("mlp.up_proj", h, i), ("mlp.down_proj", i, h)]


def _vision_block(raw: dict[str, Any]) -> dict[str, Any]:
    block = raw.get("vision_config") or raw.get("visual") or raw.get("vision_tower_config")
    return block if isinstance(block, dict) else {}


def vision_dims(raw: dict[str, Any]) -> dict[str, int]:
    """Width, MLP width, depth, patch and image size of the vision tower; ``{}`` if none."""
    block = _vision_block(raw)
    if not block:
        return {}
    width = int(block.get("embed_dim") or block.get("hidden_size") or block.get("width") or 0)
    if not width:
        return {}
    inter = block.get("intermediate_size") or int(width * float(block.get("mlp_ratio", 4)))
    depth = block.get("depth") or block.get("num_hidden_layers") or block.get("layers") or 0
    patch = block.get("patch_size", 14)
    patch = int(patch[0] if isinstance(patch, (list, tuple)) else patch)
    size = block.get("image_size") or raw.get("image_size") or 0
    size = int(size[0] if isinstance(size, (list, tuple)) else size)
    merge = int(block.get("spatial_merge_size") or 1)
    # fixed token counts: Qwen-VL's resampler (256 queries), MiniCPM-V's ``query_num``, Gemma 3
    tokens = int(raw.get("mm_tokens_per_image") or raw.get("query_num") or (256 if "output_dim" in block else 0))
    return {"width": width, "intermediate": int(inter), "layers": int(depth), "patch": patch, "merge": merge,
            "image_size": size, "tokens_per_image": tokens, "out": int(block.get("output_dim") or 0)}


def _vision_params(v: dict[str, int], hidden: int) -> tuple[int, int]:
    """(tower, projector) parameters of a ViT and its projector, from dimensions: per block
    QKV + output (4w^2), MLP (2 w i), biases and two norms; patch and position embeddings.
    The projector is a 2-layer MLP from the (merged) patch width to the LM width, or for a
    resampler (``output_dim``) a cross-attention of ``output_dim`` width."""
    if not v:
        return 0, 0
    w, i = v["width"], v["intermediate"]
    block = 4 * w * w + 2 * w * i + 9 * w + i
    side = (v["image_size"] or 448) // v["patch"]
    tower = v["layers"] * block + 3 * v["patch"] ** 2 * w + (side * side + 1) * w
    if v.get("out"):
        d = v["out"]
        projector = w * d + 4 * d * d + d * v["tokens_per_image"] + 6 * d
    else:
        width_in = w * v["merge"] ** 2
        projector = width_in * hidden + hidden * hidden + 2 * hidden + 2 * width_in
    return tower, projector


def _qkv_bias(raw: dict[str, Any], dims: dict[str, Any]) -> int:
    """Bias parameters of q, k and v in one layer (Qwen-1's ``c_attn``, Qwen2's q/k/v,
    ``attention_bias`` / ``qkv_bias`` elsewhere)."""
    block = text_block(raw)
    if not (dims["model_type"] in _QKV_BIAS or block.get("attention_bias") or block.get("qkv_bias")):
        return 0
    return (dims["heads"] + 2 * dims["kv_heads"]) * dims["head_dim"]


def dims_from_fields(raw: dict[str, Any], source: str = "<config>") -> dict[str, Any]:
    """Everything ``ModelShapes`` needs, computed from the config's fields."""
    dims = text_dims(raw, source)
    h, layers, vocab = dims["hidden"], dims["layers"], dims["vocab"]
    linears = layer_linears(dims)
    per_layer = sum(a * b for _, a, b in linears) + 2 * h + _qkv_bias(raw, dims)  # + two norm weights
    embed = vocab * h
    head = 0 if dims["tied"] else vocab * h
    vision = vision_dims(raw)
    tower, projector = _vision_params(vision, h)
    language = embed + head + layers * per_layer + h
    quantizable = layers * sum(a * b for _, a, b in linears)
    targets = [(a, b) for _ in range(layers) for _, a, b in linears]
    return {"model_type": str(raw.get("model_type") or dims["model_type"]),
            "by_role": {"vision": tower, "projector": projector, "language": language},
            "total": tower + projector + language, "quantizable": quantizable,
            "quantizable_rows": layers * sum(b for _, _, b in linears), "lora_targets": targets,
            "hidden": h, "intermediate": dims["intermediate"], "layers": layers, "heads": dims["heads"],
            "kv_heads": dims["kv_heads"], "head_dim": dims["head_dim"], "vocab": vocab, "vision": vision,
            "layer_linears": linears, "embed_params": embed, "head_params": head,
            "mlp_gated": dims["model_type"] not in NON_GATED, "mlp_act": activation(text_block(raw), "silu"),
            "vision_gated": False, "vision_act": activation(_vision_block(raw), "gelu")}
