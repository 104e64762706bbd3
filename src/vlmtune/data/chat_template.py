"""Probe a chat template once: which content it takes, where answers sit, what prompt serves.

Why: released templates disagree on almost everything labels depend on (see
``tests/data/chat-templates``). Some take ``content`` only as a string (Phi-3-vision,
Llama-2, Vicuna, Mistral); several have no ``add_generation_prompt`` branch; in
``ASSISTANT:``-style templates the answer's first token carries the space before it
(``Ġgreen``/``▁green``); Qwen3.5's generation prompt (``<think>\\n``) is not the text
training renders before an answer; Llama-Guard wraps the whole conversation in one
classifier prompt. So nothing here trusts the generation prompt to mark where an answer
starts. Answers are found by rendering the conversation with each answer replaced by a
sentinel word (the template's own text around it stays), and the prompt a model is served
is the text training renders before the answer, cut where the answer's first token starts.

The *lead* is the whitespace between that prompt and the answer that the tokenizer joins
to the answer (``" "`` in ``ASSISTANT: green``); training labels it with the answer, so
the served prompt (without it) is token for token the training prefix.

Example:
    >>> info = template_info(processor)                      # doctest: +SKIP
    >>> info.lead, info.note  # doctest: +SKIP
    (' ', "generation prompt ends 'ASSISTANT: ' but training joins ' ' to the answer ...")
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ANSWER = "Vlmtuneanswer{}z"  # letters and digits only: survives trim/strip/capitalize of roles
_PROBE_QUESTION = "What color is the square?"
_PROBE_ANSWER = "yes"
# First words of typical answers: whether their first token takes the space before them.
_PROBE_WORDS = ("yes", "green", "The", "A", "a", "[", "1", "(", "{")
_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


class TemplateRefused(ValueError):
    """The chat template cannot give correct labels or prompts; ``str()`` is one line why."""


@dataclass(frozen=True)
class TemplateInfo:
    flatten: bool  # the template takes string content: turns are flattened with ``image_text``
    image_text: str  # the processor's image placeholder
    lead: str  # whitespace before an answer that the answer's first token absorbs
    generation_tags: bool  # the template marks answers with {% generation %}
    note: str | None  # how the served prompt differs from add_generation_prompt (said once)
    end_of_turn: str = ""  # text closing an answer (``<|im_end|>``); "" when the template has none


@dataclass(frozen=True)
class Turn:
    """One assistant answer in the rendered text: labels cover ``[cut, end)``."""

    cut: int  # where the served prompt ends (answer start minus the lead)
    start: int  # first character of the answer text
    stop: int  # one past the answer text
    end: int  # one past the end-of-turn text that follows it (e.g. ``<|im_end|>``)
    expected: str  # lead + answer + end-of-turn, what the labels must decode to


def _text_of(message: dict) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(c["text"] for c in content if c.get("type") == "text")


def flatten(messages: list[dict], image_text: str) -> list[dict]:
    """String content for templates that take no list: images become ``image_text`` lines."""
    out = []
    for message in messages:
        content = message["content"]
        if not isinstance(content, str):
            pieces = [image_text if c["type"] == "image" else c["text"] for c in content]
            content = "\n".join(p for p in pieces if p)
        out.append({**message, "content": content})
    return out


def apply(processor: Any, messages: list[dict], *, generation_prompt: bool = False,
          info: TemplateInfo | None = None) -> str:
    """The template's text for ``messages`` (flattened first when the template wants strings)."""
    if info is not None and info.flatten:
        messages = flatten(messages, info.image_text)
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def with_answers(messages: list[dict], answers: list[str]) -> list[dict]:
    """``messages`` with the k-th assistant turn's content replaced by ``answers[k]``."""
    out, k = [], 0
    for message in messages:
        if message["role"] == "assistant":
            message = {**message, "content": [{"type": "text", "text": answers[k]}]}
            k += 1
        out.append(message)
    return out


def _ask(messages: list[dict], answer: str) -> list[dict]:
    """``messages`` followed by an assistant turn answering ``answer``."""
    return [*messages, {"role": "assistant", "content": [{"type": "text", "text": answer}]}]


def _one_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _content_style(processor: Any, image_text: str) -> bool:
    """True when the template needs string content (it fails on, or ignores, a list of parts)."""
    probe = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": _PROBE_QUESTION}]},
             {"role": "assistant", "content": [{"type": "text", "text": ANSWER.format(0)}]}]
    try:
        text = apply(processor, probe)
        if _PROBE_QUESTION in text and ANSWER.format(0) in text and "'type'" not in text:
            return False
    except Exception as err:  # noqa: BLE001 - any template failure means: try string content
        first = err
    else:
        first = ValueError("it renders a list of content parts as text")
    try:
        text = apply(processor, flatten(probe, image_text))
    except Exception as err:  # noqa: BLE001
        raise TemplateRefused(f"the chat template renders neither list nor string content "
                              f"({_one_line(first)}; {_one_line(err)})") from None
    if _PROBE_QUESTION not in text or ANSWER.format(0) not in text:
        raise TemplateRefused("the chat template does not render the messages' content")
    return True


def locate(processor: Any, messages: list[dict], info: TemplateInfo | None,
           lead: str = "") -> tuple[str, list[Turn]]:
    """The rendered conversation and where each assistant answer sits in it.

    Raises TemplateRefused when the template does not render the answers verbatim and in
    order, closes a turn differently when more turns follow, or renders the conversation
    before an answer differently from the conversation with it (a template that wraps the
    whole conversation, or one whose history differs from the prompt).
    """
    text = apply(processor, messages, info=info)
    answers = [_text_of(m) for m in messages if m["role"] == "assistant"]
    sentinels = [ANSWER.format(k) for k in range(len(answers))]
    marked = with_answers(messages, sentinels)
    probe = apply(processor, marked, info=info)
    where = [probe.find(s) for s in sentinels]
    if any(probe.count(s) != 1 for s in sentinels) or where != sorted(where):
        raise TemplateRefused("the chat template does not render each assistant answer once, in order")
    answers = _as_rendered(text, probe, sentinels, answers)
    turns, shift, k = [], 0, 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = apply(processor, marked[:i], info=info)
        if not probe[:where[k]].startswith(before):
            raise TemplateRefused("the chat template renders the conversation before an answer differently "
                                  "from the conversation with it (it wraps the whole conversation, like a "
                                  "classifier prompt); there is no prompt the answer continues")
        upto = apply(processor, marked[: i + 1], info=info)
        after = upto.find(sentinels[k]) + len(sentinels[k])
        eot = upto[after:].rstrip()
        tail = where[k] + len(sentinels[k])
        if not probe[tail:].startswith(eot):
            raise TemplateRefused("the chat template closes an assistant turn differently when more turns follow")
        start = where[k] + shift
        stop = start + len(answers[k])
        if text[start - len(lead):start] != lead:
            raise TemplateRefused(f"the chat template puts different text before answer {k + 1} "
                                  f"(expected {lead!r})")
        turns.append(Turn(start - len(lead), start, stop, stop + len(eot), lead + answers[k] + eot))
        shift += len(answers[k]) - len(sentinels[k])
        k += 1
    return text, turns


def _as_rendered(text: str, probe: str, sentinels: list[str], answers: list[str]) -> list[str]:
    """The answers as the template writes them (verbatim, or stripped by ``trim``/``strip()``)."""
    for variant in (answers, [a.strip() for a in answers]):
        rebuilt = probe
        for sentinel, answer in zip(sentinels, variant):
            rebuilt = rebuilt.replace(sentinel, answer, 1)
        if rebuilt == text:
            return variant
    raise TemplateRefused("the chat template changes the answer text (beyond trimming whitespace); "
                          "labels cannot be matched to it")


def _lead(processor: Any, info: TemplateInfo, messages: list[dict]) -> str:
    """Whitespace before the answer that the tokenizer joins to the answer's first token.

    Probed with several first words, since a vocabulary may glue the space to one word
    (``Ġgreen``) and not another (``Ġ`` ``yes``); if any glues it, the lead is labelled
    for every answer, so the prompt ends at the same token whatever the answer.
    """
    probe = apply(processor, _ask(messages, ANSWER.format(0)), info=info)
    before = probe[: probe.find(ANSWER.format(0))]
    first = len(before)
    for word in _PROBE_WORDS:
        plain = processor.tokenizer(before + word, add_special_tokens=False, return_offsets_mapping=True)
        first = min(first, next(a for a, b in plain["offset_mapping"] if b > len(before)))
    lead = before[first:]
    if lead.strip():
        raise TemplateRefused(f"the text before an answer ({lead!r}) merges with the answer's first token; "
                              "the prompt cannot end on a token boundary")
    return lead


_CACHE: dict[tuple[int, str], TemplateInfo] = {}


def template_info(processor: Any) -> TemplateInfo:
    """What the processor's chat template needs (cached per processor and template text).

    Raises TemplateRefused (one line) for a template that cannot give correct labels.
    """
    template = getattr(processor, "chat_template", None)
    if not template:
        raise TemplateRefused("the processor has no chat template (set model.chat_template)")
    key = (id(processor), template)
    if key in _CACHE:
        return _CACHE[key]
    image_text = getattr(processor, "image_token", None) or "<image>"
    flat = _content_style(processor, image_text)
    base = TemplateInfo(flat, image_text, "", bool(_GENERATION_TAG.search(template)), None)
    user = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": _PROBE_QUESTION}]}]
    image = apply(processor, user, info=base)
    if image_text not in image:
        raise TemplateRefused(f"the chat template writes no {image_text!r} for an image, so images would "
                              "not reach the model")
    lead = _lead(processor, base, user)
    _, (turn,) = locate(processor, _ask(user, _PROBE_ANSWER), base, lead)
    info = TemplateInfo(flat, image_text, lead, base.generation_tags, _note(processor, base, user, lead),
                        turn.expected[len(lead) + len(_PROBE_ANSWER):])
    _CACHE[key] = info
    return info


def served_prompt(processor: Any, messages: list[dict], info: TemplateInfo) -> str:
    """The prompt for ``messages`` (ending with a user turn): the text training renders before
    an answer, without the lead. Equal to the generation prompt for most templates."""
    probe = apply(processor, _ask(messages, ANSWER.format(0)), info=info)
    before = probe[: probe.find(ANSWER.format(0))]
    return before[: len(before) - len(info.lead)]


def _note(processor: Any, info: TemplateInfo, user: list[dict], lead: str) -> str | None:
    """One line on how the served prompt differs from the template's generation prompt."""
    served = served_prompt(processor, user, TemplateInfo(info.flatten, info.image_text, lead, False, None))
    generation = apply(processor, user, generation_prompt=True, info=info)
    if generation == served:
        return None
    plain = apply(processor, user, info=info)
    if generation == served + lead:
        why = f"the tokenizer joins {lead!r} to the answer's first token"
    elif generation == plain:
        why = "the template has no add_generation_prompt branch"
    else:
        why = "the template renders different text before an answer"
    common = max(0, len(_common_prefix(generation, served)) - 12)
    return (f"the generation prompt ends {generation[common:]!r}, training has {served[common:]!r} before "
            f"the answer ({why}); prompts use the training text")


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]
