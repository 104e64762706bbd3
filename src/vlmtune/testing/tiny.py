"""Tiny real-architecture VLM checkpoints for tests, built offline in well under a second.

Why: tests must run the *real* transformers classes (processors, chat templates, vision
towers, projectors, RoPE variants, cross-attention...) because that is where fine-tuning
code breaks, yet no weights can be downloaded and CI has two CPU cores. ``build_tiny``
writes a complete Hugging Face checkpoint directory — ``config.json``,
``model.safetensors`` (seeded random init), ``generation_config.json``, tokenizer files,
image/video processor config and ``chat_template.jinja`` — that loads through the
ordinary ``AutoProcessor`` / ``AutoModelForImageTextToText.from_pretrained`` path.

Every family uses hidden 16–64, 2 layers per tower, 8-px patches and small images (see
``IMAGE_TOKENS``). The tokenizer is a byte-level BPE trained locally on a built-in corpus,
with the family's special tokens as single ids and ``pad_token`` set.

Capabilities, checked by ``tests/testing/test_tiny.py`` (transformers 5.24):

* ``TEXT_ONLY_OK``: families whose processor and model accept a batch mixing a text-only
  sample with image samples. Not PaliGemma (its processor inserts ``<bos>`` after the
  last ``<image>``, i.e. mid-text for a sample without one) nor Mllama (its image
  processor drops the empty sample from ``aspect_ratio_ids``, or crashes when the first
  sample has no image).
* ``TEXT_ONLY_BATCH_OK``: a batch made only of text samples works (all but PaliGemma,
  whose processor requires images).
* ``MULTI_IMAGE_OK``: two images in one sample work (all twelve; for LLaVA and
  LLaVA-NeXT only at the architecture level, their checkpoints never saw it).

Family quirks callers must know:

* PaliGemma's processor returns ``labels`` (all -100 unless ``suffix=`` is given), so
  ``model(**batch, labels=...)`` needs it popped first; and its ``token_type_ids`` mark the
  *answer* with 1: left at 0 (as after a chat template) the whole sequence, answer
  included, attends bidirectionally and training leaks the targets.
* Gemma 3 returns ``token_type_ids`` (1 on image tokens) and needs them in ``forward``.
* Qwen processors return ``mm_token_type_ids``, which their models accept.
* Mllama's processor prepends ``<|begin_of_text|>`` when the text lacks it; its image is a
  single ``<|image|>`` token read through cross-attention (``cross_attention_mask``).

Two families zero-initialise the path from image to text (Gemma 3's projector matrix,
Mllama's cross-attention tanh gates), so a fresh model would ignore the image entirely;
their recipes re-initialise those weights (``Recipe.post_init``) as a trained checkpoint
would have them.

Example:
    >>> from transformers import AutoModelForImageTextToText, AutoProcessor
    >>> path = build_tiny("qwen2_vl", "/tmp/tiny-qwen2vl")            # doctest: +SKIP
    >>> proc = AutoProcessor.from_pretrained(path)                    # doctest: +SKIP
    >>> model = AutoModelForImageTextToText.from_pretrained(path)     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from vlmtune.testing import recipes_gemma, recipes_idefics, recipes_llava, recipes_qwen, recipes_tiles
from vlmtune.testing.spec import Dims, Recipe
from vlmtune.testing.init import generation_config, init_model
from vlmtune.testing.tokenizer import build_hf_tokenizer

TINY_FAMILIES: tuple[str, ...] = (
    "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava", "llava_next", "llava_onevision",
    "idefics3", "smolvlm", "paligemma", "internvl", "gemma3", "mllama",
)

TEXT_ONLY_OK: frozenset[str] = frozenset(TINY_FAMILIES) - {"paligemma", "mllama"}
TEXT_ONLY_BATCH_OK: frozenset[str] = frozenset(TINY_FAMILIES) - {"paligemma"}
MULTI_IMAGE_OK: dict[str, bool] = dict.fromkeys(TINY_FAMILIES, True)

# Side in pixels the image processor works at (anyres/tiling families: the tile side).
DEFAULT_IMAGE_SIZE: dict[str, int] = {
    "qwen2_vl": 64, "qwen2_5_vl": 64, "qwen3_vl": 64, "llava": 32, "llava_next": 32, "llava_onevision": 32,
    "idefics3": 64, "smolvlm": 64, "paligemma": 32, "internvl": 32, "gemma3": 64, "mllama": 32,
}

# Image placeholder tokens per image for a square image of DEFAULT_IMAGE_SIZE at default
# sizes. Others vary with the image: Qwen 4-16 (pixel budget), LLaVA-NeXT/OneVision up to
# 56 (anyres tiles), InternVL 4-20 (1-4 tiles + thumbnail). Mllama's one token is read by
# cross-attention; Idefics3/SmolVLM/InternVL/Gemma 3 add 2-3 wrapper tokens.
IMAGE_TOKENS: dict[str, int] = {
    "qwen2_vl": 16, "qwen2_5_vl": 16, "qwen3_vl": 16, "llava": 16, "llava_next": 36, "llava_onevision": 36,
    "idefics3": 16, "smolvlm": 16, "paligemma": 16, "internvl": 4, "gemma3": 16, "mllama": 1,
}


def _registry() -> dict[str, Recipe]:
    """All recipes by model_type (built on call: transformers is imported only when needed)."""
    table: dict[str, Recipe] = {}
    for module in (recipes_qwen, recipes_llava, recipes_idefics, recipes_gemma, recipes_tiles):
        table.update(module.recipes())
    return table


def build_tiny(
    family: str,
    out_dir: str | Path,
    *,
    hidden: int = 32,
    layers: int = 2,
    seed: int = 0,
    corpus: Iterable[str] | None = None,
    vocab_size: int = 1024,
    image_size: int | None = None,
    kv_heads: int = 1,
) -> Path:
    """Write a tiny, randomly initialised checkpoint of ``family`` into ``out_dir``.

    ``family`` is a transformers ``model_type``: ``TINY_FAMILIES`` have hand-tuned recipes,
    any other is generated from its config and processor classes
    (:func:`vlmtune.testing.generic.build_generic`, which ignores ``image_size``, ``corpus``
    and ``kv_heads``). ``hidden`` (a
    multiple of 16) and ``layers`` apply to both towers; ``image_size`` (a multiple of 16)
    is the side the image processor resizes to (default per family, 32 or 64 px);
    ``corpus`` replaces the built-in tokenizer corpus; ``kv_heads`` (dividing hidden/16)
    sets the decoder's key/value heads. The same arguments give the same
    weights and tokenizer. Returns ``Path(out_dir)``.

    Example:
        >>> build_tiny("gemma3", tmp_path / "g3", hidden=16)   # doctest: +SKIP
        PosixPath('.../g3')
    """
    recipes = _registry()
    if family not in recipes:
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

        from vlmtune.testing.generic import build_generic

        if family not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
            raise ValueError(f"unknown tiny family {family!r}: not an image-text-to-text model_type of "
                             f"this transformers (see docs/models.md)")

        return build_generic(family, out_dir, hidden=hidden, layers=layers, seed=seed, vocab_size=vocab_size)
    recipe = recipes[family]
    dims = Dims(hidden=hidden, layers=layers, image_size=image_size or DEFAULT_IMAGE_SIZE[family],
                text_kv_heads=kv_heads)
    tokenizer = build_hf_tokenizer(recipe.tokens, corpus, vocab_size)
    processor = recipe.processor(tokenizer, recipe.template, dims)
    config = recipe.config(processor.tokenizer, dims)
    model = init_model(config, seed, recipe.post_init)
    model.generation_config = generation_config(processor.tokenizer, recipe.stop_tokens)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
