"""Short per-architecture exceptions to the generated tiny builds (data, not recipes).

Why: :mod:`vlmtune.testing.generic` derives a tiny build from the config class and the
processor class alone; a few architectures need one more fact (a placeholder the chat
template must emit, a config field tying two sizes together, a weight whose init is
zero). Each is one :class:`Override` entry with the reason beside it.

Example:
    >>> override_for("llava").grid
    4
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Override:
    """What one architecture needs beyond the generic build.

    ``grid``: patches per image side; ``named_tokens``: tokenizer attributes and their
    tokens; ``placeholder(processor)``: the text a chat template emits per image (default
    ``processor.image_token``); ``config(d, processor)``: last edits of the config dict.
    """

    grid: int = 4
    named_tokens: dict[str, str] = field(default_factory=dict)
    extra_tokens: tuple[str, ...] = ()
    bos: str | None = None
    processor_kwargs: dict[str, Any] = field(default_factory=dict)
    image_kwargs: Callable[[int], dict] | None = None
    placeholder: Callable[[Any], str] | None = None
    template: str | None = None
    newline_after_image: bool = True
    config: Callable[[dict, Any], dict] | None = None
    post_init: Callable[[Any], None] | None = None

    def apply_config(self, d: dict, processor) -> dict:
        return self.config(d, processor) if self.config else d


def _ovis2_tokens(d: dict, processor) -> dict:
    """Ovis2 replaces ``<image>`` by a grid of ``<IMG_ATOM>`` framed by five indicator tokens;
    its config names them by id (the processor does not)."""
    tok = processor.tokenizer
    ids = tok.convert_tokens_to_ids
    d["image_token_id"] = ids("<IMG_ATOM>")
    d["visual_indicator_token_ids"] = [ids(t) for t in ("<IMG_START>", "<IMG_GRID>", "<IMG_COL>",
                                                         "<IMG_ROW>", "<IMG_END>")]
    return d


def _llama4_adapter_width(d: dict, processor) -> dict:
    """Llama 4's vision adapter reads the pixel-shuffled features (width / ratio^2) through a
    layer sized by the tower's ``intermediate_size``; the two must agree."""
    vision = d["vision_config"]
    vision["intermediate_size"] = int(vision["hidden_size"] / vision["pixel_shuffle_ratio"] ** 2)
    d["image_token_index"] = processor.tokenizer.convert_tokens_to_ids("<|patch|>")  # what images expand to
    return d


OVERRIDES: dict[str, Override] = {
    "llama4": Override(config=_llama4_adapter_width),
    "ovis2": Override(config=_ovis2_tokens, extra_tokens=(  # written inside f-strings, not as literals
        "<IMG_ATOM>", "<IMG_START>", "<IMG_GRID>", "<IMG_COL>", "<IMG_ROW>", "<IMG_END>")),
    # its processor rewrites the text after an image; the template puts nothing there
    "granite_docling": Override(newline_after_image=False),
    # the processor's image_token is the expanded context token; prompts carry "<image>"
    "qianfan_ocr": Override(placeholder=lambda processor: "<image>"),
}


def override_for(model_type: str) -> Override:
    return OVERRIDES.get(model_type, Override())
