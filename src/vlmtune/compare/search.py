"""``--search key=values``: the space a sweep draws its trials from.

Why: the questions a sweep answers ("does my task need a high rank?", "which learning rate
for this method?") are about one or two config keys, so a search names them the way an
override does, with a set or a range instead of one value:

* ``method.r=1,2,4,8,16,64``: every value is tried (a grid axis);
* ``train.lr=log:1e-5..1e-3``: drawn log-uniformly for each trial; ``train.lr=1e-4..3e-4``
  draws uniformly.

``--samples N`` draws N trials per point of the grid axes (default 1). Every key is
checked against the run config before anything runs, so a typo fails in one line.

Example:
    >>> parse_search("train.lr=log:1e-5..1e-3")
    Axis(key='train.lr', values=None, low=1e-05, high=0.001, log=True)
    >>> parse_search("method.r=1,2,4").values
    [1, 2, 4]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from vlmtune.config import RunConfig, apply_overrides
from vlmtune.errors import ConfigError


@dataclass(frozen=True)
class Axis:
    key: str
    values: list[Any] | None = None  # a grid axis, or a range below
    low: float | None = None
    high: float | None = None
    log: bool = False

    def tune_domain(self, tune: Any) -> Any:
        """This axis as a Ray Tune search domain."""
        if self.values is not None:
            return tune.grid_search(self.values)
        return (tune.loguniform if self.log else tune.uniform)(self.low, self.high)

    def probe(self) -> Any:
        """A value of the axis, to validate the key and the value's type against the config."""
        return self.values[0] if self.values is not None else self.low


def parse_search(text: str) -> Axis:
    """``key=v1,v2,...`` | ``key=log:LOW..HIGH`` | ``key=LOW..HIGH``."""
    where = f"--search {text}"
    key, sep, spec = text.partition("=")
    key, spec = key.strip(), spec.strip()
    if not sep or not key or not spec:
        raise ConfigError("expected key=v1,v2,... or key=log:LOW..HIGH", file=where)
    log = spec.startswith("log:")
    body = spec[4:] if log else spec
    if ".." in body:
        low, _, high = body.partition("..")
        try:
            lo, hi = float(low), float(high)
        except ValueError:
            raise ConfigError(f"{key}: a range needs two numbers, got {body!r}", file=where) from None
        if not lo < hi or (log and lo <= 0):
            raise ConfigError(f"{key}: need {'0 < ' if log else ''}LOW < HIGH, got {lo:g}..{hi:g}", file=where)
        return Axis(key, low=lo, high=hi, log=log)
    if log:
        raise ConfigError(f"{key}: log: takes a range LOW..HIGH, got {body!r}", file=where)
    values = [yaml.safe_load(v.strip()) for v in body.split(",") if v.strip()]
    if not values or len(set(map(repr, values))) != len(values):
        raise ConfigError(f"{key}: need distinct values, got {body!r}", file=where)
    return Axis(key, values=values)


def check_axes(cfg: RunConfig, axes: list[Axis]) -> None:
    """Each key exists and takes its values (one line naming the ``--search`` on failure)."""
    keys = [a.key for a in axes]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"the same key is searched twice: {', '.join(keys)}", file="--search")
    for axis in axes:
        for value in axis.values if axis.values is not None else [axis.low, axis.high]:
            try:
                apply_overrides(cfg, [f"{axis.key}={_literal(value)}"], source=f"--search {axis.key}")
            except ConfigError as err:
                raise ConfigError(err.message, file=f"--search {axis.key}={_literal(value)}") from None


def trial_overrides(params: dict[str, Any]) -> list[str]:
    """A trial's drawn values as ``key=value`` overrides (flat dotted keys)."""
    return [f"{key}={_literal(value)}" for key, value in params.items()]


def trial_name(params: dict[str, Any], number: int) -> str:
    """A run dir name that says what the trial tried, e.g. ``t003-r8-lr0.00032``."""
    parts = [f"t{number:03d}"]
    for key, value in params.items():
        short = key.rsplit(".", 1)[-1]
        shown = f"{value:.2g}" if isinstance(value, float) else str(value)
        parts.append(f"{short}{shown}".replace("/", "_").replace(" ", ""))
    return "-".join(parts)


def _literal(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)
