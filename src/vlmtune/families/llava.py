"""LLaVA-1.5, LLaVA-NeXT, LLaVA-OneVision: CLIP/SigLIP ``vision_tower`` + MLP
``multi_modal_projector``; NeXT/OneVision add a learned ``image_newline`` row separator,
which we count as projector (it lives in embedding space and only matters for images)."""

from vlmtune.families.base import Family

_ROLES = dict(vision=("model.vision_tower",),
              projector=("model.multi_modal_projector",),
              language=("model.language_model", "lm_head"), packing="1d")

LLAVA = Family("LLaVA-1.5", ("llava",), **_ROLES)
LLAVA_NEXT = Family("LLaVA-NeXT", ("llava_next",), **{**_ROLES, "projector": (
    "model.multi_modal_projector", "model.image_newline")})
LLAVA_ONEVISION = Family("LLaVA-OneVision", ("llava_onevision",), **{**_ROLES, "projector": (
    "model.multi_modal_projector", "model.image_newline")}, video=True)
FAMILIES = (LLAVA, LLAVA_NEXT, LLAVA_ONEVISION)
