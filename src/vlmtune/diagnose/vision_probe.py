"""Probe a run: how much of its gain comes from the vision side (vision tower + projector)?

Why: a run that trains the vision tower (LoRA on it, or fully) improves two things at once,
so its score does not say which one mattered. Swapping weights separates them: the run's
model with the *base* vision tower and projector put back, and the base model with the
run's tuned vision side, give a 2x2 of {base, tuned} language x {base, tuned} vision on
``eval.test``. The vision effect is the score difference between tuned and base vision
with the tuned language model (paired per item, ±2 s.e. as in the report); its share of
the run's total gain says whether the vision encoder was a bottleneck.

A run whose vision side never trained (LoRA on the language model only) has nothing to
swap; ``vision_from`` takes the tuned vision side from another run of the same base
instead (e.g. probe ``lora-r16`` with the tower of ``full-vision``: "conversely").

Adapters are merged first (in full precision), so the swapped weights are the effective
ones. Both models are held in memory at once.

Writes ``RUN/vision_probe.json``.

Example:
    >>> result = probe_run(Path("runs/vision-bottleneck-grid/full-vision"))  # doctest: +SKIP
    >>> result["verdict"]  # doctest: +SKIP
    'tuned vision side adds +0.12 IoU over the base one (noise ±0.04) with the tuned language model: ...'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vlmtune.atomic import write_json
from vlmtune.config import RunConfig
from vlmtune.errors import DataError, InputError
from vlmtune.report.stats import beyond_noise, difference
from vlmtune.report.summary import display
from vlmtune.report.verdict import num
from vlmtune.rundir import VISION_PROBE
# Function-level imports: the evaluation stack loads only when a probe runs (CLI start-up).

SIDES = ("vision", "projector")


def vision_state(model: torch.nn.Module, family: Any) -> dict[str, torch.Tensor]:
    """Copies of the vision tower's and projector's weights and buffers, by name."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if family.role_of(k) in SIDES}


def load_vision(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state`` (from :func:`vision_state` of a same-architecture model) into ``model``."""
    own = model.state_dict()
    missing = sorted(set(state) - set(own))
    if missing:
        raise InputError(f"the vision weights do not fit this model (e.g. {missing[0]!r} is not in it)",
                         field="vision")
    with torch.no_grad():
        for name, value in state.items():
            if own[name].shape != value.shape:
                raise InputError(f"{name}: shape {tuple(value.shape)} does not fit {tuple(own[name].shape)}",
                                 field="vision")
            own[name].copy_(value)


def effective_model(run: Path) -> tuple[Any, Any, Any, RunConfig]:
    """The run's model with adapters merged into full-precision weights."""
    from vlmtune.model.trained import load_trained

    model, processor, family, cfg = load_trained(run, quantized=False)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.eval()
    return model, processor, family, cfg


def score_model(model: Any, processor: Any, family: Any, cfg: RunConfig, samples: list) -> dict[str, Any]:
    """Per task: (metric, summary value, per-item scores) from greedy generation on ``samples``."""
    from vlmtune.evaluate.run import generate_all
    from vlmtune.evaluate.scoring import metrics_for, score_records
    from vlmtune.evaluate.generate import Generator

    e = cfg.eval
    generator = Generator(model, processor, family, max_new_tokens=e.max_new_tokens)
    records = generate_all(generator, samples, [], cfg, "probe")  # no pool: zero-shot
    summary = score_records(records, cfg)
    out = {}
    for task, values in summary.items():
        metric = metrics_for(task, cfg)[0]
        scores = {str(r["id"]): float(r["scores"][metric]) for r in records
                  if r["task"] == task and isinstance(r["scores"].get(metric), (int, float))}
        out[task] = {"metric": metric, "value": values.get(metric), "scores": scores}
    return out


def _test_samples(cfg: RunConfig, max_samples: int | None) -> list:
    from vlmtune.data.schema import load_samples

    path = cfg.eval.test or cfg.data.val
    if not path:
        raise DataError("no evaluation set: set eval.test (or data.val) in the run's config", field="eval.test")
    return load_samples(path, root=cfg.data.root, allow_outside_root=cfg.data.allow_outside_root,
                        require_answer=False, limit=max_samples or cfg.eval.max_samples, **cfg.data.image_cap)


def probe_run(run: str | Path, *, vision_from: str | Path | None = None, max_samples: int | None = None,
              write: bool = True) -> dict[str, Any]:
    """The 2x2 swap probe of one run; writes ``vision_probe.json`` into the run dir."""
    from vlmtune.model.load import load_base

    run = Path(run)
    tuned, processor, family, cfg = effective_model(run)
    base, _, _ = load_base(cfg.model)
    base.eval()
    source = Path(vision_from) if vision_from else run
    if source != run:
        other, _, _, _ = effective_model(source)
        tuned_vision = vision_state(other, family)
        del other
    else:
        tuned_vision = vision_state(tuned, family)
    base_vision = vision_state(base, family)
    changed = sorted(k for k in base_vision if not torch.equal(base_vision[k], tuned_vision[k]))
    samples = _test_samples(cfg, max_samples)
    cells = {("tuned", "run"): score_model(tuned, processor, family, cfg, samples),
             ("base", "base"): score_model(base, processor, family, cfg, samples)}
    if changed:
        load_vision(tuned, base_vision)
        cells[("tuned", "base")] = score_model(tuned, processor, family, cfg, samples)
        if source == run:
            cells[("tuned", "tuned")] = cells[("tuned", "run")]
        else:
            load_vision(tuned, tuned_vision)
            cells[("tuned", "tuned")] = score_model(tuned, processor, family, cfg, samples)
        load_vision(base, tuned_vision)
        cells[("base", "tuned")] = score_model(base, processor, family, cfg, samples)
    result = summarise(cells, changed, run, source)
    if write:
        write_json(run / VISION_PROBE, result)
    return result


def summarise(cells: dict, changed: list[str], run: Path, source: Path) -> dict[str, Any]:
    """Per task: the 2x2 scores, vision and language effects (±2 s.e.), share and verdict."""
    tasks: dict[str, Any] = {}
    for task, ref in cells[("base", "base")].items():
        metric = ref["metric"]
        get = {key: (cell or {}).get(task) for key, cell in cells.items()}
        t = {"metric": metric, "scores": {"run" if vis == "run" else f"{lang}_language+{vis}_vision": c["value"]
                                          for (lang, vis), c in get.items() if c}}
        t.update(_effects(get, metric))
        tasks[task] = t
    return {"run": str(run), "vision_from": str(source), "vision_changed": bool(changed),
            "changed_tensors": len(changed), "tasks": tasks,
            "verdict": " ".join(t["verdict"] for t in tasks.values())}


def _effects(get: dict, metric: str) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def diff(a: tuple, b: tuple) -> dict[str, Any] | None:
        if not get.get(a) or not get.get(b):
            return None
        d = difference(get[a]["scores"], get[b]["scores"], a_value=get[a]["value"], b_value=get[b]["value"])
        return {"value": d.value, "se": d.se, "beyond_noise": beyond_noise(d), "noise": d.noise}

    out["vision_effect_tuned_language"] = diff(("tuned", "tuned"), ("tuned", "base"))
    out["vision_effect_base_language"] = diff(("base", "tuned"), ("base", "base"))
    out["language_effect"] = diff(("tuned", "base"), ("base", "base"))
    out["total_gain"] = diff(("tuned", "run"), ("base", "base"))
    v, total = out["vision_effect_tuned_language"], out["total_gain"]
    out["vision_share_of_gain"] = (v["value"] / total["value"]) if v and total and total["value"] > 0 else None
    out["verdict"] = _sentence(v, total, out["vision_share_of_gain"], display(metric))
    return out


def _sentence(v: dict | None, total: dict | None, share: float | None, metric: str) -> str:
    if v is None:
        return ("The run's vision tower and projector equal the base model's: nothing to swap (probe it with "
                "--vision-from RUN, a run that trained the vision side).")
    noise = "noise unknown" if v["noise"] is None else f"noise ±{num(v['noise'])}"
    head = f"With the tuned language model, the tuned vision side changes {metric} by {v['value']:+.3g} ({noise})"
    if not v["beyond_noise"]:
        return f"{head}: within noise, the vision side is not the bottleneck."
    if v["value"] < 0:
        return f"{head}: the tuned vision side hurts."
    tail = f"; {share:.0%} of the run's total gain (+{num(total['value'])})" if share is not None else ""
    return f"{head}{tail}: the vision encoder is a bottleneck."
