"""Turn pydantic validation errors and YAML positions into one readable message.

Pydantic reports ``loc=('method', 'r'), type='greater_than_equal'``; users want
``method.r: must be >= 1, got 0`` with the YAML line, and a did-you-mean for typos.

Example:
    >>> yaml_line_index("name: x\\nmethod:\\n  r: 0\\n")["method.r"]
    3
"""

from __future__ import annotations

import difflib
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

_TEMPLATES = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "literal_error": "must be one of {expected}",
    "string_pattern_mismatch": "must match {pattern}",
    "missing": "is required",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "model_type": "must be a mapping (section)",
    "list_type": "must be a list",
}


def yaml_line_index(text: str) -> dict[str, int]:
    """Map each dotted key of a YAML mapping to its 1-based line number."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    index: dict[str, int] = {}

    def walk(node: Any, prefix: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            index[key] = key_node.start_mark.line + 1
            walk(value_node, key + ".")

    walk(root, "")
    return index


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the section that ``loc`` (minus its last part) points into."""
    current: Any = model
    for part in loc[:-1]:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = field.annotation
    return list(getattr(current, "model_fields", {}))


def explain_validation_error(err: ValidationError, model: type[BaseModel]) -> tuple[str, str]:
    """Return ``(dotted_field, message)`` for the first error of ``err``."""
    first = err.errors()[0]
    loc = tuple(str(p) for p in first["loc"] if not isinstance(p, int))
    field = ".".join(loc)
    kind, ctx = first["type"], first.get("ctx", {})
    got = first.get("input")
    if kind == "extra_forbidden":
        known = _known_keys(model, loc)
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return field, f"{field}: unknown key{hint} (known: {', '.join(known)})"
    if kind == "value_error":  # from our own validators: "field: message"
        text = str(ctx.get("error", first["msg"]))
        name, sep, rest = text.partition(": ")
        if sep and " " not in name:
            return name, text
        return field, f"{field}: {text}" if field else text
    template = _TEMPLATES.get(kind)
    what = template.format(**ctx) if template else first["msg"].lower()
    if kind == "missing":
        return field, f"{field}: {what}"
    return field, f"{field}: {what}, got {got!r}"
