"""Render the chat template for one train and one eval sample per task, and compare.

Why: two datasets can agree on answers and still reach the model differently (a system
turn on one side only, an image placed after the text instead of before). Rendering the
prompt as the model sees it, with the texts masked, shows the skeleton each side trains
or is tested with.

Example:
    >>> findings = compare_templates("vlmtune/tiny-shapes", {"vqa": train}, {"vqa": test})  # doctest: +SKIP
"""

from __future__ import annotations

import re
from typing import Any

from vlmtune.data.schema import Sample
# Function-level imports: transformers (through model.load) loads only when a model is given (CLI
# start-up).


def render_prompt(processor: Any, sample: Sample) -> str:
    """The prompt (conversation up to the answer) as the chat template renders it."""
    return processor.apply_chat_template(sample.prompt_messages, add_generation_prompt=True, tokenize=False)


def skeleton(processor: Any, sample: Sample) -> str:
    """The rendering with every text part replaced by ``<text>``: structure only."""
    masked = [{**m, "content": [c if c["type"] != "text" else {"type": "text", "text": "\x00"}
                                for c in m["content"]]} for m in sample.prompt_messages]
    text = processor.apply_chat_template(masked, add_generation_prompt=True, tokenize=False)
    return re.sub(r"\x00", "<text>", text)


def compare_templates(model: str, train: dict[str, list[Sample]], test: dict[str, list[Sample]]) -> list[dict]:
    """Per shared task, a finding's fields (``format_check.Finding``): same rendered skeleton or not."""
    from vlmtune.config import ModelConfig
    from vlmtune.model.load import load_processor, resolve_model_path  # transformers: only with --model

    processor = load_processor(resolve_model_path(model), ModelConfig(path=model))
    out = []
    for task in sorted(set(train) & set(test)):
        a, b = train[task][0], test[task][0]
        ex = [{"side": "train", "id": a.id, "where": a.where, "text": render_prompt(processor, a)},
              {"side": "eval", "id": b.id, "where": b.where, "text": render_prompt(processor, b)}]
        if skeleton(processor, a) != skeleton(processor, b):
            out.append(dict(severity="warning", task=task, aspect="template", examples=ex,
                            message=f"task {task}: the chat template renders a different prompt structure "
                                    "for train and eval (texts masked)"))
        else:
            out.append(dict(severity="info", task=task, aspect="template", examples=ex,
                            message=f"task {task}: same rendered prompt structure"))
    return out
