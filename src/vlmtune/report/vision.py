"""The report's vision-tower section: what the tower costs per variant, and whether training it pays.

Why: "is the vision encoder the bottleneck?" (docs/design.md) has a quality side and a cost
side. Quality: a variant that trains the vision tower (LoRA on it, or fully) against a
*matched* frozen-vision variant, one whose config is identical once the vision settings
are removed (so LoRA r=16 + full vision is compared with LoRA r=16 alone, never with a
full fine-tune). Cost: ``resources.json``'s ``vision_share`` (share of step time and of
saved activations, written by training) and, when present, the run's ``vision_probe.json``
(``vlmtune diagnose vision``: the score change from swapping the base vision side back in).

Example:
    >>> vision_mode({"method": {"kind": "lora", "lora_on": ["language", "vision"]}}, trains=True)
    'LoRA'
"""

from __future__ import annotations

import json
from typing import Any

from vlmtune.config import RunConfig
from vlmtune.report.read import RunData
from vlmtune.report.stats import beyond_noise, difference
from vlmtune.report.summary import GridView, display
from vlmtune.report.table import DASH, fmt_bytes
from vlmtune.report.verdict import Entry, Learnt, num
from vlmtune.rundir import VISION_PROBE

HEADER = ["variant", "vision tower", "step time in vision", "vision activations", "vision params",
          "probe: vision effect"]


def vision_mode(config: RunConfig, trains: bool) -> str | None:
    """How a variant treats the vision tower: ``frozen``, ``LoRA``, ``full`` (None: no training)."""
    if not trains:
        return None
    if config.trains_role("vision"):
        return "full"
    if config.method.uses_adapter and "vision" in config.method.lora_on:
        return "LoRA"
    return "frozen"


def _without_vision(config: RunConfig) -> dict[str, Any]:
    """The config with everything that concerns the vision tower (and the name) removed."""
    c = config.model_dump(mode="json")
    c.pop("name", None)
    (c.get("train") or {}).pop("out_dir", None)
    method = c.setdefault("method", {})
    method["lora_on"] = [r for r in (method.get("lora_on") or ["language"]) if r != "vision"]
    c.setdefault("trainable", {})["vision"] = None
    return c


def matched_pairs(runs: list[RunData]) -> list[tuple[RunData, RunData]]:
    """(trained-vision run, frozen-vision run) pairs whose configs differ only in vision."""
    frozen = [r for r in runs if vision_mode(r.config, r.trains) == "frozen"]
    pairs = []
    for run in runs:
        if vision_mode(run.config, run.trains) in ("LoRA", "full"):
            key = _without_vision(run.config)
            match = next((f for f in frozen if _without_vision(f.config) == key), None)
            if match is not None:
                pairs.append((run, match))
    return pairs


def probe(run: RunData) -> dict[str, Any] | None:
    path = run.path / VISION_PROBE
    return json.loads(path.read_text()) if path.is_file() else None


def _share(run: RunData) -> dict[str, Any]:
    return ((run.resources or {}).get("vision_share") or {}) if run.trains else {}


def _probe_cell(run: RunData, task: str | None) -> str:
    t = ((probe(run) or {}).get("tasks") or {}).get(task or "") or {}
    effect = t.get("vision_effect_tuned_language")
    if not effect:
        return "no change" if t else DASH
    noise = f" ± {num(effect['noise'])}" if effect.get("noise") is not None else ""
    return f"{effect['value']:+.3g}{noise} {display(t.get('metric'))}"


def vision_rows(view: GridView) -> list[list[str]]:
    """One row per variant that trained (empty when no run recorded ``vision_share``)."""
    if not any(_share(r) for r in view.runs):
        return []
    task = view.tasks[0] if view.tasks else None
    rows = []
    for run in view.runs:
        mode = vision_mode(run.config, run.trains)
        if mode is None:
            continue
        s = _share(run)
        acts = DASH
        if "activation_bytes" in s:
            acts = f"{fmt_bytes(s['activation_bytes'])} ({s.get('activation_fraction', 0):.0%} of saved)"
        rows.append([run.name, mode, f"{s['time_fraction']:.0%}" if "time_fraction" in s else DASH, acts,
                     f"{s['param_fraction']:.0%}" if "param_fraction" in s else DASH, _probe_cell(run, task)])
    return rows


def vision_verdict(view: GridView, task: str, learnt: Learnt | None = None) -> list[str]:
    """One sentence per trained-vision variant with a matched frozen-vision variant; with
    ``learnt``, "inconclusive" instead of a bottleneck claim that rests on a variant that
    learned nothing (see :mod:`vlmtune.report.verdict`)."""
    by_name = {e.name: e for e in view.entries.get(task, [])}
    metric = display(view.metric.get(task))
    out = []
    for trained, frozen in matched_pairs(view.runs):
        a, b = by_name.get(trained.name), by_name.get(frozen.name)
        if a is None or b is None or a.score is None or b.score is None:
            continue
        d = difference(a.scores, b.scores, a_value=a.score, b_value=b.score)
        credited = a if beyond_noise(d) and d.value > 0 else b  # a tie or a loss credits frozen vision
        gated = learnt.gate(f"Training the vision tower ({a.name}) vs frozen vision ({b.name})", credited,
                            [a, b]) if learnt is not None else None
        out += gated or [_sentence(a, b, metric, _cost(trained, frozen))]
    return out


def _cost(trained: RunData, frozen: RunData) -> str:
    t, f = _share(trained).get("time_fraction"), _share(frozen).get("time_fraction")
    if t is None or f is None:
        return ""
    return f" The vision tower takes {t:.0%} of its step time ({f:.0%} when frozen)."


def _sentence(a: Entry, b: Entry, metric: str, cost: str) -> str:
    d = difference(a.scores, b.scores, a_value=a.score, b_value=b.score)
    noise = "noise unknown" if d.noise is None else f"noise ±{num(d.noise)}"
    what = f"Training the vision tower ({a.name})"
    if beyond_noise(d) and d.value > 0:
        return (f"{what} adds +{num(d.value)} {metric} over frozen vision ({b.name}) ({noise}): the vision "
                f"encoder is a bottleneck.{cost}")
    if beyond_noise(d):
        return (f"{what} loses {num(-d.value)} {metric} against frozen vision ({b.name}) ({noise}): keep it "
                f"frozen or train it with a lower learning rate.{cost}")
    return (f"{what} is within noise of frozen vision ({b.name}) ({num(a.score)} vs {num(b.score)}, {noise}): "
            f"the encoder is not the bottleneck.{cost}")
