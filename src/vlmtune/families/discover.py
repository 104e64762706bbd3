"""Roles found from the model's own module tree, for architectures without a family file.

Why: transformers 5 names the parts of a chat VLM consistently (``model.visual`` /
``vision_tower`` / ``vision_model``; ``multi_modal_projector`` / ``connector`` /
``visual.merger``; ``language_model`` / ``text_model``; ``lm_head``), so the roles of a
new architecture can be read off a parameter-free (meta-device) build of its config
instead of being written by hand. Hand-written files in this package remain for real
quirks only. Speed features that must be exact (vision cache, packing, the shared-prefix
prefill of batched eval) stay off for a discovered family, with the reason, until a test
verifies them: the prefill, for one, crashes on linear-attention caches (Qwen3.5) and
changes Ovis2.5's greedy answers.

Example:
    >>> fam = discover_family(AutoConfig.for_model("aya_vision"))    # doctest: +SKIP
    >>> fam.vision, fam.projector
    (('model.vision_tower',), ('model.multi_modal_projector',))
"""

from __future__ import annotations

from typing import Any

from vlmtune.families.base import DECODER_LINEARS, Family

VISION = ("visual", "vision_tower", "vision_model", "vision_encoder", "vpm", "visual_tokenizer",
          "vision", "image_encoder", "vision_backbone", "vit", "image_tower", "video_tower", "audio_tower")
PROJECTOR = ("multi_modal_projector", "connector", "merger", "mm_projector", "projector", "resampler",
             "visual_projection", "vision_projection", "embed_vision", "aligner", "mlp1", "vision_adapter",
             "deepstack_merger_list", "image_newline", "adapter", "vision_language_adapter", "embed_audio",
             "visual_embedding", "vte")
LANGUAGE = ("language_model", "text_model", "llm", "lm_head")
NOT_VERIFIED = "not verified for this architecture (found by discovery, no test of this feature yet)"


def meta_model(config: Any):
    """The model of ``config`` built on the meta device: its module tree, no memory, no weights."""
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        return AutoModelForImageTextToText.from_config(config)


def _outermost(names: list[str]) -> list[str]:
    """Drop names nested inside another name of the list."""
    keep = []
    for name in sorted(names, key=len):
        if not any(name.startswith(k + ".") for k in keep):
            keep.append(name)
    return keep


def find_roles(model: Any) -> dict[str, tuple[str, ...]]:
    """``{"vision": ..., "projector": ..., "language": ...}`` module prefixes of ``model``.

    Parameters left without a role (a learned row separator hanging off ``model``) count
    as projector: they live between the towers and only matter for images.
    """
    def named(leaves: tuple[str, ...], inside: list[str] | None = None) -> list[str]:
        found = [n for n, _ in model.named_modules() if n and n.split(".")[-1] in leaves]
        found += [n for n, _ in model.named_parameters() if n.split(".")[-1] in leaves]
        if inside is not None:
            found = [n for n in found if not any(n.startswith(p + ".") for p in inside)]
        return _outermost(found)

    language = named(LANGUAGE)
    vision = named(VISION, inside=language)
    projector = [n for n in named(PROJECTOR, inside=language)
                 if not any(n == v for v in vision)]
    roles = {"vision": tuple(vision), "projector": tuple(projector), "language": tuple(language)}
    probe = Family("probe", (), **roles)
    loose = [n for n, _ in model.named_parameters() if probe.role_of(n) is None]
    roles["projector"] = tuple(dict.fromkeys([*projector, *loose]))
    return roles


def language_targets(model: Any, family: Family) -> tuple[str, ...]:
    """Default LoRA leaves: the decoder's attention/MLP linears (experts' fused weights are not
    ``nn.Linear`` and stay frozen by default), or every linear leaf when the names differ."""
    from torch import nn

    leaves = {n.split(".")[-1] for n, m in model.named_modules()
              if isinstance(m, nn.Linear) and family.role_of(n) == "language" and not n.endswith("lm_head")}
    common = tuple(t for t in DECODER_LINEARS if t in leaves)
    return common or tuple(sorted(leaves))


def discover_family(config: Any) -> Family:
    """A :class:`Family` for ``config.model_type`` from its module tree; ValueError if a role is missing."""
    model = meta_model(config)
    roles = find_roles(model)
    missing = [r for r in ("vision", "language") if not roles[r]]
    if missing:
        raise ValueError(f"no {' or '.join(missing)} module found in {type(model).__name__}")
    probe = Family(config.model_type, (config.model_type,), **roles)
    return Family(type(model).__name__.removesuffix("ForConditionalGeneration"), (config.model_type,),
                  **roles, lora_targets=language_targets(model, probe), vision_cache=False,
                  vision_cache_why=NOT_VERIFIED, packing=None, packing_why=NOT_VERIFIED,
                  prefix_share=False, prefix_share_why=NOT_VERIFIED,
                  notes="roles discovered from the module tree")
