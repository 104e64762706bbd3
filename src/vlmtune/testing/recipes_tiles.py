"""Tiny recipes for the tiling models: InternVL (3, HF format) and Mllama (Llama 3.2 Vision).

Why these choices: both cut an image into fixed-size tiles chosen by aspect ratio.
InternVL feeds each 32-px tile (4x4 patches, pixel-shuffled 2x2 -> 4 tokens) plus a
thumbnail when there is more than one tile, at most 4 tiles -> 6 to 22 tokens per image
including ``<img>``/``</img>``. Mllama instead keeps one ``<|image|>`` token in the text and
lets cross-attention layers read the tiles (at most 2 tiles of 32 px here), so the
image costs one text token; its text tower has ``layers`` self-attention layers plus one
cross-attention layer.

Example:
    >>> sorted(recipes())
    ['internvl', 'mllama']
"""

from __future__ import annotations

from vlmtune.testing.recipes_qwen import QWEN_TOKENS
from vlmtune.testing.spec import PATCH, Dims, Recipe, decoder_text, token_id
from vlmtune.testing.templates import TEMPLATES
from vlmtune.testing.tokenizer import TokenPlan

INTERNVL_MAX_TILES = 4
MLLAMA_MAX_TILES = 2

INTERNVL_TOKENS = TokenPlan(
    tokens=(*QWEN_TOKENS.tokens[:3], "<img>", "</img>", "<IMG_CONTEXT>", "<video>"),
    eos="<|im_end|>",
    pad="<|endoftext|>",
    named={"start_image_token": "<img>", "end_image_token": "</img>",
           "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"},
)

MLLAMA_TOKENS = TokenPlan(
    tokens=("<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>", "<|start_header_id|>",
            "<|end_header_id|>", "<|eot_id|>", "<|python_tag|>", "<|image|>"),
    bos="<|begin_of_text|>",
    eos="<|eot_id|>",
    pad="<|finetune_right_pad_id|>",
    named={"image_token": "<|image|>"},
)


def _internvl_processor(tokenizer, template: str, d: Dims):
    from transformers import GotOcr2ImageProcessor, InternVLProcessor, InternVLVideoProcessor

    size = {"height": d.image_size, "width": d.image_size}
    image_processor = GotOcr2ImageProcessor(size=size, crop_to_patches=True, min_patches=1,
                                            max_patches=INTERNVL_MAX_TILES)
    return InternVLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                             video_processor=InternVLVideoProcessor(size=size),
                             image_seq_length=d.patches_per_side**2 // 4, chat_template=template)


def _mllama_processor(tokenizer, template: str, d: Dims):
    from transformers import MllamaImageProcessor, MllamaProcessor

    image_processor = MllamaImageProcessor(size={"height": d.image_size, "width": d.image_size},
                                           max_image_tiles=MLLAMA_MAX_TILES)
    return MllamaProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=template)


def _internvl_config(tok, d: Dims):
    """InternViT tower on tile-size images; ``downsample_ratio=0.5`` pixel-shuffles 2x2 patches per token."""
    from transformers import InternVLConfig

    vision = {"hidden_size": d.hidden, "intermediate_size": d.ffn, "num_hidden_layers": d.layers,
              "num_attention_heads": d.heads, "image_size": [d.image_size] * 2, "patch_size": [PATCH] * 2}
    return InternVLConfig(
        vision_config=vision,
        text_config={"model_type": "qwen2", **decoder_text(tok, d)},
        image_token_id=token_id(tok, "<IMG_CONTEXT>"),
        image_seq_length=d.patches_per_side**2 // 4,
        downsample_ratio=0.5,
    )


def _tile_ratios(max_tiles: int) -> list[list[int]]:
    """(width, height) tile grids with at most ``max_tiles`` tiles, in Mllama's processor order."""
    return [[w, h] for w in range(1, max_tiles + 1) for h in range(1, max_tiles + 1) if w * h <= max_tiles]


def _mllama_config(tok, d: Dims):
    """Local + 1 global vision layer; ``vision_output_dim`` = hidden x (1 + intermediate layers kept)."""
    from transformers import MllamaConfig

    vision = {"hidden_size": d.hidden, "intermediate_size": d.ffn, "num_hidden_layers": d.layers,
              "num_global_layers": 1, "attention_heads": d.heads, "image_size": d.image_size,
              "patch_size": PATCH, "max_num_tiles": MLLAMA_MAX_TILES, "intermediate_layers_indices": [0],
              "vision_output_dim": 2 * d.hidden, "supported_aspect_ratios": _tile_ratios(MLLAMA_MAX_TILES)}
    text = decoder_text(tok, d, num_hidden_layers=d.layers + 1, cross_attention_layers=[1])
    return MllamaConfig(vision_config=vision, text_config=text, image_token_index=token_id(tok, "<|image|>"))


def _open_cross_attention_gates(model) -> None:
    """Set Mllama's tanh gates to 1: zero-initialised, they hide the image from the text entirely
    (no image influence, no gradient into the vision tower); trained checkpoints have them open."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
                param.fill_(1.0)


def recipes() -> dict[str, Recipe]:
    """The InternVL and Mllama recipes."""
    return {
        "internvl": Recipe(INTERNVL_TOKENS, TEMPLATES["internvl"], _internvl_processor, _internvl_config),
        "mllama": Recipe(MLLAMA_TOKENS, TEMPLATES["mllama"], _mllama_processor, _mllama_config,
                         stop_tokens=("<|end_of_text|>",), post_init=_open_cross_attention_gates),
    }
