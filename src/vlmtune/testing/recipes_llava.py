"""Tiny recipes for the LLaVA line: LLaVA-1.5, LLaVA-NeXT, LLaVA-OneVision.

Why these choices: LLaVA-1.5 is CLIP + MLP projector + Llama with a fixed square crop,
so a 32-px crop with 8-px patches gives 16 image tokens (CLS dropped by the "default"
feature strategy). NeXT and OneVision add "anyres" tiling: the image is matched to the
best of ``image_grid_pinpoints`` and split into base-size tiles, plus a downscaled base
view and one newline token per feature row. Pinpoints are kept to 1x1, 1x2 and 2x1 tiles,
so a 32-px base gives 36 tokens for a square image and at most 52 for a 1:2 one.
OneVision uses SigLIP (no CLS, "full" strategy) and a Qwen2 language model.

Example:
    >>> sorted(recipes())
    ['llava', 'llava_next', 'llava_onevision']
"""

from __future__ import annotations

from vlmtune.testing.spec import PATCH, Dims, Recipe, decoder_text, token_id, vit
from vlmtune.testing.templates import TEMPLATES
from vlmtune.testing.tokenizer import TokenPlan

LLAMA_TOKENS = TokenPlan(
    tokens=("<unk>", "<s>", "</s>", "<image>", "<pad>"),
    bos="<s>",
    eos="</s>",
    pad="<pad>",
    unk="<unk>",
    named={"image_token": "<image>"},
    add_bos=True,  # Llama/Mistral SentencePiece tokenizers prepend <s> themselves
)

ONEVISION_TOKENS = TokenPlan(
    tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"),
    eos="<|im_end|>",
    pad="<|endoftext|>",
    named={"image_token": "<image>", "video_token": "<video>"},
)


def _pinpoints(d: Dims) -> list[list[int]]:
    """Anyres canvases (height, width): 1x1, 1x2 and 2x1 tiles of the base size."""
    s = d.image_size
    return [[s, s], [s, 2 * s], [2 * s, s]]


def _llava_processor(tokenizer, template: str, d: Dims):
    from transformers import CLIPImageProcessor, LlavaProcessor

    crop = {"height": d.image_size, "width": d.image_size}
    image_processor = CLIPImageProcessor(size={"shortest_edge": d.image_size}, crop_size=crop)
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=template)


def _llava_next_processor(tokenizer, template: str, d: Dims):
    from transformers import LlavaNextImageProcessor, LlavaNextProcessor

    crop = {"height": d.image_size, "width": d.image_size}
    image_processor = LlavaNextImageProcessor(size={"shortest_edge": d.image_size}, crop_size=crop,
                                              image_grid_pinpoints=_pinpoints(d))
    return LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
                              vision_feature_select_strategy="default", num_additional_image_tokens=1,
                              chat_template=template)


def _onevision_processor(tokenizer, template: str, d: Dims):
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor

    size = {"height": d.image_size, "width": d.image_size}
    return LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=_pinpoints(d)),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        num_image_tokens=d.patches_per_side**2,
        vision_feature_select_strategy="full",
        chat_template=template,
    )


def _clip_llama(tok, d: Dims) -> dict:
    """Shared LLaVA / LLaVA-NeXT config fields: CLIP tower, Llama LM, penultimate-layer features."""
    return {
        "vision_config": {"model_type": "clip_vision_model", "projection_dim": d.hidden, **vit(d)},
        "text_config": {"model_type": "llama", **decoder_text(tok, d, head_dim=d.head_dim)},
        "image_token_index": token_id(tok, "<image>"),
        "vision_feature_select_strategy": "default",
        "vision_feature_layer": -2,
    }


def _llava_config(tok, d: Dims):
    from transformers import LlavaConfig

    return LlavaConfig(**_clip_llama(tok, d), image_seq_length=d.patches_per_side**2)


def _llava_next_config(tok, d: Dims):
    from transformers import LlavaNextConfig

    return LlavaNextConfig(**_clip_llama(tok, d), image_grid_pinpoints=_pinpoints(d),
                           image_seq_length=d.patches_per_side**2)


def _onevision_config(tok, d: Dims):
    from transformers import LlavaOnevisionConfig

    return LlavaOnevisionConfig(
        vision_config={"model_type": "siglip_vision_model", **vit(d)},
        text_config={"model_type": "qwen2", **decoder_text(tok, d)},
        image_token_index=token_id(tok, "<image>"),
        video_token_index=token_id(tok, "<video>"),
        image_grid_pinpoints=_pinpoints(d),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )


def recipes() -> dict[str, Recipe]:
    """The three LLaVA recipes."""
    return {
        "llava": Recipe(LLAMA_TOKENS, TEMPLATES["llava"], _llava_processor, _llava_config),
        "llava_next": Recipe(LLAMA_TOKENS, TEMPLATES["llava_next"], _llava_next_processor, _llava_next_config),
        "llava_onevision": Recipe(ONEVISION_TOKENS, TEMPLATES["llava_onevision"], _onevision_processor,
                                  _onevision_config),
    }
