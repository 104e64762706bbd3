"""Render a sample through the family's chat template and label assistant tokens only.

Why it is done this way: the processor expands each image placeholder into many image
tokens (a count that depends on the family and the image size), so character offsets in
the rendered text do not map to token positions. We therefore

1. render the conversation and find each assistant answer's *character* span
   (:mod:`vlmtune.data.chat_template`: answers replaced by sentinels, so no generation
   prompt is trusted), from the end of the served prompt to the end of the template's
   end-of-turn text (``<|im_end|>``, ``</s>``...);
2. tokenize the rendered text plainly (placeholders unexpanded) with offsets and label
   every token whose characters *overlap* a span, so a token that straddles the answer's
   start (``Ġgreen`` after ``ASSISTANT:``) is labelled;
3. let the processor expand images, and align plain tokens to expanded tokens in order:
   expansion only *inserts* special tokens, so a greedy in-order walk maps every plain
   token. The inserted positions are the image region, which truncation must not cut;
4. decode the labelled tokens of each answer and compare them with the answer text
   (:mod:`vlmtune.data.label_check`); a mismatch is an error, never a silent skip.

A family whose processor builds labels itself (PaliGemma's prompt + ``suffix``) returns
``labels`` from the processor; those are used as they are.

Example:
    >>> enc = encode_sample(processor, family, sample, sample.load_images(), ids)  # doctest: +SKIP
    >>> len(enc.input_ids) == len(enc.labels)  # doctest: +SKIP
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vlmtune.data.chat_template import Turn, apply, locate, served_prompt, template_info
from vlmtune.data.schema import Sample
from vlmtune.families.base import Family
from vlmtune.data.label_check import check_generation_mask, check_labels, labelled_tokens

IGNORE = -100


@dataclass
class Rendered:
    """What goes into the processor for one sample: ``text`` (and ``suffix`` for
    families that take the answer separately), plus each answer's place in ``text``."""

    text: str
    turns: list[Turn] = field(default_factory=list)
    suffix: str | None = None

    @property
    def spans(self) -> list[tuple[int, int]]:
        """Labelled character ranges: served-prompt end to end-of-turn, per answer."""
        return [(t.cut, t.end) for t in self.turns]


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    min_keep: int  # truncating to fewer tokens would cut into an image

    @property
    def n_answer_tokens(self) -> int:
        return sum(label != IGNORE for label in self.labels)


def chat(processor: Any, messages: list[dict], *, generation_prompt: bool) -> str:
    """The processor's template applied to ``messages`` as the template wants them."""
    return apply(processor, messages, generation_prompt=generation_prompt, info=template_info(processor))


def render_chat(processor: Any, messages: list[dict]) -> Rendered:
    """Full conversation text and where every assistant answer (plus end-of-turn) sits.

    The span ends after the turn's closing text (e.g. ``<|im_end|>``) so the model learns
    to stop, minus whitespace the template adds between turns; it starts where the served
    prompt ends (:func:`prompt_text`), so the tokens before the first label are the prompt.
    """
    info = template_info(processor)
    text, turns = locate(processor, messages, info, info.lead)
    answers = [m for m in messages if m["role"] == "assistant"]
    # "train": false (a converted per-turn `loss: false`) = context only: rendered, not labelled
    return Rendered(text, [t for t, m in zip(turns, answers) if m.get("train") is not False])


def render(processor: Any, family: Family, sample: Sample) -> Rendered:
    if family.encode is not None:
        return family.encode(processor, sample)
    return render_chat(processor, sample.messages)


def prompt_text(processor: Any, family: Family, messages: list[dict]) -> str:
    """The prompt for ``messages`` (which end with a user turn): the text training renders
    before an answer, token for token (see :func:`vlmtune.data.chat_template.served_prompt`)."""
    if family.prompt is not None:
        return family.prompt(processor, messages)
    return served_prompt(processor, messages, template_info(processor))


def prompt_ids(processor: Any, family: Family, messages: list[dict], images: list[Any],
               videos: list[Any] | None = None) -> list[int]:
    """Token ids of the prompt for ``messages`` as generation feeds them (one row, no padding)."""
    rendered = Rendered(prompt_text(processor, family, messages))
    return call_processor(processor, [rendered], [images], [videos or []])["input_ids"][0].tolist()


def starts_with_bos(processor: Any, text: str) -> bool:
    bos = getattr(processor.tokenizer, "bos_token", None)
    return bool(bos) and text.startswith(bos)


def call_processor(processor: Any, rendered: list[Rendered], images: list[list[Any]],
                   videos: list[list[Any]] | None = None, **kwargs) -> Any:
    """One processor call for a batch; images=None when no sample has any. ``videos``: each
    sample's :class:`~vlmtune.data.video.Clip` list, already sampled (the processor must not
    sample again; it gets the clips' metadata for timestamps)."""
    texts = [r.text for r in rendered]
    extra: dict[str, Any] = dict(kwargs)
    if any(r.suffix is not None for r in rendered):
        extra["suffix"] = [r.suffix or "" for r in rendered]
    elif all(starts_with_bos(processor, t) for t in texts):
        extra["add_special_tokens"] = False  # the template wrote BOS already
    if any(images):
        extra["images"] = images
    clips = [clip for sample_clips in videos or [] for clip in sample_clips]
    if clips:
        from transformers.video_utils import VideoMetadata

        extra.update(videos=[c.frames for c in clips], do_sample_frames=False,
                     video_metadata=[VideoMetadata(**c.metadata) for c in clips])
    return processor(text=texts, return_tensors="pt", **extra)


def align(plain: list[int], expanded: list[int], replaced: frozenset[int] = frozenset()) -> list[int]:
    """Position in ``expanded`` of each token of ``plain`` (expansion only inserts), or -1
    for a ``replaced`` placeholder (InternVL swaps ``<video>`` for per-frame image blocks)."""
    positions, j = [], 0
    for token in plain:
        if token in replaced:
            positions.append(-1)
            continue
        while j < len(expanded) and expanded[j] != token:
            j += 1
        if j == len(expanded):
            raise ValueError("processor output does not contain the rendered text in order")
        positions.append(j)
        j += 1
    return positions


def replaced_placeholders(processor: Any, text: str, expanded: list[int]) -> frozenset[int]:
    """Special-token ids the processor replaced rather than repeated, so absent from its output
    (InternVL's ``<video>`` becomes ``Frame1: <img>...</img>`` blocks, Aya Vision's and Ovis2's
    ``<image>`` becomes their own image tokens): :func:`align` steps over them."""
    return frozenset(set(processor.tokenizer.all_special_ids) - set(expanded))


def _labels_from_spans(processor: Any, rendered: Rendered, expanded: list[int],
                       image_token_ids: set[int]) -> Encoded:
    tok = processor.tokenizer
    plain = tok(rendered.text, add_special_tokens=not starts_with_bos(processor, rendered.text),
                return_offsets_mapping=True)
    positions = align(plain["input_ids"], expanded, replaced_placeholders(processor, rendered.text, expanded))
    labels = [IGNORE] * len(expanded)
    for k in labelled_tokens(plain["offset_mapping"], rendered.spans):
        if positions[k] >= 0:  # -1: a replaced video placeholder, never part of an answer
            labels[positions[k]] = expanded[positions[k]]
    matched = set(positions) - {-1}
    image_positions = [p for p, t in enumerate(expanded) if p not in matched or t in image_token_ids]
    min_keep = max(image_positions) + 2 if image_positions else 0
    return Encoded(list(expanded), labels, min(min_keep, len(expanded)))


def encode_sample(processor: Any, family: Family, sample: Sample, images: list[Any],
                  image_token_ids: set[int], rendered: Rendered | None = None,
                  videos: list[Any] | None = None) -> Encoded:
    """Token ids, labels (answer tokens only, checked against the answers) and the shortest
    safe truncation length. A label that does not decode to its answer raises DataError.
    ``videos``: the sample's clips (:meth:`Sample.load_videos`)."""
    rendered = rendered or render(processor, family, sample)
    batch = call_processor(processor, [rendered], [images], [videos or []])
    expanded = batch["input_ids"][0].tolist()
    if "labels" in batch:  # the processor built labels itself (prompt + suffix families)
        labels = batch["labels"][0].tolist()
        image_positions = [p for p, t in enumerate(expanded) if t in image_token_ids]
        min_keep = max(image_positions) + 2 if image_positions else 0
        return Encoded(expanded, labels, min_keep)
    encoded = _labels_from_spans(processor, rendered, expanded, image_token_ids)
    check_labels(processor.tokenizer, encoded.labels, rendered.turns, sample)
    if template_info(processor).generation_tags:
        check_generation_mask(processor, sample, rendered)
    return encoded


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
