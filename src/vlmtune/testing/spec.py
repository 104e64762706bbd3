"""The shape of a tiny-model recipe: sizes, and what each family must provide.

Why: the twelve families differ in configs, processors, tokens and templates, but the
build pipeline (train tokenizer -> processor -> config -> seeded init -> save) is the
same. Each family is therefore data: a :class:`Recipe` holding its token plan and two
small functions; ``build_tiny`` never branches on the family name.

Example:
    >>> d = Dims(hidden=32, layers=2, image_size=32)
    >>> (d.heads, d.head_dim, d.kv_heads, d.ffn)
    (2, 16, 1, 64)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vlmtune.testing.tokenizer import TokenPlan

# Small fixed sizes shared by all recipes.
PATCH = 8  # vision patch side in pixels (real models: 14 or 16)
MAX_POSITIONS = 2048
ROPE_THETA = 10000.0


@dataclass(frozen=True)
class Dims:
    """Model sizes for a tiny build; vision and text towers share width and depth.

    Heads are 16 wide (1 head at hidden 16, 2 at 32, ...), text attention uses one KV
    head by default so grouped-query attention is exercised from hidden 32 up. Set
    ``kv_heads`` (and hidden 64) for bitsandbytes' CPU 4-bit kernels, which need every
    quantised layer's output width to be a multiple of 32.
    """

    hidden: int
    layers: int
    image_size: int
    text_kv_heads: int = 1

    def __post_init__(self):
        if self.hidden < 16 or self.hidden % 16:
            raise ValueError(f"hidden must be a multiple of 16 and >= 16, got {self.hidden}")
        if self.layers < 2:
            raise ValueError(f"layers must be >= 2 (vision_feature_layer=-2 needs two), got {self.layers}")
        if self.image_size < 2 * PATCH or self.image_size % (2 * PATCH):
            raise ValueError(f"image_size must be a multiple of {2 * PATCH}, got {self.image_size}")
        if self.text_kv_heads < 1 or self.heads % self.text_kv_heads:
            raise ValueError(f"kv_heads must divide the {self.heads} attention heads, got {self.text_kv_heads}")

    @property
    def heads(self) -> int:
        return self.hidden // 16

    @property
    def head_dim(self) -> int:
        return 16

    @property
    def kv_heads(self) -> int:
        return self.text_kv_heads

    @property
    def ffn(self) -> int:
        return 2 * self.hidden

    @property
    def patches_per_side(self) -> int:
        return self.image_size // PATCH


@dataclass(frozen=True)
class Recipe:
    """Everything one family needs for a tiny checkpoint.

    ``processor(tokenizer, template, dims)`` returns the family's processor (it may add
    tokens, e.g. PaliGemma's ``<loc####>``); ``config(tokenizer, dims)`` is called after
    that, with the final vocabulary, and returns the model config. ``stop_tokens`` are
    end-of-turn tokens that generation should stop on besides ``eos_token``.
    ``post_init(model)`` adjusts the fresh random init where it would hide the image.
    """

    tokens: TokenPlan
    template: str
    processor: Callable[[Any, str, Dims], Any]
    config: Callable[[Any, Dims], Any]
    stop_tokens: tuple[str, ...] = ()
    post_init: Callable[[Any], None] | None = None


def token_id(tokenizer, token: str) -> int:
    """Id of a special token, failing loudly when the tokenizer lacks it (never a literal)."""
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or (tid == tokenizer.unk_token_id and token != tokenizer.unk_token):
        raise KeyError(f"token {token!r} is not in the tokenizer")
    return tid


def role_ids(tokenizer) -> dict[str, int | None]:
    """``bos/eos/pad_token_id`` for a text config, read from the tokenizer."""
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def decoder_text(tokenizer, d: Dims, **extra) -> dict:
    """Llama-style decoder sizes shared by the Llama, Qwen2, Gemma and Mllama text configs."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": d.hidden,
        "intermediate_size": d.ffn,
        "num_hidden_layers": d.layers,
        "num_attention_heads": d.heads,
        "num_key_value_heads": d.kv_heads,
        "max_position_embeddings": MAX_POSITIONS,
        **role_ids(tokenizer),
        **extra,
    }


def vit(d: Dims, **extra) -> dict:
    """CLIP/SigLIP-style vision tower sizes (``hidden_size``, ``num_hidden_layers``...)."""
    return {
        "hidden_size": d.hidden,
        "intermediate_size": d.ffn,
        "num_hidden_layers": d.layers,
        "num_attention_heads": d.heads,
        "image_size": d.image_size,
        "patch_size": PATCH,
        **extra,
    }


def mrope_section(head_dim: int) -> list[int]:
    """Split of the rotary half-dimension over (time, height, width); sums to head_dim/2."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]
