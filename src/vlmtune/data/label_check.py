"""Checks that labels say what the answers say, after encoding.

Why: a label that misses the first answer token, or that covers prompt tokens, trains a
model that looks fine and is not; nothing downstream notices. So every encoded sample's
labelled tokens are decoded, one stretch per assistant answer, and compared with the
answer text the template renders (lead + answer + end-of-turn); whitespace is ignored
because tokenizers decode spaces differently (``▁green`` -> ``green``). Where the
template carries ``{% generation %}`` tags, transformers' assistant mask is computed too
and must agree with the spans.

Example:
    >>> check_labels(tok, enc.labels, rendered.turns, sample)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from vlmtune.data.chat_template import flatten, template_info
from vlmtune.data.schema import Sample
from vlmtune.errors import DataError

IGNORE = -100


def _squash(text: str) -> str:
    return "".join(text.split())


def labelled_runs(labels: list[int]) -> list[list[int]]:
    """Consecutive labelled ids, one list per stretch.

    Example:
        >>> labelled_runs([-100, 5, 6, -100, -100, 7])
        [[5, 6], [7]]
    """
    runs: list[list[int]] = []
    previous = IGNORE
    for label in labels:
        if label != IGNORE:
            if previous == IGNORE:
                runs.append([])
            runs[-1].append(label)
        previous = label
    return runs


def labelled_tokens(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """Indices of tokens whose characters overlap a span (a token straddling the start counts).

    Example:
        >>> labelled_tokens([(0, 10), (10, 11), (11, 17), (17, 22)], [(11, 22)])
        [2, 3]
        >>> labelled_tokens([(0, 10), (10, 16)], [(11, 16)])  # "Ġgreen" starts before the span
        [1]
    """
    return [k for k, (a, b) in enumerate(offsets)
            if b > a and any(a < end and b > start for start, end in spans)]


def check_labels(tokenizer: Any, labels: list[int], turns: list[Any], sample: Sample) -> None:
    """Raise DataError (naming the sample's file:line) unless each answer's labels decode to it."""
    runs = labelled_runs(labels)
    got = [tokenizer.decode(run, skip_special_tokens=False, clean_up_tokenization_spaces=False) for run in runs]
    want = [turn.expected for turn in turns]
    if len(got) != len(want):
        raise sample.error("messages", f"labels cover {len(got)} stretch(es) for {len(want)} answer(s): "
                                       f"labelled {got!r}, expected {want!r}")
    for k, (have, expected) in enumerate(zip(got, want), 1):
        if _squash(have) != _squash(expected):
            raise sample.error("messages", f"answer {k}: the labelled tokens decode to {have!r}, "
                                           f"expected {expected!r}")


def check_generation_mask(processor: Any, sample: Sample, rendered: Any) -> None:
    """transformers' assistant mask ({% generation %} blocks) must agree with the answer spans:
    every token the mask covers with non-whitespace text is labelled, and every labelled
    token of an answer's text is in the mask. (Masks omit the end-of-turn, spans add it.)"""
    from transformers.utils.chat_template_utils import render_jinja_template


    info, tok = template_info(processor), processor.tokenizer
    messages = flatten(sample.messages, info.image_text) if info.flatten else sample.messages
    kwargs = {**tok.special_tokens_map}
    text, blocks = render_jinja_template(conversations=[messages], chat_template=processor.chat_template,
                                         return_assistant_tokens_mask=True, **kwargs)
    if text[0] != rendered.text:
        return  # the tokenizer renders differently from the processor; the span labels stand
    out = tok.apply_chat_template(messages, chat_template=processor.chat_template, tokenize=True,
                                  return_dict=True, return_assistant_tokens_mask=True)
    offsets = out.encodings[0].offsets

    def substantive(k: int, spans: list[tuple[int, int]]) -> bool:  # covers non-whitespace of a span
        return any(text[0][max(a, offsets[k][0]):min(b, offsets[k][1])].strip() for a, b in spans)

    masked = {k for k, m in enumerate(out["assistant_masks"]) if m and substantive(k, blocks[0])}
    ours = set(labelled_tokens(offsets, rendered.spans))
    answers = {k for k in ours if substantive(k, [(t.start, t.stop) for t in rendered.turns])}
    if not masked <= ours or not answers <= masked:
        show = lambda ks: tok.decode([out["input_ids"][k] for k in sorted(ks)])  # noqa: E731
        raise DataError(f"the template's {{% generation %}} mask ({show(masked)!r}) disagrees with the "
                        f"answer spans ({show(ours)!r})", file=sample.file, line=sample.line, field="messages")
