"""Box conventions of the common VLM families, and rewriting answers from one to another.

Why: the same box is written four ways and on four scales. A model fine-tuned on answers
in another family's convention first has to unlearn its own, and IoU between a 0-1000
prediction and a pixel gold box is meaningless. ``data convert --boxes FROM:TO`` rewrites
every box in the assistant turns (and ``answers``) into the target model's convention.

Scales (what the numbers mean, ``x1, y1, x2, y2`` corners):

- ``pixel``: pixels of the image file as stored;
- ``norm``: fractions 0-1 of width/height;
- ``1000``: 0-1000 of width/height, rounded (InternVL, Qwen2-VL, Qwen3-VL);
- ``resized``: pixels of the image as Qwen2.5-VL's processor resizes it (``smart_resize``
  with the published preprocessor config: factor 28, min_pixels 3136, max_pixels
  12845056). Qwen2.5-VL grounds in absolute coordinates *of the resized image*, so its
  boxes must be rescaled when the image is (ms-swift #3659 was this bug).

Text styles:

- ``plain``: ``[x1, y1, x2, y2]`` (also read: ``(x1, y1), (x2, y2)``);
- ``internvl``: ``<ref>label</ref><box>[[x1, y1, x2, y2]]</box>`` (several boxes
  ``[[..], [..]]`` for one label);
- ``qwen2-vl``: ``<|object_ref_start|>label<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>``;
- ``json``: ``{"bbox_2d": [x1, y1, x2, y2], "label": "label"}`` (Qwen2.5-VL, Qwen3-VL).

Named conventions (``--boxes`` takes these, or ``SCALE/STYLE``): ``pixel``, ``norm``,
``1000`` (plain style), ``internvl`` (1000/internvl), ``qwen2-vl`` (1000/qwen2-vl),
``qwen2.5-vl`` (resized/json), ``qwen3-vl`` (1000/json). vlmtune itself never resizes
an image on disk; the processor resizes inside the model's input pipeline.

Example:
    >>> rewrite("<ref>cat</ref><box>[[100, 250, 500, 750]]</box>", "internvl", "pixel", (200, 100))
    'cat [20, 25, 100, 75]'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from vlmtune.errors import ConfigError

SCALES = ("pixel", "norm", "1000", "resized")
STYLES = ("plain", "internvl", "qwen2-vl", "json")
NAMED = {"pixel": ("pixel", "plain"), "norm": ("norm", "plain"), "1000": ("1000", "plain"),
         "internvl": ("1000", "internvl"), "qwen2-vl": ("1000", "qwen2-vl"),
         "qwen2.5-vl": ("resized", "json"), "qwen3-vl": ("1000", "json")}
QWEN25_RESIZE = {"factor": 28, "min_pixels": 3136, "max_pixels": 12845056}

_N = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_FOUR = rf"\[\s*({_N})\s*,?\s*({_N})\s*,?\s*({_N})\s*,?\s*({_N})\s*\]"
_INTERNVL = re.compile(r"(?:<ref>(?P<label>.*?)</ref>\s*)?<box>\s*\[(?P<boxes>.*?)\]\s*</box>", re.S)
_QWEN2 = re.compile(rf"(?:<\|object_ref_start\|>(?P<label>.*?)<\|object_ref_end\|>\s*)?<\|box_start\|>"
                    rf"\s*\(\s*({_N})\s*,\s*({_N})\s*\)\s*,?\s*\(\s*({_N})\s*,\s*({_N})\s*\)\s*<\|box_end\|>", re.S)
_JSON = re.compile(rf"\{{[^{{}}]*\"bbox_2d\"\s*:\s*{_FOUR}[^{{}}]*\}}")
_PLAIN = re.compile(rf"{_FOUR}|\(\s*({_N})\s*,\s*({_N})\s*\)\s*,?\s*\(\s*({_N})\s*,\s*({_N})\s*\)")

Box = tuple[float, float, float, float]
# Function-level imports: transformers (Qwen2.5-VL's resize rule) and PIL (image sizes) only
# when a conversion needs pixels.


@dataclass
class Span:
    """One written box (or InternVL box list) in a text: where, its label, its numbers."""

    start: int
    end: int
    label: str | None
    boxes: list[Box]


def convention(name: str) -> tuple[str, str]:
    """``(scale, style)`` for a named convention or ``SCALE/STYLE``."""
    if name in NAMED:
        return NAMED[name]
    scale, _, style = name.partition("/")
    if scale in SCALES and style in STYLES:
        return scale, style
    raise ConfigError(f"unknown box convention {name!r}; expected one of {', '.join(NAMED)} "
                      f"or SCALE/STYLE with SCALE in {SCALES} and STYLE in {STYLES}", field="--boxes")


def _floats(groups) -> Box:
    return tuple(float(g) for g in groups if g is not None)[:4]  # type: ignore[return-value]


def find_boxes(text: str) -> list[Span]:
    """Every box written in ``text`` in any style, in order (tagged styles win over plain)."""
    spans: list[Span] = []
    for match in _INTERNVL.finditer(text):
        boxes = [_floats(m.groups()) for m in re.finditer(_FOUR, match["boxes"])]
        if boxes:
            spans.append(Span(match.start(), match.end(), match["label"], boxes))
    for match in _QWEN2.finditer(text):
        spans.append(Span(match.start(), match.end(), match["label"], [_floats(match.groups()[1:])]))
    for match in _JSON.finditer(text):
        try:
            label = json.loads(match.group(0)).get("label")
        except json.JSONDecodeError:
            label = None
        spans.append(Span(match.start(), match.end(), label if isinstance(label, str) else None,
                          [_floats(match.groups())]))
    covered = [(s.start, s.end) for s in spans]
    for match in _PLAIN.finditer(text):
        if not any(a <= match.start() < b for a, b in covered):
            spans.append(Span(match.start(), match.end(), None, [_floats(match.groups())]))
    return sorted(spans, key=lambda s: s.start)


def resized_size(size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) Qwen2.5-VL's processor resizes an image of ``size`` to."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    height, width = smart_resize(size[1], size[0], **QWEN25_RESIZE)
    return width, height


def _extent(scale: str, size: tuple[int, int] | None) -> tuple[float, float] | None:
    """Width and height of the coordinate frame of ``scale``."""
    if scale == "norm":
        return 1.0, 1.0
    if scale == "1000":
        return 1000.0, 1000.0
    if size is None:
        return None
    return tuple(map(float, resized_size(size) if scale == "resized" else size))  # type: ignore[return-value]


def needs_size(src: str, dst: str) -> bool:
    """Whether converting between the two conventions needs the image's size."""
    a, b = convention(src)[0], convention(dst)[0]
    return a != b and ("pixel" in (a, b) or "resized" in (a, b))


def convert_box(box: Box, src_scale: str, dst_scale: str, size: tuple[int, int] | None) -> Box:
    """Rescale one box between frames; ``size`` is the image's (width, height) in pixels."""
    a, b = _extent(src_scale, size), _extent(dst_scale, size)
    if a is None or b is None:
        raise ValueError("the image size is needed for pixel coordinates")
    sx, sy = b[0] / a[0], b[1] / a[1]
    return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


def _number(v: float, scale: str) -> str:
    return f"{v:.3f}".rstrip("0").rstrip(".") if scale == "norm" else str(int(round(v)))


def format_span(label: str | None, boxes: list[Box], scale: str, style: str) -> str:
    """The text of ``boxes`` (one label) in a style; numbers rounded for the scale."""
    nums = [[_number(v, scale) for v in box] for box in boxes]
    if style == "internvl":
        ref = f"<ref>{label}</ref>" if label else ""
        return ref + "<box>[" + ", ".join(f"[{', '.join(n)}]" for n in nums) + "]</box>"
    if style == "qwen2-vl":
        ref = f"<|object_ref_start|>{label}<|object_ref_end|>" if label else ""
        return "".join(f"{ref}<|box_start|>({n[0]},{n[1]}),({n[2]},{n[3]})<|box_end|>" for n in nums)
    if style == "json":
        items = [json.dumps({"bbox_2d": [json.loads(x) for x in n], **({"label": label} if label else {})})
                 for n in nums]
        return items[0] if len(items) == 1 else "[" + ", ".join(items) + "]"
    text = ", ".join(f"[{', '.join(n)}]" for n in nums)
    return f"{label} {text}" if label else text


def rewrite(text: str, src: str, dst: str, size: tuple[int, int] | None) -> str:
    """Every box in ``text`` from convention ``src`` to ``dst`` (see module doc)."""
    (src_scale, _), (dst_scale, dst_style) = convention(src), convention(dst)
    out, pos = [], 0
    for span in find_boxes(text):
        boxes = [convert_box(b, src_scale, dst_scale, size) for b in span.boxes]
        out += [text[pos:span.start], format_span(span.label, boxes, dst_scale, dst_style)]
        pos = span.end
    return "".join(out) + text[pos:]


def rewrite_sample(sample: dict, src: str, dst: str, image_file) -> dict:
    """Rewrite the boxes of a canonical sample's assistant turns and ``answers``.

    ``image_file(rel)`` gives the file of an image path of the sample (only opened, for its
    size, when the conversion involves pixels). Raises ValueError with the reason when the
    size is needed but the sample has no image or several.
    """
    size = None
    if needs_size(src, dst):
        images = sample.get("images") or []
        if len(images) != 1:
            raise ValueError(f"pixel boxes need exactly one image to scale against, the sample has "
                             f"{len(images)}")
        from PIL import Image

        with Image.open(image_file(images[0])) as img:
            size = img.size
    for message in sample["messages"]:
        if message["role"] != "assistant":
            continue
        for item in message["content"]:
            if item["type"] == "text":
                item["text"] = rewrite(item["text"], src, dst, size)
    sample["answers"] = [rewrite(a, src, dst, size) for a in sample.get("answers", [])]
    return sample
