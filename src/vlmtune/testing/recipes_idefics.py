"""Tiny recipes for Idefics3 and SmolVLM (SigLIP-like tower + pixel shuffle + Llama LM).

Why these choices: both shuffle each 2x2 block of patch features into one token
(``scale_factor=2``), so a 64-px image with 8-px patches yields 8x8/4 = 16 ``<image>``
tokens, wrapped as ``<fake_token_around_image><global-img><image>*16<fake_token_around_image>``.
Image splitting (a grid of sub-images plus a global view, up to 37 views at real sizes)
is disabled so the token count stays fixed; the processors still need the
``<row_i_col_j>`` tokens to exist, so they are in the vocabulary.

Example:
    >>> sorted(recipes())
    ['idefics3', 'smolvlm']
"""

from __future__ import annotations

from vlmtune.testing.spec import Dims, Recipe, decoder_text, token_id, vit
from vlmtune.testing.templates import TEMPLATES
from vlmtune.testing.tokenizer import TokenPlan

SCALE = 2  # pixel-shuffle factor
ROW_COL = tuple(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7))
IMAGE_MARKERS = ("<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>")

IDEFICS3_TOKENS = TokenPlan(
    tokens=("<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", *IMAGE_MARKERS, *ROW_COL),
    bos="<|begin_of_text|>",
    eos="<end_of_utterance>",
    pad="<|reserved_special_token_0|>",
)

SMOLVLM_TOKENS = TokenPlan(
    tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>", *IMAGE_MARKERS, *ROW_COL),
    bos="<|im_start|>",
    eos="<end_of_utterance>",
    pad="<|im_end|>",
    unk="<|endoftext|>",
    named={
        "image_token": "<image>",
        "fake_image_token": "<fake_token_around_image>",
        "global_image_token": "<global-img>",
        "end_of_utterance_token": "<end_of_utterance>",
    },
)


def _image_seq_len(d: Dims) -> int:
    """``<image>`` tokens per view: patch grid shrunk by the pixel shuffle."""
    return d.patches_per_side**2 // SCALE**2


def _unsplit(d: Dims) -> dict:
    """Image-processor kwargs: one global view resized to the encoder's side, no splitting."""
    return {"do_image_splitting": False, "size": {"longest_edge": d.image_size},
            "max_image_size": {"longest_edge": d.image_size}}


def _idefics3_processor(tokenizer, template: str, d: Dims):
    from transformers import Idefics3ImageProcessor, Idefics3Processor

    return Idefics3Processor(image_processor=Idefics3ImageProcessor(**_unsplit(d)), tokenizer=tokenizer,
                             image_seq_len=_image_seq_len(d), chat_template=template)


def _smolvlm_processor(tokenizer, template: str, d: Dims):
    from transformers import SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor

    return SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(**_unsplit(d)),
        tokenizer=tokenizer,
        video_processor=SmolVLMVideoProcessor(size={"longest_edge": d.image_size},
                                              max_image_size={"longest_edge": d.image_size}),
        image_seq_len=_image_seq_len(d),
        chat_template=template,
    )


def _config_fields(tok, d: Dims) -> dict:
    return {
        "vision_config": vit(d),
        "text_config": {"model_type": "llama", **decoder_text(tok, d, head_dim=d.head_dim)},
        "scale_factor": SCALE,
        "image_token_id": token_id(tok, "<image>"),
    }


def _idefics3_config(tok, d: Dims):
    from transformers import Idefics3Config

    return Idefics3Config(**_config_fields(tok, d))


def _smolvlm_config(tok, d: Dims):
    from transformers import SmolVLMConfig

    return SmolVLMConfig(**_config_fields(tok, d))


def recipes() -> dict[str, Recipe]:
    """The Idefics3 and SmolVLM recipes."""
    return {
        "idefics3": Recipe(IDEFICS3_TOKENS, TEMPLATES["idefics3"], _idefics3_processor, _idefics3_config),
        "smolvlm": Recipe(SMOLVLM_TOKENS, TEMPLATES["smolvlm"], _smolvlm_processor, _smolvlm_config),
    }
