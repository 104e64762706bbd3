"""A grid file: one shared base config and the variants to compare, each a full RunConfig.

Why: comparing options (untuned, k-shot, LoRA at several ranks, QLoRA, full) is only fair
when everything but the option is the same, so a grid states the shared part once
(``base``) and each variant only what differs. A variant is the deep merge of ``base``
with its own keys, validated as a :class:`~vlmtune.config.RunConfig`; errors name the grid
file, the line when known, and the variant, e.g.
``grid.yaml:14: variants[2] (lora-r16): method.r: must be >= 1, got 0``.

Format::

    name: shapes-grid          # grid dir = out_dir/name; variant run dir = out_dir/name/<variant>
    out_dir: runs              # default "runs"; relative paths resolve against the cwd
    base: {model: ..., data: ..., eval: ..., train: ...}   # a RunConfig without name
    variants:
      - {name: baseline, train: false}                  # untuned: evaluation only
      - {name: 3-shot, train: false, eval: {shots: 3}}  # in-context examples, no training
      - {name: lora-r16, method: {kind: lora, r: 16}}
      - {name: full, method: {kind: full}, train: {lr: 1.0e-4}}

    ray: {address: null, cpus_per_variant: 1, gpus_per_variant: null, max_retries: 3}  # optional
    lesson: format-drift       # optional: the report opens with this lesson's finding (report/lessons.py)

``train: false`` marks an evaluation-only variant; ``train: {...}`` is the usual training
section (merged into ``base.train``). ``train.out_dir`` is set by the grid. ``ray`` is read
only by ``vlmtune compare --ray`` (see :mod:`vlmtune.compare.ray_grid`): the cluster address
(none: a local Ray starts with the command), what each variant's task asks for
(``gpus_per_variant`` null: 1 when the cluster has GPUs, else 0) and how often a variant
whose worker died is retried.

Example:
    >>> grid = load_grid("grid.yaml")  # doctest: +SKIP
    >>> [(v.name, v.trains, str(v.run_dir)) for v in grid.variants][:1]  # doctest: +SKIP
    [('baseline', False, 'runs/shapes-grid/baseline')]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vlmtune.config import RunConfig, _merge, build_config, read_yaml
from vlmtune.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_GRID_KEYS = ("name", "out_dir", "base", "variants", "ray", "lesson")
_RAY_KEYS = ("address", "cpus_per_variant", "gpus_per_variant", "max_retries")


@dataclass(frozen=True)
class Variant:
    """One option of the grid: its resolved config and whether it trains before evaluation."""

    index: int
    name: str
    cfg: RunConfig
    trains: bool

    @property
    def run_dir(self) -> Path:
        return self.cfg.run_dir


@dataclass(frozen=True)
class RaySpec:
    """How a grid runs on Ray: where, and what each variant's task asks the scheduler for."""

    address: str | None = None
    cpus_per_variant: float = 1.0
    gpus_per_variant: float | None = None
    max_retries: int = 3


@dataclass(frozen=True)
class Grid:
    name: str
    out_dir: Path
    variants: list[Variant]
    source: Path
    raw: dict[str, Any]
    ray: RaySpec = RaySpec()
    lesson: str | None = None

    @property
    def dir(self) -> Path:
        return self.out_dir / self.name


def load_grid(path: str | Path) -> Grid:
    """Read, merge and validate every variant of a grid file; the first problem raises."""
    path = Path(path)
    data, lines = read_yaml(path)
    unknown = [k for k in data if k not in _GRID_KEYS]
    if unknown:
        raise ConfigError(f"unknown key (known: {', '.join(_GRID_KEYS)})", file=path,
                          line=lines.get(unknown[0]), field=unknown[0])
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"must be a name matching {_NAME.pattern}, got {name!r}", file=path,
                          line=lines.get("name"), field="name")
    out_dir = Path(str(data.get("out_dir", "runs")))
    base = data.get("base") or {}
    if not isinstance(base, dict):
        raise ConfigError("must be a mapping (a RunConfig without name)", file=path,
                          line=lines.get("base"), field="base")
    if "name" in base:
        raise ConfigError("set by the grid: each variant's name names its run", file=path,
                          line=lines.get("base.name"), field="base.name")
    raw_variants = data.get("variants")
    if not isinstance(raw_variants, list) or not raw_variants:
        raise ConfigError("must be a non-empty list of variants", file=path,
                          line=lines.get("variants"), field="variants")
    variant_lines = _sequence_lines(path.read_text(), "variants")
    variants, seen = [], set()
    for i, raw in enumerate(raw_variants):
        where = variant_lines[i] if i < len(variant_lines) else {}
        variant = _variant(i, raw, base, out_dir / name, path, lines, where)
        if variant.name in seen:
            raise _variant_error(path, i, variant.name, "name", "duplicate variant name", where)
        seen.add(variant.name)
        variants.append(variant)
    return Grid(name=name, out_dir=out_dir, variants=variants, source=path, raw=data,
                ray=_ray_spec(data.get("ray"), path, lines), lesson=_lesson(data.get("lesson"), path, lines))


def _lesson(raw: Any, path: Path, lines: dict[str, int]) -> str | None:
    """A lesson grid names the finding its report states (vlmtune.report.lessons)."""
    from vlmtune.report.lessons import FINDINGS

    if raw is None or raw in FINDINGS:
        return raw
    raise ConfigError(f"unknown lesson {raw!r} (known: {', '.join(FINDINGS)})", file=path,
                      line=lines.get("lesson"), field="lesson")


def _ray_spec(raw: Any, path: Path, lines: dict[str, int]) -> RaySpec:
    if raw is None:
        return RaySpec()
    if not isinstance(raw, dict):
        raise ConfigError(f"must be a mapping with keys {', '.join(_RAY_KEYS)}", file=path,
                          line=lines.get("ray"), field="ray")
    for key, value in raw.items():
        field, line = f"ray.{key}", lines.get(f"ray.{key}")
        if key not in _RAY_KEYS:
            raise ConfigError(f"unknown key (known: {', '.join(_RAY_KEYS)})", file=path, line=line, field=field)
        if key == "address" and value is not None and not isinstance(value, str):
            raise ConfigError(f"must be an address such as 10.0.0.1:6379, got {value!r}", file=path,
                              line=line, field=field)
        numeric = key != "address" and not (key == "gpus_per_variant" and value is None)
        if numeric and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
                        or (key == "max_retries" and not isinstance(value, int))):
            kind = "a whole number" if key == "max_retries" else "a number"
            raise ConfigError(f"must be {kind} >= 0, got {value!r}", file=path, line=line, field=field)
    return RaySpec(**raw)


def _variant(i: int, raw: Any, base: dict[str, Any], grid_dir: Path, path: Path,
             base_lines: dict[str, int], where: dict[str, int]) -> Variant:
    if not isinstance(raw, dict):
        raise ConfigError(f"variants[{i}]: must be a mapping with at least a name", file=path)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _variant_error(path, i, name, "name", f"must be a name matching {_NAME.pattern}, "
                                                      f"got {name!r}", where)
    own = {k: v for k, v in raw.items() if k != "name"}
    trains = True
    if isinstance(own.get("train"), bool):
        trains = own.pop("train")
    if "out_dir" in (own.get("train") or {}):
        raise _variant_error(path, i, name, "train.out_dir", "set by the grid (out_dir/name)", where)
    merged = _merge(base, own)
    merged = _merge(merged, {"name": name, "train": {"out_dir": str(grid_dir)}})
    try:
        cfg = build_config(merged, source=path)
    except ConfigError as err:
        field = err.field or ""
        message = err.message[len(field) + 2:] if field and err.message.startswith(f"{field}: ") \
            else err.message
        line = (where.get(field) or base_lines.get(f"base.{field}")) if field else None
        raise _variant_error(path, i, name, field, message, where, line=line) from None
    return Variant(index=i, name=name, cfg=cfg, trains=trains)


def _variant_error(path: Path, i: int, name: Any, field: str, message: str,
                   where: dict[str, int], *, line: int | None = None) -> ConfigError:
    label = f"variants[{i}] ({name})" if isinstance(name, str) else f"variants[{i}]"
    text = f"{label}: {field}: {message}" if field else f"{label}: {message}"
    return ConfigError(text, file=path, line=line if line is not None else where.get(field))


def _sequence_lines(text: str, key: str) -> list[dict[str, int]]:
    """For each mapping in the top-level list ``key``: its dotted keys -> 1-based line."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return []
    if not isinstance(root, yaml.MappingNode):
        return []
    seq = next((v for k, v in root.value if k.value == key), None)
    if not isinstance(seq, yaml.SequenceNode):
        return []
    out = []
    for item in seq.value:
        index: dict[str, int] = {"": item.start_mark.line + 1}
        _walk(item, "", index)
        out.append(index)
    return out


def _walk(node: Any, prefix: str, index: dict[str, int]) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        key = f"{prefix}{key_node.value}"
        index[key] = key_node.start_mark.line + 1
        _walk(value_node, key + ".", index)
