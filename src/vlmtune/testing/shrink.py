"""Shrink any transformers config to a tiny one of the same structure, by field name.

Why: a hand-written tiny recipe per family does not scale to the ~100 architectures
transformers ships. Their configs name sizes consistently (``hidden_size``,
``num_hidden_layers``, ``num_attention_heads``, ``depth``, ``num_experts``...), so one
walk over the nested ``to_dict()`` can set every width to ``width``, every depth to
``layers``, every head count to ``width // 16``, and cut per-layer lists to the new
depth, while keeping what makes the architecture itself (activation, norms, RoPE type,
patch merger, DeepStack, experts, layer types). Unknown fields keep their defaults.

Example:
    >>> d = shrink_dict({"hidden_size": 2048, "num_hidden_layers": 24,
    ...                  "layer_types": ["full"] * 24, "text_config": {"intermediate_size": 5632}})
    >>> d["hidden_size"], d["num_hidden_layers"], len(d["layer_types"]), d["text_config"]["intermediate_size"]
    (32, 2, 2, 64)
"""

from __future__ import annotations

from typing import Any

HEAD_DIM = 16
LAYER_KEYS = frozenset({
    "num_hidden_layers", "depth", "num_layers", "n_layers", "n_layer", "encoder_layers", "decoder_layers",
    "num_encoder_layers", "num_decoder_layers", "vision_layers", "text_layers", "num_vision_layers",
    "num_text_layers", "num_cross_attention_layers", "num_global_layers",
})
WIDTH_KEYS = frozenset({
    "hidden_size", "embed_dim", "d_model", "width", "hidden_dim", "n_embd", "dim", "out_hidden_size",
    "projector_hidden_size", "text_hidden_size", "vision_hidden_size", "projection_dim", "output_dim",
    "vision_output_dim", "hidden_size_per_layer_input", "mm_hidden_size", "proj_dim", "embed_dims",
    "vision_embed_dim", "text_embed_dim", "merger_hidden_size", "projector_dim", "out_dim",
    "projection_hidden_size", "projector_input_dim", "projector_output_dim",
})
FFN_KEYS = frozenset({
    "intermediate_size", "ffn_dim", "mlp_dim", "encoder_ffn_dim", "decoder_ffn_dim", "dim_feedforward",
    "projector_intermediate_size", "vision_intermediate_size", "text_intermediate_size", "n_inner",
    "projector_hidden_act_size", "mlp_hidden_size", "intermediate_size_mlp",
})
SMALL_FFN_KEYS = frozenset({
    "moe_intermediate_size", "shared_expert_intermediate_size", "expert_intermediate_size",
    "moe_ffn_dim", "expert_hidden_size", "moe_hidden_size",
})
HEAD_KEYS = frozenset({
    "num_attention_heads", "num_heads", "n_head", "n_heads", "encoder_attention_heads",
    "decoder_attention_heads", "linear_num_value_heads", "vision_num_heads", "text_num_heads",
})
KV_HEAD_KEYS = frozenset({"num_key_value_heads", "n_kv_heads", "linear_num_key_heads", "num_kv_heads",
                          "multi_query_group_num"})
HEAD_DIM_KEYS = frozenset({"head_dim", "linear_key_head_dim", "linear_value_head_dim", "v_head_dim",
                           "attention_head_dim", "global_head_dim", "qk_head_dim", "index_head_dim"})
EXPERT_KEYS = frozenset({"num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts"})
TOPK_KEYS = frozenset({"num_experts_per_tok", "moe_k", "top_k", "moe_topk", "num_selected_experts"})
SMALL_KEYS = {"kv_lora_rank": 16, "q_lora_rank": 16, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8,
              "n_shared_experts": 1, "num_shared_experts": 1, "n_group": 1, "topk_group": 1,
              "sliding_window": 16, "num_kv_shared_layers": 0, "first_k_dense_replace": 1,
              "mm_tokens_per_image": 4, "conv_kernel_size": 4, "linear_conv_kernel_dim": 4}
# Lists of layer *indices* (into the tower's layers), clamped to the new depth.
INDEX_LIST_KEYS = frozenset({"deepstack_visual_indexes", "fullatt_block_indexes", "mlp_only_layers",
                             "full_attention_layers", "vision_feature_layers", "intermediate_layers_indices",
                             "cross_attention_layers", "global_attn_indexes", "layers_block_type_idx"})
_SKIP = frozenset({"id2label", "label2id", "rope_parameters", "rope_scaling"})


def _layer_count(d: dict) -> int | None:
    for key in LAYER_KEYS:
        if isinstance(d.get(key), int):
            return d[key]
    return None


def _clamp_indices(values: list, old: int | None, layers: int) -> list:
    """Layer indices spread over the new depth: i of ``old`` layers -> i * layers // old."""
    if not values:
        return values
    out = []
    for v in values:
        if not isinstance(v, int):
            return values
        if v < 0:
            out.append(max(v, -layers))
        else:
            out.append(min(v * layers // old, layers - 1) if old else min(v, layers - 1))
    return list(dict.fromkeys(out))


def _shrink_value(key: str, value: Any, old_layers: int | None, width: int, layers: int, vocab: int) -> Any:
    heads = max(1, width // HEAD_DIM)
    if isinstance(value, bool) or not isinstance(value, (int, list)):
        return value
    if isinstance(value, list):
        if key in INDEX_LIST_KEYS:
            return _clamp_indices(value, old_layers, layers)
        if old_layers and len(value) == old_layers and old_layers > layers:
            return _keep_last_kind(value, layers)
        return value
    table = {**dict.fromkeys(LAYER_KEYS, layers), **dict.fromkeys(WIDTH_KEYS, width),
             **dict.fromkeys(FFN_KEYS, 2 * width), **dict.fromkeys(SMALL_FFN_KEYS, width),
             **dict.fromkeys(HEAD_KEYS, heads), **dict.fromkeys(KV_HEAD_KEYS, 1),
             **dict.fromkeys(HEAD_DIM_KEYS, HEAD_DIM), **dict.fromkeys(EXPERT_KEYS, 4),
             **dict.fromkeys(TOPK_KEYS, 2), **SMALL_KEYS}
    if key in ("vocab_size", "vocab_size_per_layer_input") and value > vocab:
        return vocab
    if key in table and value > table[key]:
        return table[key]
    return value


def _keep_last_kind(values: list, layers: int) -> list:
    """A per-layer list cut to ``layers``, keeping each kind present (e.g. sliding + full attention)."""
    if not all(isinstance(v, (str, int, float)) for v in values):
        return values[:layers]
    kinds = list(dict.fromkeys(values))
    if len(kinds) <= layers:
        head = values[: layers - len(kinds) + 1]
        rest = [k for k in kinds if k not in head]
        return (head + rest)[:layers] if len(head + rest) >= layers else (head + rest + values)[:layers]
    return values[:layers]


def _shrink_rope(rope: dict, old_head_dim: int | None) -> dict:
    """M-RoPE sections keep their share of the rotary half-dim at the new head dim of 16."""
    from vlmtune.testing.spec import mrope_section

    out = dict(rope)
    section = rope.get("mrope_section")
    if isinstance(section, list) and len(section) == 3 and old_head_dim:
        total = max(3, round(sum(section) * HEAD_DIM / old_head_dim))
        out["mrope_section"] = mrope_section(2 * total)
    return out


def _head_dim(d: dict) -> int | None:
    if isinstance(d.get("head_dim"), int):
        return d["head_dim"]
    heads = d.get("num_attention_heads")
    return d["hidden_size"] // heads if isinstance(d.get("hidden_size"), int) and heads else None


def shrink_dict(d: dict, *, width: int = 32, layers: int = 2, vocab: int = 1024) -> dict:
    """A copy of a config dict with every known size field made tiny (recursing into sub-configs)."""
    old_layers = _layer_count(d)
    out = {}
    for key, value in d.items():
        if key in ("rope_parameters", "rope_scaling") and isinstance(value, dict):
            out[key] = _shrink_rope(value, _head_dim(d))
        elif key in ("dtype", "torch_dtype"):  # tiny builds are float32
            out[key] = None
        elif key == "per_layer_config" and isinstance(value, dict):
            out[key] = {k: v for k, v in value.items() if str(k).isdigit() and int(k) < layers}
        elif key in _SKIP:
            out[key] = value
        elif isinstance(value, dict):
            out[key] = shrink_dict(value, width=width, layers=layers, vocab=vocab)
        else:
            out[key] = _shrink_value(key, value, old_layers, width, layers, vocab)
    if isinstance(out.get("qk_rope_head_dim"), int) and "head_dim" in out:  # MLA: RoPE runs on the rope part
        out["head_dim"] = out["qk_rope_head_dim"]
    if isinstance(out.get("kv_lora_rank"), int) and isinstance(out.get("num_key_value_heads"), int):
        out["num_key_value_heads"] = out.get("num_attention_heads")  # MLA expands K/V to every head
    return out
