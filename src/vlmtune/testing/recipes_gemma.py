"""Tiny recipes for Google's SigLIP + Gemma models: PaliGemma and Gemma 3.

Why these choices: both feed every SigLIP patch feature (PaliGemma) or an average-pooled
grid of them (Gemma 3, ``mm_tokens_per_image`` must be a square dividing the patch grid)
to a Gemma decoder, and both mark image tokens with ``token_type_ids`` that switch on
bidirectional attention inside image blocks. PaliGemma at 32 px: 4x4 patches -> 16
tokens. Gemma 3 at 64 px: 8x8 patches pooled 2x2 -> 16 tokens, wrapped in
``<start_of_image>...<end_of_image>``. The PaliGemma processor adds 1024 ``<loc>`` and
128 ``<seg>`` tokens itself, which is why configs are built after the processor.

Example:
    >>> sorted(recipes())
    ['gemma3', 'paligemma']
"""

from __future__ import annotations

from vlmtune.testing.spec import Dims, Recipe, decoder_text, token_id, vit
from vlmtune.testing.templates import TEMPLATES
from vlmtune.testing.tokenizer import TokenPlan

PALIGEMMA_TOKENS = TokenPlan(
    tokens=("<pad>", "<eos>", "<bos>", "<unk>", "<image>"),
    bos="<bos>",
    eos="<eos>",
    pad="<pad>",
    unk="<unk>",
    named={"image_token": "<image>"},
)

GEMMA3_TOKENS = TokenPlan(
    tokens=("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
            "<start_of_image>", "<end_of_image>", "<image_soft_token>"),
    bos="<bos>",
    eos="<eos>",
    pad="<pad>",
    unk="<unk>",
    named={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
)


def _gemma3_tokens_per_image(d: Dims) -> int:
    """Pooled tokens per image: the patch grid pooled 2x2 (kept as is when only 2 patches wide)."""
    side = d.patches_per_side // 2 if d.patches_per_side > 2 else d.patches_per_side
    return side * side


def _paligemma_processor(tokenizer, template: str, d: Dims):
    from transformers import PaliGemmaProcessor, SiglipImageProcessor

    image_processor = SiglipImageProcessor(size={"height": d.image_size, "width": d.image_size},
                                           image_seq_length=d.patches_per_side**2)
    return PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=template)


def _gemma3_processor(tokenizer, template: str, d: Dims):
    from transformers import Gemma3ImageProcessor, Gemma3Processor

    image_processor = Gemma3ImageProcessor(size={"height": d.image_size, "width": d.image_size})
    return Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, chat_template=template,
                           image_seq_length=_gemma3_tokens_per_image(d))


def _paligemma_config(tok, d: Dims):
    from transformers import PaliGemmaConfig

    text = decoder_text(tok, d, head_dim=d.head_dim, num_image_tokens=d.patches_per_side**2)
    return PaliGemmaConfig(
        vision_config={"model_type": "siglip_vision_model", "projection_dim": d.hidden, **vit(d)},
        text_config={"model_type": "gemma", **text},
        image_token_index=token_id(tok, "<image>"),
        projection_dim=d.hidden,
        hidden_size=d.hidden,
        vocab_size=len(tok),
    )


def _gemma3_config(tok, d: Dims):
    from transformers import Gemma3Config

    text = decoder_text(tok, d, head_dim=d.head_dim, query_pre_attn_scalar=d.head_dim, sliding_window=16,
                        layer_types=["sliding_attention"] * (d.layers - 1) + ["full_attention"])
    tokens = _gemma3_tokens_per_image(d)
    return Gemma3Config(
        vision_config={"model_type": "siglip_vision_model", "vision_use_head": False, **vit(d)},
        text_config={"model_type": "gemma3_text", **text},
        mm_tokens_per_image=tokens,
        boi_token_index=token_id(tok, "<start_of_image>"),
        eoi_token_index=token_id(tok, "<end_of_image>"),
        image_token_index=token_id(tok, "<image_soft_token>"),
    )


def _init_gemma3_projector(model) -> None:
    """Gemma 3 zero-initialises its projector matrix, which hides the image from the text entirely
    (no image influence, no gradient into the vision tower); give it a unit-scale random init."""
    import torch

    projector = model.model.multi_modal_projector.mm_input_projection_weight
    with torch.no_grad():
        projector.normal_(std=projector.shape[0] ** -0.5)


def recipes() -> dict[str, Recipe]:
    """The PaliGemma and Gemma 3 recipes."""
    return {
        "paligemma": Recipe(PALIGEMMA_TOKENS, TEMPLATES["paligemma"], _paligemma_processor, _paligemma_config),
        "gemma3": Recipe(GEMMA3_TOKENS, TEMPLATES["gemma3"], _gemma3_processor, _gemma3_config,
                         stop_tokens=("<end_of_turn>",), post_init=_init_gemma3_projector),
    }
