"""PaliGemma: SigLIP ``vision_tower`` + linear ``multi_modal_projector`` + Gemma decoder.

PaliGemma has no chat template. Its processor takes the prompt as ``text`` (it prepends
the image tokens and BOS and appends a newline) and the answer as ``suffix``, and builds
``token_type_ids`` (0 = prefix, attended bidirectionally; 1 = suffix, causal) and labels.
So a conversation becomes one prompt (the user texts) and one suffix (the last answer).
"""

from __future__ import annotations

from typing import Any

from vlmtune.families.base import Family
# Function-level imports: data.encode types are needed only when PaliGemma builds its labels (up-
# import kept lazy).


def _user_text(messages: list[dict]) -> str:
    parts = [c["text"] for m in messages if m["role"] != "assistant"
             for c in m["content"] if c["type"] == "text"]
    return "\n".join(p.strip() for p in parts if p.strip())


def _n_images(messages: list[dict]) -> int:
    return sum(c["type"] == "image" for m in messages for c in m["content"])


def prompt(processor: Any, messages: list[dict]) -> str:
    image = getattr(processor, "image_token", "<image>")
    return image * _n_images(messages) + _user_text(messages)


def encode(processor: Any, sample: Any) -> Any:
    from vlmtune.data.encode import Rendered
    from vlmtune.data.schema import text_of

    answer = text_of(sample.messages[-1]) if sample.messages[-1]["role"] == "assistant" else ""
    return Rendered(prompt(processor, sample.prompt_messages), suffix=answer)


PALIGEMMA = Family("PaliGemma", ("paligemma",), vision=("model.vision_tower",),
                   projector=("model.multi_modal_projector",),
                   language=("model.language_model", "lm_head"), encode=encode, prompt=prompt,
                   packing_why="its prompt prefix attends bidirectionally",
                   notes="single-turn only: prompt + suffix")
FAMILIES = (PALIGEMMA,)
