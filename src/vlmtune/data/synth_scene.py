"""Scenes of the shapes world: sampling and drawing, with exact pixel boxes.

A scene is 1-3 non-overlapping flat-coloured shapes (circle, square, triangle) on a plain
background. Every answer the synthetic tasks need (colours, counts, positions, boxes) is a
fact of the :class:`Scene`, so questions can never disagree with the pixels.

Boxes are measured from the drawn pixels, not from the intended geometry: each shape is
rasterised into its own mask and ``mask.getbbox()`` gives ``(x1, y1, x2, y2)`` in the
torchvision convention (xyxy, integer pixels, x1/y1 inclusive, x2/y2 exclusive), so the
box is tight by construction. Drawing is not anti-aliased: every pixel of a shape has
exactly the shape's RGB colour, which lets tests check boxes pixel by pixel.

Example:
    >>> import random
    >>> scene = sample_scene(random.Random(0), 64)
    >>> image = render_scene(scene)
    >>> image.size, all(0 <= s.box[0] < s.box[2] <= 64 for s in scene.shapes)
    ((64, 64), True)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

KINDS = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 200, 20),
    "purple": (140, 50, 170),
    "orange": (245, 130, 20),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "gray": (200, 200, 200),
    "black": (20, 20, 20),
}
INK = {"black": (0, 0, 0), "dark blue": (20, 30, 120), "dark red": (120, 20, 20)}
WORDS = (
    "cat", "dog", "sun", "map", "box", "hat", "sky", "cup", "pen", "key",
    "tree", "fish", "bird", "milk", "book", "door", "lamp", "rain", "star", "ship",
    "apple", "house", "river", "chair", "train", "plant", "cloud", "bread", "stone", "music",
)
GAP = 2  # minimum free pixels between two shapes' drawing regions
# Side of the one shape of a `detail` image, in pixels at any image size (a patch is a
# fixed number of pixels, so the detail is too): below the smallest scene shape of a 64-px
# image (11-12 px), the smallest the embedded model was pretrained on, and spanning one to
# two of its 8-px patches. At 6-8 px (one patch) a circle and a square differ in a few
# corner pixels and no fine-tune learned them in the vision-bottleneck lesson's budget.
DETAIL_SIDE = (9, 11)


@dataclass(frozen=True)
class Shape:
    """One drawn shape; ``box`` is the tight pixel box (xyxy, right/bottom exclusive)."""

    kind: str
    colour: str
    box: tuple[int, int, int, int]
    region: tuple[int, int, int, int]  # square the shape was drawn into

    @property
    def name(self) -> str:
        """Noun phrase without article, e.g. ``"red circle"``."""
        return f"{self.colour} {self.kind}"


@dataclass(frozen=True)
class Scene:
    """A square image of ``size`` pixels: background colour name and shapes."""

    size: int
    background: str
    shapes: tuple[Shape, ...]

    def count(self, *, kind: str | None = None, colour: str | None = None) -> int:
        """Number of shapes matching ``kind`` and/or ``colour`` (None matches all)."""
        return sum((kind is None or s.kind == kind) and (colour is None or s.colour == colour)
                   for s in self.shapes)

    def unique(self) -> list[Shape]:
        """Shapes whose colour+kind appears once, so "the red circle" names exactly one."""
        return [s for s in self.shapes if self.count(kind=s.kind, colour=s.colour) == 1]


def _region(rng: random.Random, size: int) -> tuple[int, int, int, int]:
    side = rng.randint(max(8, round(size * 0.18)), max(9, round(size * 0.38)))
    x, y = rng.randint(0, size - side), rng.randint(0, size - side)
    return (x, y, x + side, y + side)


def _apart(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return (a[2] + GAP <= b[0] or b[2] + GAP <= a[0]
            or a[3] + GAP <= b[1] or b[3] + GAP <= a[1])


def _mask(kind: str, region: tuple[int, int, int, int], size: int) -> Image.Image:
    """Binary mask of one shape drawn inside ``region`` (right/bottom exclusive)."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    x1, y1, x2, y2 = region
    if kind == "circle":
        draw.ellipse([x1, y1, x2 - 1, y2 - 1], fill=255)
    elif kind == "square":
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=255)
    else:
        draw.polygon([(x1, y2 - 1), (x2 - 1, y2 - 1), ((x1 + x2 - 1) / 2, y1)], fill=255)
    return mask


def sample_scene(rng: random.Random, size: int) -> Scene:
    """Draw a random scene that has at least one uniquely identifiable shape.

    Shapes are placed by rejection sampling so their drawing regions keep ``GAP`` pixels
    apart (no occlusion: every box holds one colour). Identical duplicates are allowed,
    which makes counting questions non-trivial.

    Example:
        >>> len(sample_scene(random.Random(1), 96).shapes) in (1, 2, 3)
        True
    """
    while True:
        background = rng.choice(sorted(BACKGROUNDS))
        regions: list[tuple[int, int, int, int]] = []
        wanted = rng.randint(1, 3)
        for _ in range(200):
            if len(regions) == wanted:
                break
            region = _region(rng, size)
            if all(_apart(region, r) for r in regions):
                regions.append(region)
        shapes = []
        for region in regions:
            kind, colour = rng.choice(KINDS), rng.choice(sorted(COLOURS))
            box = _mask(kind, region, size).getbbox()
            shapes.append(Shape(kind, colour, tuple(box), region))
        scene = Scene(size, background, tuple(shapes))
        if scene.unique():
            return scene


def sample_detail(rng: random.Random, size: int, kinds: tuple[str, ...] = KINDS,
                  side_range: tuple[int, int] = DETAIL_SIDE) -> Scene:
    """A scene of one small shape (side in ``side_range`` pixels, inclusive) of one of ``kinds``.

    Example:
        >>> scene = sample_detail(random.Random(0), 64)
        >>> [9 <= s.region[2] - s.region[0] <= 11 for s in scene.shapes]
        [True]
    """
    lo, hi = side_range
    background = rng.choice(sorted(BACKGROUNDS))
    side = rng.randint(lo, hi)
    x, y = rng.randint(0, size - side), rng.randint(0, size - side)
    kind, colour = rng.choice(kinds), rng.choice(sorted(COLOURS))
    region = (x, y, x + side, y + side)
    box = _mask(kind, region, size).getbbox()
    return Scene(size, background, (Shape(kind, colour, tuple(box), region),))


def render_scene(scene: Scene) -> Image.Image:
    """RGB image of ``scene``; shape pixels are exactly ``COLOURS[shape.colour]``."""
    image = Image.new("RGB", (scene.size, scene.size), BACKGROUNDS[scene.background])
    for shape in scene.shapes:
        # Same mask the box was measured on, so box and pixels agree exactly.
        image.paste(COLOURS[shape.colour], (0, 0, scene.size, scene.size),
                    _mask(shape.kind, shape.region, scene.size))
    return image


def render_word(rng: random.Random, size: int) -> tuple[Image.Image, str]:
    """A short word in dark ink on a plain light background; returns (image, word).

    Uses Pillow's built-in bitmap font (6x11 px glyphs, no FreeType, identical output on
    every platform), upscaled by the largest integer factor that fits (nearest
    neighbour, so strokes stay crisp and legible at 64 px).

    Example:
        >>> image, word = render_word(random.Random(0), 64)
        >>> image.size, word.isalpha()
        ((64, 64), True)
    """
    word = rng.choice(WORDS)
    font = ImageFont.load_default_imagefont()
    left, top, right, bottom = font.getbbox(word)
    glyphs = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(glyphs).text((-left, -top), word, font=font, fill=255)
    scale = max(1, min(4, (size - 4) // glyphs.width, (size // 2) // glyphs.height))
    glyphs = glyphs.resize((glyphs.width * scale, glyphs.height * scale), Image.NEAREST)
    background = rng.choice(["white", "gray"])
    image = Image.new("RGB", (size, size), BACKGROUNDS[background])
    x = rng.randint(0, max(0, size - glyphs.width))
    y = rng.randint(0, max(0, size - glyphs.height))
    image.paste(INK[rng.choice(sorted(INK))], (x, y, x + glyphs.width, y + glyphs.height),
                glyphs)
    return image, word
