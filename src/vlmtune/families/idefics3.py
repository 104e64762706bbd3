"""Idefics3 and SmolVLM: SigLIP ``vision_model``, pixel-shuffle ``connector``, and the
decoder at ``model.text_model`` (not ``language_model``)."""

from vlmtune.families.base import Family

_ROLES = dict(vision=("model.vision_model",), projector=("model.connector",),
              language=("model.text_model", "lm_head"), packing="1d")

IDEFICS3 = Family("Idefics3", ("idefics3",), **_ROLES)
SMOLVLM = Family("SmolVLM", ("smolvlm",), **_ROLES)
FAMILIES = (IDEFICS3, SMOLVLM)
