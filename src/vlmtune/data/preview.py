"""``vlmtune data preview``: what the model is trained on, sample by sample, labels shown.

Why: a label mask that is one token off trains a model that looks fine and is not, and
a rendered chat template is hard to read from code. The preview encodes samples exactly
as training does (same template, same labels, same checks) and shows the rendered text
with the labelled characters highlighted, the token counts (prompt, image, answer), and
what ``data.max_length`` would cut. Axolotl's and LLaMA-Factory's users debug masks this way.

Example:
    >>> row = preview_sample(processor, family, sample, image_ids, max_length=2048)  # doctest: +SKIP
    >>> row.to_json()["labelled_text"]  # doctest: +SKIP
    ' green'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vlmtune.data.dataset import skip_reason
from vlmtune.data.encode import (IGNORE, align, encode_sample, prompt_text, render, replaced_placeholders,
                                 starts_with_bos)
from vlmtune.data.label_check import labelled_runs
from vlmtune.data.schema import Sample
from vlmtune.families.base import Family


@dataclass
class SamplePreview:
    sample: Sample
    text: str  # the rendered conversation (image placeholders unexpanded)
    labelled: list[tuple[int, int]]  # character ranges of ``text`` whose tokens carry labels
    prompt: str  # the prompt served for the final answer
    labelled_text: str  # the labelled tokens decoded, one line per answer
    n_tokens: int
    n_image_tokens: int
    n_answer_tokens: int
    max_length: int
    cut_tokens: int  # tokens beyond max_length
    cut_answer_tokens: int  # labelled tokens among them
    skip: str | None  # why training would skip the sample, if it would

    @property
    def n_prompt_tokens(self) -> int:
        return self.n_tokens - self.n_image_tokens - self.n_answer_tokens

    def to_json(self) -> dict[str, Any]:
        return {"id": self.sample.id, "where": self.sample.where, "prompt_text": self.prompt,
                "labelled_text": self.labelled_text, "n_tokens": self.n_tokens,
                "n_prompt_tokens": self.n_prompt_tokens, "n_image_tokens": self.n_image_tokens,
                "n_answer_tokens": self.n_answer_tokens, "max_length": self.max_length,
                "truncation_cuts_tokens": self.cut_tokens, "truncation_cuts_answer_tokens": self.cut_answer_tokens,
                "skipped": self.skip}


def preview_sample(processor: Any, family: Family, sample: Sample, image_ids: set[int],
                   max_length: int) -> SamplePreview:
    """Encode ``sample`` as training does (raising as training would) and describe it."""
    tok = processor.tokenizer
    rendered = render(processor, family, sample)
    images = sample.load_images()
    enc = encode_sample(processor, family, sample, images, image_ids, rendered=rendered,
                        videos=sample.load_videos())
    text, ranges, matched = rendered.text, [], set()
    if rendered.suffix is not None:  # the processor appends the answer itself
        text = f"{text}\n{rendered.suffix}"
        ranges = [(len(rendered.text) + 1, len(text))] if rendered.suffix else []
    else:
        plain = tok(text, add_special_tokens=not starts_with_bos(processor, text), return_offsets_mapping=True)
        replaced = replaced_placeholders(processor, text, enc.input_ids)  # -1: a replaced video placeholder
        positions = align(plain["input_ids"], enc.input_ids, replaced)
        matched = set(positions) - {-1}
        ranges = [plain["offset_mapping"][k] for k, p in enumerate(positions) if p >= 0 and enc.labels[p] != IGNORE]
    n_image = sum(1 for p, t in enumerate(enc.input_ids)  # inserted by image expansion, or image ids
                  if t in image_ids or (matched and p not in matched))
    runs = [tok.decode(run, skip_special_tokens=False) for run in labelled_runs(enc.labels)]
    prompt = prompt_text(processor, family, sample.prompt_messages)
    return SamplePreview(sample, text, _merge(ranges), prompt, "\n".join(runs), len(enc.input_ids), n_image,
                         enc.n_answer_tokens, max_length, max(0, len(enc.input_ids) - max_length),
                         sum(label != IGNORE for label in enc.labels[max_length:]), skip_reason(enc, max_length))


def preview_split(cfg: Any, split: str, n: int, processor: Any, family: Family, image_ids: set[int]) -> Any:
    """Yield previews of the first ``n`` samples of ``split`` (train|val|test) of a run config."""
    from vlmtune.data.schema import load_samples
    from vlmtune.data.video import VideoSampling
    from vlmtune.errors import ConfigError

    files = {"train": ("data.train", cfg.data.train), "val": ("data.val", cfg.data.val),
             "test": ("eval.test", cfg.eval.test)}
    if split not in files:
        raise ConfigError(f"--split must be train, val or test, got {split!r}")
    key, path = files[split]
    if not path:
        raise ConfigError(f"{key} is not set: nothing to preview", field=key)
    samples = load_samples(path, root=cfg.data.root, allow_outside_root=cfg.data.allow_outside_root,
                           require_answer=split != "test", limit=n, video=VideoSampling.of(cfg.data),
                           **cfg.data.image_cap)
    for sample in samples:
        yield preview_sample(processor, family, sample, image_ids, cfg.data.max_length)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Adjacent or overlapping character ranges joined (one highlight per answer)."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(r for r in ranges if r[1] > r[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(b, out[-1][1]))
        else:
            out.append((a, b))
    return out


def render_preview(row: SamplePreview) -> Any:
    """A rich panel: the rendered text with the labelled part highlighted, counts, truncation."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    body = Text(row.text.rstrip("\n"))
    for a, b in row.labelled:
        body.stylize("bold black on green", a, min(b, len(body.plain)))
    counts = Text(f"{row.n_tokens} tokens: prompt {row.n_prompt_tokens}, image {row.n_image_tokens}, "
                  f"answer {row.n_answer_tokens} (labelled: highlighted)", style="dim")
    if row.skip:
        fit = Text(f"training skips it: {row.skip} (data.max_length={row.max_length})", style="red")
    elif row.cut_tokens:
        fit = Text(f"data.max_length={row.max_length} cuts the last {row.cut_tokens} tokens "
                   f"({row.cut_answer_tokens} of them labelled)", style="yellow")
    else:
        fit = Text(f"fits data.max_length={row.max_length}", style="dim")
    return Panel(Group(body, Text(""), counts, fit), title=f"{row.sample.id}  ({row.sample.where})",
                 title_align="left")
