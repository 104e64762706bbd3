"""Exact parameter counts and layer shapes of a VLM from its ``config.json`` alone.

Why: a memory plan must work before any weight is downloaded. Instantiating the model on
PyTorch's ``meta`` device builds every module with shapes but no storage (milliseconds,
no RAM), so counts are exact per role (vision / projector / language, from the family
registry) instead of guessed from a formula that misses biases, merger MLPs or tied heads.

Example:
    >>> shapes = model_shapes("/work/shared/model-configs/Qwen-Qwen2-VL-7B-Instruct.json")  # doctest: +SKIP
    >>> round(shapes.total / 1e9, 2)                                                       # doctest: +SKIP
    8.29
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlmtune.errors import InputError
from vlmtune.families.base import DECODER_LINEARS

# Function-level imports: transformers and the model loader load only when shapes are read (CLI
# start-up).


@dataclass
class ModelShapes:
    """What the memory plan needs. ``quantizable``: language Linear weights a QLoRA base
    stores in 4/8 bit (vision, projector and the LM head stay unquantised, see
    ``vlmtune.model.load``); ``lora_targets``: (in, out) of each default LoRA target."""

    model_type: str
    by_role: dict[str, int]
    total: int
    quantizable: int
    quantizable_rows: int  # output rows of quantised layers (8-bit keeps one fp32 scale per row)
    lora_targets: list[tuple[int, int]]
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    vision: dict[str, int] = field(default_factory=dict)
    hidden_norms: int = 2  # norms over the hidden size per decoder layer (Gemma's sandwich: 4)
    head_norms: bool = False  # per-head RMSNorm on queries and keys (Gemma 3, Qwen3)
    sliding_window: int = 0  # window of the sliding-attention layers (0: none)
    sliding_layers: int = 0  # how many decoder layers use it
    always_masked: bool = False  # builds a 4-D attention mask on every training forward (see below)
    layer_linears: list[tuple[str, int, int]] = field(default_factory=list)  # (name, in, out), one decoder layer
    embed_params: int = 0  # input embedding (a ``modules_to_save`` candidate)
    head_params: int = 0  # untied LM head (0 if tied to the embedding)
    exact: bool = True  # counted on the meta device; False: from config fields (config_fields)
    mlp_gated: bool = True  # decoder MLP down(act(gate) * up); False: fc2(act(fc1)) (phi, GPT-NeoX...)
    mlp_act: str = "silu"  # the config's activation (transformers' ACT2FN name)
    vision_gated: bool = False  # the vision tower's MLP (Qwen2.5-VL's is gated)
    vision_act: str = "gelu"


# Families whose training forward always builds a 4-D mask from ``token_type_ids``, so SDPA
# gets a mask even for one unpadded sample (transformers 5: Gemma 3's
# ``create_masks_for_vision_model`` lets each image's tokens attend to each other;
# PaliGemma's ``block_sequence_ids`` make the prompt prefix bidirectional). Both pass
# ``block_sequence_ids`` to ``create_causal_mask``, which then never skips the mask.
ALWAYS_MASKED = frozenset({"gemma3", "paligemma"})


def load_config_any(path: str, trust_remote_code: bool = False) -> Any:
    """AutoConfig from a model dir, a ``config.json`` file, a zoo name or a hub id (cache)."""
    from transformers import AutoConfig

    from vlmtune.model.load import resolve_model_path

    resolved = resolve_model_path(path)
    try:
        return AutoConfig.from_pretrained(resolved, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read a model config: {str(err).splitlines()[0]}", file=path,
                         field="--model") from None


def config_file(path: str) -> Path:
    """The ``config.json`` behind a file, a directory, a zoo name or a hub id already in the
    local Hugging Face cache (no download)."""
    from vlmtune.model.load import resolve_model_path

    local = Path(resolve_model_path(str(path)))
    if local.is_file():
        return local
    if local.is_dir():
        if (local / "config.json").is_file():
            return local / "config.json"
        raise InputError("not a model directory (no config.json)", file=local, field="--model")
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(str(path), "config.json")
    except ValueError:  # not a valid repo id
        cached = None
    if isinstance(cached, str):
        return Path(cached)
    raise InputError("no such file, directory or cached hub model (vlmtune plan reads config.json only, "
                     "it downloads nothing)", file=str(path), field="--model")


def read_config_json(path: str) -> dict[str, Any]:
    file = config_file(path)
    try:
        raw = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read config.json: {err}", file=file, field="--model") from None
    if not isinstance(raw, dict):
        raise InputError("config.json is not a JSON object", file=file, field="--model")
    return raw


def model_shapes(path: str | Path, trust_remote_code: bool = False) -> ModelShapes:
    """Exact counts on the meta device when transformers knows the architecture (VLM or
    text LM); otherwise (remote code, unknown ``model_type``) sizes from the config's
    fields (``vlmtune.families.config_fields``). No model code from the hub ever runs."""
    raw = read_config_json(str(path))
    if "auto_map" not in raw or trust_remote_code:
        try:
            return _exact_shapes(str(path), trust_remote_code)
        except (InputError, ValueError, KeyError, TypeError, AttributeError, ImportError):
            pass  # an architecture transformers cannot build here: fall back to the fields
    from vlmtune.families.config_fields import dims_from_fields

    shapes = ModelShapes(**dims_from_fields(raw, str(path)), exact=False)
    shapes.always_masked = shapes.model_type in ALWAYS_MASKED
    return shapes


class _TextOnly:
    """Role map of a plain decoder LM: every parameter is the language model's."""

    lora_targets = DECODER_LINEARS

    @staticmethod
    def role_of(name: str) -> str:
        return "language"


def _exact_shapes(path: str, trust_remote_code: bool) -> ModelShapes:
    """Count parameters on the meta device and read the decoder / vision dimensions."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    from vlmtune.families import REGISTRY
    from vlmtune.model.methods import lora_target_names

    config = load_config_any(path, trust_remote_code)
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    from vlmtune.families import get_family

    vlm = config.model_type in REGISTRY or config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    builder = AutoModelForImageTextToText if vlm else AutoModelForCausalLM
    family = get_family(config.model_type, source=str(path), config=config) if vlm else _TextOnly()
    with torch.device("meta"):
        model = builder.from_config(config, trust_remote_code=trust_remote_code)
    by_role = {"vision": 0, "projector": 0, "language": 0}
    for name, param in model.named_parameters():  # named_parameters dedupes tied weights
        by_role[family.role_of(name) or "language"] += param.numel()
    quantizable = rows = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and family.role_of(name) == "language" and not name.endswith("lm_head"):
            quantizable += module.weight.numel()
            rows += module.out_features
    modules = dict(model.named_modules())
    targets = [(modules[n].in_features, modules[n].out_features)
               for n in lora_target_names(model, family, ["language"], None)]
    dims = text_dims(config)
    return ModelShapes(model_type=config.model_type, by_role=by_role, total=sum(by_role.values()),
                       quantizable=quantizable, quantizable_rows=rows, lora_targets=targets,
                       **dims, vision=vision_dims(config), **_layer_norms(model, family, dims),
                       **_sliding(config, dims["layers"]), always_masked=config.model_type in ALWAYS_MASKED,
                       **_embeddings(model, family), **_mlp_kinds(model, family, config, dims))


def _embeddings(model: nn.Module, family: Any) -> dict[str, Any]:
    """Linears of the first decoder layer (names relative to it) and the embedding / head sizes."""
    linears = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and ".layers.0." in name and family.role_of(name) in (None, "language"):
            linears.append((name.split(".layers.0.", 1)[1], module.in_features, module.out_features))
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is None or head.weight is embed
    return {"layer_linears": linears, "embed_params": embed.numel(),
            "head_params": 0 if tied else head.weight.numel()}


_FIRST_BLOCK = re.compile(r"\.(blocks|layers|layer)\.0\.")


def _gated(model: nn.Module, family: Any, role: str, width: int, inter: int, fallback: bool) -> bool:
    """Whether the first block's MLP is gated: its Linears from the model width to the MLP
    width (attention excluded) add up to two MLP widths (gate and up, or a fused gate_up)
    rather than one (``fc1``). ``fallback`` when none is an ``nn.Linear`` (GPT-2's Conv1D,
    experts stored as one tensor)."""
    widths = [m.out_features for name, m in model.named_modules()
              if isinstance(m, nn.Linear) and _FIRST_BLOCK.search(name) and "att" not in name.lower()
              and (family.role_of(name) or "language") == role and m.in_features == width
              and m.out_features in (inter, 2 * inter)]
    return sum(widths) == 2 * inter if widths else fallback


def _mlp_kinds(model: nn.Module, family: Any, config: Any, dims: dict[str, int]) -> dict[str, Any]:
    """Gating and activation of the decoder's and the vision tower's MLPs (``mlp_tensors``
    in the plan: what autograd keeps depends on both)."""
    from vlmtune.families.config_fields import NON_GATED, activation

    text = config.get_text_config()
    kinds = {"mlp_gated": _gated(model, family, "language", dims["hidden"], dims["intermediate"],
                                 text.model_type not in NON_GATED),
             "mlp_act": activation(text.to_dict(), "silu")}
    vision = getattr(config, "vision_config", None)
    v = vision_dims(config)
    if vision is not None and v.get("width"):
        kinds.update(vision_gated=_gated(model, family, "vision", v["width"], v["intermediate"], False),
                     vision_act=activation(vision.to_dict(), "gelu"))
    return kinds


def _sliding(config: Any, layers: int) -> dict[str, int]:
    """Sliding-window attention layers (``layer_types``; older configs: ``use_sliding_window``).
    transformers builds their mask whenever the sequence reaches the window
    (``masking_utils._ignore_causal_mask_sdpa``), even for one unpadded sample."""
    text = config.get_text_config()
    window = int(getattr(text, "sliding_window", None) or 0)
    types = getattr(text, "layer_types", None)
    if types:
        count = sum(t == "sliding_attention" for t in types)
    else:
        count = layers if getattr(text, "use_sliding_window", False) else 0
    return {"sliding_window": window if count else 0, "sliding_layers": count if window else 0}


def _layer_norms(model: nn.Module, family: Any, dims: dict[str, int]) -> dict[str, Any]:
    """Norm modules inside the first decoder layer: how many normalise the hidden size,
    and whether queries and keys get their own per-head norm."""
    hidden = head = 0
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if ".layers.0." not in name + "." or family.role_of(name) not in (None, "language") or weight is None \
                or "norm" not in type(module).__name__.lower():
            continue
        hidden += weight.numel() == dims["hidden"]
        head += weight.numel() == dims["head_dim"] != dims["hidden"]
    return {"hidden_norms": hidden or 2, "head_norms": head > 0}


def active_intermediate(text: Any) -> int:
    """MLP width a token passes through: a dense model's ``intermediate_size``; in a
    mixture of experts, the routed experts' widths times top-k plus the shared expert's
    (FLOPs follow the active experts; weights count all of them, from the module tree)."""
    experts = next((getattr(text, k) for k in ("num_experts", "num_local_experts", "n_routed_experts")
                    if isinstance(getattr(text, k, None), int)), 0)
    expert_width = getattr(text, "moe_intermediate_size", None)
    if not experts or not expert_width:
        return text.intermediate_size
    top_k = getattr(text, "num_experts_per_tok", None) or 1
    shared = getattr(text, "shared_expert_intermediate_size", None) or 0
    shared += (getattr(text, "n_shared_experts", None) or 0) * expert_width
    return expert_width * top_k + shared


def text_dims(config: Any) -> dict[str, int]:
    text = config.get_text_config()
    heads = text.num_attention_heads
    return {"hidden": text.hidden_size, "intermediate": active_intermediate(text),
            "layers": text.num_hidden_layers, "heads": heads,
            "kv_heads": getattr(text, "num_key_value_heads", None) or heads,
            "head_dim": getattr(text, "head_dim", None) or text.hidden_size // heads,
            "vocab": text.vocab_size}


def vision_dims(config: Any) -> dict[str, int]:
    """Width, MLP width and depth of the vision encoder (config field names differ per
    family: ``embed_dim``/``hidden_size``, ``depth``/``num_hidden_layers``...)."""
    vision = getattr(config, "vision_config", None)
    if vision is None:
        return {}
    width = getattr(vision, "embed_dim", None) or getattr(vision, "hidden_size", 0)
    inter = getattr(vision, "intermediate_size", None) or int(width * getattr(vision, "mlp_ratio", 4))
    depth = getattr(vision, "depth", None) or getattr(vision, "num_hidden_layers", 0)
    patch = _side(getattr(vision, "patch_size", 14))
    merge = getattr(vision, "spatial_merge_size", None) or 1
    return {"width": int(width), "intermediate": int(inter), "layers": int(depth), "patch": patch,
            "merge": int(merge), "image_size": _side(getattr(vision, "image_size", 0) or 0),
            "tokens_per_image": int(getattr(config, "mm_tokens_per_image", 0) or 0)}


def _side(value: Any) -> int:
    """A square side from an int or an (h, w) pair (InternVL's ``patch_size: [14, 14]``)."""
    return int(value[0] if isinstance(value, (list, tuple)) else value)
