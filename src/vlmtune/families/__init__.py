"""Registry of supported VLM families, keyed by ``config.model_type``.

Everything family-specific lives in the files of this package; the rest of vlmtune asks
``get_family(model_type)`` and never branches on a family name.

Example:
    >>> get_family("qwen2_vl").name
    'Qwen2-VL'
"""

from __future__ import annotations

from typing import Any

from vlmtune.errors import InputError
from vlmtune.families import gemma3, idefics3, internvl, llava, mllama, paligemma, qwen
from vlmtune.families.base import Family

_ALL: tuple[Family, ...] = (*qwen.FAMILIES, *llava.FAMILIES, *idefics3.FAMILIES, *paligemma.FAMILIES,
                            *internvl.FAMILIES, *gemma3.FAMILIES, *mllama.FAMILIES)
REGISTRY: dict[str, Family] = {mt: fam for fam in _ALL for mt in fam.model_types}
SUPPORTED = tuple(REGISTRY)


def get_family(model_type: str, *, source: str | None = None) -> Family:
    try:
        return REGISTRY[model_type]
    except KeyError:
        raise InputError(f"unsupported model_type {model_type!r}; vlmtune supports: "
                         f"{', '.join(sorted(SUPPORTED))}", file=source, field="model_type") from None


def check_video_support(samples: list[Any], family: Family, processor: Any) -> None:
    """Refuse, in one line naming the first video sample, a model that cannot take video."""
    first = next((s for s in samples if s.videos), None)
    if first is None:
        return
    if not family.video:
        able = ", ".join(sorted({f.name for f in _ALL if f.video}))
        raise first.error("videos", f"{family.name} takes no video input (video families: {able})")
    if getattr(processor, "video_processor", None) is None:
        raise first.error("videos", f"this {family.name} checkpoint's processor has no video processor "
                                    "(an image-only release): use a video-capable checkpoint")
