"""Qwen2-VL, Qwen2.5-VL, Qwen3-VL: vision tower ``model.visual`` with its patch merger
(the projector) inside it; Qwen3-VL adds DeepStack mergers that feed several LLM layers."""

from vlmtune.families.base import Family

_LANGUAGE = ("model.language_model", "lm_head")

QWEN2_VL = Family(
    "Qwen2-VL", ("qwen2_vl",),
    vision=("model.visual",), projector=("model.visual.merger",), language=_LANGUAGE,
    notes="3-D M-RoPE positions are computed inside the model from image_grid_thw.",
    packing="mrope", video=True,
)
QWEN2_5_VL = Family(
    "Qwen2.5-VL", ("qwen2_5_vl",),
    vision=("model.visual",), projector=("model.visual.merger",), language=_LANGUAGE,
    packing="mrope", video=True,
)
QWEN3_VL = Family(
    "Qwen3-VL", ("qwen3_vl",),
    vision=("model.visual",),
    projector=("model.visual.merger", "model.visual.deepstack_merger_list"),
    language=_LANGUAGE,
    vision_cache=False, vision_cache_why="DeepStack feeds image features into several decoder layers",
    packing="mrope", video=True,
)
FAMILIES = (QWEN2_VL, QWEN2_5_VL, QWEN3_VL)
