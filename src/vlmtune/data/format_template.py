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

from vlmtune.data.findings import Finding
from vlmtune.data.schema import Sample
# Function-level imports: transformers (through model.load and data.encode) loads only when a
# model is given (CLI start-up).

MAX_ALIGNED = 200  # training samples encoded to check that served prompts equal training prefixes


def render_prompt(processor: Any, family: Any, sample: Sample) -> str:
    """The prompt (conversation up to the answer) as the model is served it."""
    from vlmtune.data.encode import prompt_text

    return prompt_text(processor, family, sample.prompt_messages)


def skeleton(processor: Any, family: Any, sample: Sample) -> str:
    """The served prompt with every text part replaced by ``<text>``: structure only."""
    from vlmtune.data.encode import prompt_text

    masked = [{**m, "content": [c if c["type"] != "text" else {"type": "text", "text": "\x00"}
                                for c in m["content"]]} for m in sample.prompt_messages]
    return re.sub(r"\x00", "<text>", prompt_text(processor, family, masked))


def compare_templates(model: str, train: dict[str, list[Sample]], test: dict[str, list[Sample]]) -> list:
    from vlmtune.config import ModelConfig
    from vlmtune.model.load import load_processor_only

    processor, family, image_ids = load_processor_only(ModelConfig(path=model))
    out = prompt_alignment(processor, family, [s for samples in train.values() for s in samples], image_ids)
    for task in sorted(set(train) & set(test)):
        a, b = train[task][0], test[task][0]
        ex = [{"side": "train", "id": a.id, "where": a.where, "text": render_prompt(processor, family, a)},
              {"side": "eval", "id": b.id, "where": b.where, "text": render_prompt(processor, family, b)}]
        if skeleton(processor, family, a) != skeleton(processor, family, b):
            out.append(Finding("warning", task, "template", f"task {task}: the chat template renders a different "
                                                            "prompt structure for train and eval (texts masked)", ex))
        else:
            out.append(Finding("info", task, "template", f"task {task}: same rendered prompt structure", ex))
    return out


def prompt_alignment(processor: Any, family: Any, samples: list[Sample], image_ids: set[int]) -> list:
    """Findings on train vs serve prompts: the template's note (a generation prompt that
    differs from what training renders before the answer, and is aligned), and how many
    training samples have a served prompt that is not, token for token, their training
    sequence before the last answer."""
    from vlmtune.data.chat_template import template_info
    from vlmtune.data.encode import IGNORE, encode_sample, prompt_ids
    from vlmtune.errors import DataError

    out = []
    if family.prompt is None:
        info = template_info(processor)
        if info.note:
            out.append(Finding("info", "*", "prompt", f"prompts are aligned to training: {info.note}"))
        tok = processor.tokenizer
        special = set(tok.all_special_ids) | {i for i, t in tok.added_tokens_decoder.items() if t.special}
        if not info.end_of_turn:
            out.append(Finding("warning", "*", "prompt", "the chat template writes nothing after an answer: "
                                                         "the model does not learn to stop"))
        elif not special & set(tok(info.end_of_turn, add_special_tokens=False)["input_ids"]):
            out.append(Finding("warning", "*", "prompt", f"the chat template closes answers with "
                                                         f"{info.end_of_turn!r}, which holds no special token: "
                                                         "generation does not stop on it"))
    checked, differ = 0, []
    for sample in [s for s in samples if s.messages[-1]["role"] == "assistant"][:MAX_ALIGNED]:
        images, videos = sample.load_images(), sample.load_videos()
        try:
            enc = encode_sample(processor, family, sample, images, image_ids, videos=videos)
        except DataError as err:
            out.append(Finding("error", sample.task or "(none)", "labels", str(err)))
            continue
        labelled = [i for i, t in enumerate(enc.labels) if t != IGNORE]
        last = max(i for i in labelled if i == 0 or enc.labels[i - 1] == IGNORE)
        checked += 1
        if prompt_ids(processor, family, sample.prompt_messages, images, videos) != enc.input_ids[:last]:
            differ.append({"side": "train", "id": sample.id, "where": sample.where,
                           "text": render_prompt(processor, family, sample)})
    if differ:
        out.append(Finding("warning", "*", "prompt", f"{len(differ)} of {checked} training samples: the served "
                                                     "prompt is not the training tokens before the answer "
                                                     "(the answer's first token merges with the prompt)", differ[:3]))
    elif checked:
        out.append(Finding("info", "*", "prompt", f"served prompt == training tokens before the answer "
                                                  f"({checked} training samples checked)"))
    return out
