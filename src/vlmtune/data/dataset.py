"""Training examples: samples encoded once up front, with the ones that cannot train skipped.

The pre-pass runs the processor on every sample once to learn its token length, its answer
tokens and where its image tokens end. A sample is skipped (and counted, with its
``file:line``) when ``max_length`` would cut inside its image tokens or remove its whole
answer; one whose answer is only partly cut trains on the part that fits, as in
LLaMA-Factory. Pixel values are not kept: the collator re-processes images per batch.

Example:
    >>> data = EncodedDataset(samples, processor, family, image_ids, max_length=512)  # doctest: +SKIP
    >>> data.skipped
    Counter({'image tokens cut by max_length': 1})
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from vlmtune.data.encode import IGNORE, Encoded, Rendered, encode_sample, render
from vlmtune.data.schema import ImageTooLarge, Sample
from vlmtune.errors import DataError
from vlmtune.families.base import Family


@dataclass
class Example:
    sample: Sample
    rendered: Rendered
    encoded: Encoded

    @property
    def length(self) -> int:
        return len(self.encoded.input_ids)


def skip_reason(enc: Encoded, max_length: int) -> str | None:
    """Why ``enc`` cannot train at ``max_length`` (None if it can)."""
    answer = [i for i, label in enumerate(enc.labels) if label != IGNORE]
    if not answer:
        return "no answer tokens after rendering"
    if len(enc.input_ids) <= max_length:
        return None
    if enc.min_keep > max_length:
        return "image tokens cut by max_length"
    if answer[0] + 1 >= max_length:  # labels shift by one: the first answer token needs a predecessor
        return "whole answer cut by max_length"
    return None


class EncodedDataset:
    """Examples that fit, in file order; ``skipped`` counts the rest by reason."""

    def __init__(self, samples: list[Sample], processor: Any, family: Family, image_ids: set[int],
                 max_length: int, on_progress: Callable[[int], None] | None = None):
        self.examples: list[Example] = []
        self.skipped: Counter[str] = Counter()
        self.skipped_where: list[str] = []
        self.images_shrunk = 0  # images above data.max_image_pixels, shrunk on load
        self.max_length = max_length
        for sample in samples:
            try:
                example = self._encode(sample, processor, family, image_ids)
            except ImageTooLarge as err:
                if sample.oversized != "skip":
                    raise
                example, reason = None, "image over data.max_image_pixels"
                self.skipped_where.append(f"{sample.where} ({err.message})")
            else:
                self.images_shrunk += sample.shrunk
                reason = skip_reason(example.encoded, max_length)
                if reason:
                    self.skipped_where.append(f"{sample.where} ({reason})")
            if reason:
                self.skipped[reason] += 1
            else:
                self.examples.append(example)
            if on_progress:
                on_progress(1)

    @staticmethod
    def _encode(sample: Sample, processor: Any, family: Family, image_ids: set[int]) -> Example:
        from jinja2 import TemplateError

        images, videos = sample.load_images(), sample.load_videos()
        try:
            rendered = render(processor, family, sample)
            encoded = encode_sample(processor, family, sample, images, image_ids, rendered=rendered,
                                    videos=videos)
        except (ValueError, TypeError, KeyError, IndexError, TemplateError) as err:
            raise DataError(f"the processor cannot encode this sample: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}", file=sample.file,
                            line=sample.line, field="messages") from None
        return Example(sample, rendered, encoded)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Example:
        return self.examples[index]

    @property
    def total_tokens(self) -> int:
        return sum(min(e.length, self.max_length) for e in self.examples)
