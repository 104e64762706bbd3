"""Tiny recipes for the Qwen-VL line: Qwen2-VL, Qwen2.5-VL, Qwen3-VL.

Why these choices: all three use native-resolution patches merged 2x2, so the image
processor's ``min_pixels``/``max_pixels`` (here ``size.shortest_edge/longest_edge``) bound
the token count; with 8-px patches a 32x32 image is a 4x4 patch grid -> 4 image tokens
(64x64 -> 16). Text uses multimodal RoPE whose ``mrope_section`` must sum to head_dim/2.

Example:
    >>> sorted(recipes())
    ['qwen2_5_vl', 'qwen2_vl', 'qwen3_vl']
"""

from __future__ import annotations

from vlmtune.testing.spec import PATCH, ROPE_THETA, Dims, Recipe, decoder_text, mrope_section, token_id
from vlmtune.testing.templates import TEMPLATES
from vlmtune.testing.tokenizer import TokenPlan

MERGE = 2

QWEN_TOKENS = TokenPlan(
    tokens=(
        "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
        "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
        "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
    ),
    eos="<|im_end|>",
    pad="<|endoftext|>",
)


def _qwen_processor(processor_cls, image_cls, video_cls):
    """Processor factory: pixel budget between (side/2)^2 and side^2, 8-px patches, 2x2 merge."""

    def make(tokenizer, template: str, d: Dims):
        size = {"shortest_edge": (d.image_size // 2) ** 2, "longest_edge": d.image_size**2}
        shared = {"patch_size": PATCH, "merge_size": MERGE, "temporal_patch_size": 2, "size": size}
        return processor_cls(
            image_processor=image_cls(**shared),
            tokenizer=tokenizer,
            video_processor=video_cls(**shared),
            chat_template=template,
        )

    return make


def _vision_ids(tok) -> dict:
    return {
        "image_token_id": token_id(tok, "<|image_pad|>"),
        "video_token_id": token_id(tok, "<|video_pad|>"),
        "vision_start_token_id": token_id(tok, "<|vision_start|>"),
        "vision_end_token_id": token_id(tok, "<|vision_end|>"),
    }


def _rope(d: Dims, **extra) -> dict:
    """Multimodal RoPE: rotary half-dims split over (t, h, w) by ``mrope_section``."""
    return {"rope_type": "default", "rope_theta": ROPE_THETA, "mrope_section": mrope_section(d.head_dim), **extra}


def _qwen2_vl_config(tok, d: Dims):
    from transformers import Qwen2VLConfig

    vision = {"depth": d.layers, "embed_dim": d.hidden, "hidden_size": d.hidden, "mlp_ratio": 2,
              "num_heads": d.heads, "patch_size": PATCH, "spatial_merge_size": MERGE}
    return Qwen2VLConfig(text_config=decoder_text(tok, d, rope_parameters=_rope(d)),
                         vision_config=vision, **_vision_ids(tok))


def _qwen2_5_vl_config(tok, d: Dims):
    from transformers import Qwen2_5_VLConfig

    # window_size is in pixels: 2 merged units per window side, last block global.
    vision = {"depth": d.layers, "hidden_size": d.hidden, "intermediate_size": d.ffn, "num_heads": d.heads,
              "out_hidden_size": d.hidden, "patch_size": PATCH, "spatial_merge_size": MERGE,
              "window_size": 2 * MERGE * PATCH, "fullatt_block_indexes": [d.layers - 1]}
    return Qwen2_5_VLConfig(text_config=decoder_text(tok, d, rope_parameters=_rope(d)),
                            vision_config=vision, **_vision_ids(tok))


def _qwen3_vl_config(tok, d: Dims):
    """Learned position grid sized to the default image; DeepStack injects vision layer 0 into the LM."""
    from transformers import Qwen3VLConfig

    vision = {"depth": d.layers, "hidden_size": d.hidden, "intermediate_size": d.ffn, "num_heads": d.heads,
              "out_hidden_size": d.hidden, "patch_size": PATCH, "spatial_merge_size": MERGE,
              "num_position_embeddings": d.patches_per_side**2, "deepstack_visual_indexes": [0]}
    text = decoder_text(tok, d, head_dim=d.head_dim, rope_parameters=_rope(d, mrope_interleaved=True))
    for key in ("bos_token_id", "eos_token_id"):  # Qwen3-VL's text config only knows pad
        text.pop(key)
    return Qwen3VLConfig(text_config=text, vision_config=vision, **_vision_ids(tok))


def recipes() -> dict[str, Recipe]:
    """The three Qwen recipes (transformers imported lazily)."""
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    qwen2 = _qwen_processor(Qwen2VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor)
    qwen25 = _qwen_processor(Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor)
    qwen3 = _qwen_processor(Qwen3VLProcessor, Qwen2VLImageProcessor, Qwen3VLVideoProcessor)
    return {
        "qwen2_vl": Recipe(QWEN_TOKENS, TEMPLATES["qwen2_vl"], qwen2, _qwen2_vl_config),
        "qwen2_5_vl": Recipe(QWEN_TOKENS, TEMPLATES["qwen2_5_vl"], qwen25, _qwen2_5_vl_config),
        "qwen3_vl": Recipe(QWEN_TOKENS, TEMPLATES["qwen3_vl"], qwen3, _qwen3_vl_config),
    }
