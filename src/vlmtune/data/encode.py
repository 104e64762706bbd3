"""Render a sample through the family's chat template and label assistant tokens only.

Why it is done this way: the processor expands each image placeholder into many image
tokens (a count that depends on the family and the image size), so character offsets in
the rendered text do not map to token positions. We therefore

1. render the conversation and find each assistant answer's *character* span by rendering
   the prefix up to that turn with ``add_generation_prompt=True``;
2. tokenize the rendered text plainly (placeholders unexpanded) with offsets, to know
   which plain tokens are answer tokens;
3. let the processor expand images, and align plain tokens to expanded tokens in order:
   expansion only *inserts* special tokens, so a greedy in-order walk maps every plain
   token. The inserted positions are the image region, which truncation must not cut.

A family whose processor builds labels itself (PaliGemma's prompt + ``suffix``) returns
``labels`` from the processor; those are used as they are.

Example:
    >>> enc = encode_sample(processor, family, sample, sample.load_images())  # doctest: +SKIP
    >>> len(enc.input_ids) == len(enc.labels)
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vlmtune.data.schema import Sample
from vlmtune.families.base import Family

IGNORE = -100


@dataclass
class Rendered:
    """What goes into the processor for one sample: ``text`` (and ``suffix`` for
    families that take the answer separately), plus answer character spans in ``text``."""

    text: str
    spans: list[tuple[int, int]]
    suffix: str | None = None


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    min_keep: int  # truncating to fewer tokens would cut into an image

    @property
    def n_answer_tokens(self) -> int:
        return sum(label != IGNORE for label in self.labels)


def chat(processor: Any, messages: list[dict], *, generation_prompt: bool) -> str:
    return processor.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=generation_prompt)


def render_chat(processor: Any, messages: list[dict]) -> Rendered:
    """Full conversation text and the character span of every assistant turn.

    The span ends after the turn's closing tokens (e.g. ``<|im_end|>``) so the model
    learns to stop, minus trailing whitespace the template adds between turns.
    """
    full = chat(processor, messages, generation_prompt=False)
    spans = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant" or msg.get("train") is False:  # train: false = context only
            continue
        start = len(chat(processor, messages[:i], generation_prompt=True))
        upto = chat(processor, messages[: i + 1], generation_prompt=False)
        if not full.startswith(upto[:start]) or not upto.startswith(full[:start]):
            raise ValueError("chat template renders a prefix of the conversation differently "
                             "from the whole; cannot locate assistant answers")
        end = len(upto.rstrip())
        spans.append((start, end))
    return Rendered(full, spans)


def render(processor: Any, family: Family, sample: Sample) -> Rendered:
    if family.encode is not None:
        return family.encode(processor, sample)
    return render_chat(processor, sample.messages)


def prompt_text(processor: Any, family: Family, messages: list[dict]) -> str:
    """The generation prompt for ``messages`` (which end with a user turn)."""
    if family.prompt is not None:
        return family.prompt(processor, messages)
    return chat(processor, messages, generation_prompt=True)


def starts_with_bos(processor: Any, text: str) -> bool:
    bos = getattr(processor.tokenizer, "bos_token", None)
    return bool(bos) and text.startswith(bos)


def call_processor(processor: Any, rendered: list[Rendered], images: list[list[Any]], **kwargs) -> Any:
    """One processor call for a batch; images=None when no sample has any."""
    texts = [r.text for r in rendered]
    extra: dict[str, Any] = dict(kwargs)
    if any(r.suffix is not None for r in rendered):
        extra["suffix"] = [r.suffix or "" for r in rendered]
    elif all(starts_with_bos(processor, t) for t in texts):
        extra["add_special_tokens"] = False  # the template wrote BOS already
    if any(images):
        extra["images"] = images
    return processor(text=texts, return_tensors="pt", **extra)


def align(plain: list[int], expanded: list[int]) -> list[int]:
    """Position in ``expanded`` of each token of ``plain`` (expansion only inserts)."""
    positions, j = [], 0
    for token in plain:
        while j < len(expanded) and expanded[j] != token:
            j += 1
        if j == len(expanded):
            raise ValueError("processor output does not contain the rendered text in order")
        positions.append(j)
        j += 1
    return positions


def _labels_from_spans(processor: Any, rendered: Rendered, expanded: list[int],
                       image_token_ids: set[int]) -> Encoded:
    tok = processor.tokenizer
    plain = tok(rendered.text, add_special_tokens=not starts_with_bos(processor, rendered.text),
                return_offsets_mapping=True)
    positions = align(plain["input_ids"], expanded)
    labels = [IGNORE] * len(expanded)
    for (start, end) in rendered.spans:
        for k, (a, b) in enumerate(plain["offset_mapping"]):
            if start <= a < end and b > a:  # tokens that start inside the answer
                labels[positions[k]] = expanded[positions[k]]
    matched = set(positions)
    image_positions = [p for p, t in enumerate(expanded) if p not in matched or t in image_token_ids]
    min_keep = max(image_positions) + 2 if image_positions else 0
    return Encoded(list(expanded), labels, min(min_keep, len(expanded)))


def encode_sample(processor: Any, family: Family, sample: Sample, images: list[Any],
                  image_token_ids: set[int]) -> Encoded:
    """Token ids, labels (answer tokens only) and the shortest safe truncation length."""
    rendered = render(processor, family, sample)
    batch = call_processor(processor, [rendered], [images])
    expanded = batch["input_ids"][0].tolist()
    if "labels" in batch:  # the processor built labels itself (prompt + suffix families)
        labels = batch["labels"][0].tolist()
        image_positions = [p for p, t in enumerate(expanded) if t in image_token_ids]
        min_keep = max(image_positions) + 2 if image_positions else 0
        return Encoded(expanded, labels, min_keep)
    return _labels_from_spans(processor, rendered, expanded, image_token_ids)


def image_token_ids(processor: Any, config: Any) -> set[int]:
    """Ids of image placeholder / image soft tokens, from the processor and model config."""
    ids = set()
    for owner, attrs in ((processor, ("image_token_id", "video_token_id")),
                         (config, ("image_token_id", "image_token_index", "boi_token_id"))):
        for attr in attrs:
            value = getattr(owner, attr, None)
            if isinstance(value, int):
                ids.add(value)
    return ids
