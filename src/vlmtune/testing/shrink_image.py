"""Make an image processor produce images of the tiny model's side (by attribute name).

Why: image processors default to the real model's resolution (336-1024 px, anyres
grids, pixel budgets); a tiny build needs ``size`` px images so that its shrunk vision
tower (``size / patch`` patches a side) sees what its position table expects.

Example:
    >>> class P: size = {"height": 384, "width": 384}; crop_size = None
    >>> p = P(); shrink_image_processor(p, 64); p.size
    {'height': 64, 'width': 64}
"""

from __future__ import annotations

from typing import Any


def _size_dict(size: Any, side: int, pixel_budget: bool) -> Any:
    if hasattr(size, "__dataclass_fields__"):  # transformers' SizeDict
        plain = {k: v for k, v in vars(size).items() if v is not None}
        return type(size)(**_size_dict(plain, side, pixel_budget))
    if not isinstance(size, dict):
        return size
    out = {}
    for key, value in size.items():
        if key in ("height", "width", "max_height", "max_width"):
            out[key] = side
        elif key in ("shortest_edge", "longest_edge"):
            if pixel_budget:
                out[key] = (side // 2) ** 2 if key == "shortest_edge" else side * side
            else:
                out[key] = side
        else:
            out[key] = value
    return out


_ALIASES = {"merge_size": "spatial_merge_size"}


def match_config(proc: Any, find) -> None:
    """Attributes named like tiny-config fields (``patch_size``, ``merge_size``...) take their values."""
    for name, value in list(vars(proc).items()):
        if isinstance(value, int) and not isinstance(value, bool):
            new = find(name)
            if new is None and name in _ALIASES:
                new = find(_ALIASES[name])
            if isinstance(new, int) and not isinstance(new, bool):
                setattr(proc, name, new)


def shrink_image_processor(proc: Any, side: int) -> None:
    """Set every size-like attribute of ``proc`` (an image or video processor) to ``side`` px."""
    pixel_budget = hasattr(proc, "merge_size") or hasattr(proc, "min_pixels")
    for name in ("size", "crop_size", "max_image_size", "size_divisor"):
        value = getattr(proc, name, None)
        if isinstance(value, dict) or hasattr(value, "__dataclass_fields__"):
            setattr(proc, name, _size_dict(value, side, pixel_budget))
    if pixel_budget:
        for name, value in (("min_pixels", (side // 2) ** 2), ("max_pixels", side * side)):
            if getattr(proc, name, None) is not None:
                setattr(proc, name, value)
    grid = getattr(proc, "image_grid_pinpoints", None)
    if isinstance(grid, list) and grid:
        base = min(min(p) for p in grid)
        setattr(proc, "image_grid_pinpoints", [[h * side // base, w * side // base] for h, w in grid])
    if isinstance(getattr(proc, "max_soft_tokens", None), int):  # Gemma 4: image tokens after pooling
        proc.max_soft_tokens = min(proc.max_soft_tokens, 70)  # its smallest allowed
    for name in ("max_image_tiles", "max_num_patches", "max_patches", "max_crops", "max_dynamic_patch"):
        value = getattr(proc, name, None)
        if isinstance(value, int) and value > 4:
            setattr(proc, name, 4)
