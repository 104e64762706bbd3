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


def get_family(model_type: str, *, source: str | None = None, config: Any = None) -> Family:
    """The hand-written family of ``model_type``, else one discovered from ``config``'s module tree.

    Architectures the classification (``architectures.json``) refuses fail here, at config
    time, with the one-line reason; so do unknown ones when no ``config`` is given.
    """
    if model_type in REGISTRY:
        return REGISTRY[model_type]
    verdict = classification().get(model_type)
    if verdict and verdict["status"] == "refused":
        raise InputError(f"model_type {model_type!r} is not supported: {verdict['reason']}",
                         file=source, field="model_type")
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    if config is None or model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        verified = set(SUPPORTED) | {mt for mt, v in classification().items() if v["status"] == "supported"}
        raise InputError(f"unsupported model_type {model_type!r}; vlmtune supports (docs/models.md): "
                         f"{', '.join(sorted(verified))}", file=source, field="model_type")
    if model_type not in _DISCOVERED:
        from vlmtune.families.discover import discover_family

        try:
            _DISCOVERED[model_type] = discover_family(config)
        except (ValueError, ImportError) as err:
            raise InputError(f"model_type {model_type!r}: cannot find its roles ({err})",
                             file=source, field="model_type") from None
    return _DISCOVERED[model_type]


_DISCOVERED: dict[str, Family] = {}


def classification() -> dict[str, dict]:
    """Per architecture: ``{"status": "supported"|"refused", "reason": ...}`` (architectures.json)."""
    import json
    from importlib import resources

    return json.loads(resources.files(__package__).joinpath("architectures.json").read_text())


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
