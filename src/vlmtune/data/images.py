"""Opening a dataset image without letting one file take the machine down.

Why: PIL refuses only images above ~179 M pixels (a "decompression bomb", raised as an
exception that is not an ``OSError``) and merely warns above ~89 M. A 12000 x 12000 photo
passes both, then costs ~3 GiB and several times the step time in the processor, which
shrinks it to a few hundred pixels anyway. vlmtune caps images at ``data.max_image_pixels``
(default 4096 x 4096, well below PIL's limits): a larger image is shrunk on load (aspect
kept; JPEGs decode directly at a reduced scale) or, with ``data.oversized_images: skip``,
the sample is skipped, or with ``error`` refused. Above PIL's own limit an image is never
decoded.

Example:
    >>> img, shrunk = open_image(Path("photo.jpg"), max_pixels=4096 * 4096)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

# Function-level imports: PIL loads only when an image is opened.

DEFAULT_MAX_PIXELS = 4096 * 4096
POLICIES = ("resize", "skip", "error")


class OversizedImage(ValueError):
    """An image above the pixel cap that the policy says not to resize."""


def open_image(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, policy: str = "resize") -> tuple[Any, bool]:
    """``(RGB image, shrunk?)``. Raises ``OversizedImage`` (policy skip/error, or above PIL's
    bomb limit), ``OSError``/``ValueError`` for unreadable files."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we apply our own, lower cap
        try:
            img = Image.open(path)
        except Image.DecompressionBombError:
            raise OversizedImage(f"image is a decompression bomb (more pixels than PIL's limit of "
                                 f"{2 * (Image.MAX_IMAGE_PIXELS or 0):,}); not decoded") from None
    with img:
        width, height = img.size
        if width * height <= max_pixels:
            return img.convert("RGB"), False
        if policy != "resize":
            raise OversizedImage(f"image is {width}x{height} = {width * height:,} pixels, above "
                                 f"data.max_image_pixels={max_pixels:,}")
        scale = math.sqrt(max_pixels / (width * height))
        target = (max(1, int(width * scale)), max(1, int(height * scale)))
        img.draft("RGB", target)  # JPEG: decode at 1/2, 1/4 or 1/8 scale directly
        return img.convert("RGB").resize(target, Image.Resampling.BICUBIC), True
