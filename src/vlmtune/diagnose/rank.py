"""How much of a full fine-tune's weight update a LoRA of rank r could express.

Why: LoRA constrains each update ΔW = W_tuned - W_base to rank r. The best rank-r
approximation of ΔW (Eckart-Young) keeps the energy ``sum(s[:r]**2) / sum(s**2)`` of its
singular values ``s``; if r = 16 keeps most of the energy of a full fine-tune's update,
LoRA r=16 can in principle reach the same place, if not the task needs a high-rank update
(the question "LoRA vs full" in docs/design.md, answered from one full run).

Reads ``RUN/config.yaml`` (``model.path``: the base, a dir or a zoo name) and
``RUN/model/*.safetensors``; compares every 2-D language-model projection
(q/k/v/o/gate/up/down); writes ``RUN/rank.json`` and ``RUN/rank_spectrum.png``.

Example:
    >>> summary = analyse_run("runs/full")   # doctest: +SKIP
    >>> summary["median_energy"]["16"]        # doctest: +SKIP
    0.62
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch

from vlmtune.errors import InputError, RunDirError
from vlmtune.rundir import CONFIG, RANK, RunDir, load_run_config
# Function-level imports: safetensors/matplotlib and the model loader load only when a run is
# analysed (CLI start-up).

RANKS = (1, 2, 4, 8, 16, 64)
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
HIGH, LOW = 0.9, 0.5  # energy thresholds for the verdict


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise InputError("no *.safetensors weights found", file=folder)
    out: dict[str, torch.Tensor] = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


def base_of(run: Path, base: str | Path | None = None) -> Path:
    """The base model dir: ``base`` if given, else ``model.path`` of ``run/config.yaml``."""
    from vlmtune.model.load import resolve_model_path

    if base is not None:
        return Path(resolve_model_path(str(base)))
    if not RunDir(run).config.is_file():
        raise RunDirError(f"{run}: not a run directory (no {CONFIG}); pass --base to name the base model")
    path = load_run_config(run).model.path
    return Path(resolve_model_path(str(path)))


def energy_curve(delta: torch.Tensor, ranks: tuple[int, ...] = RANKS) -> tuple[dict[str, float], list[float]]:
    """Share of ``||delta||_F^2`` in the top-r singular values, for r in ``ranks`` (capped
    at min(shape)), and the singular values themselves.

    Example:
        >>> d = torch.outer(torch.ones(4), torch.arange(3.0))
        >>> energy_curve(d, (1, 2))[0]["1"]
        1.0
    """
    s = torch.linalg.svdvals(delta.double())
    sq = s ** 2
    total = float(sq.sum())
    cumulative = torch.cumsum(sq, 0) / total
    cap = min(delta.shape)
    return {str(r): round(float(cumulative[min(r, cap) - 1]), 6) for r in ranks}, [float(x) for x in s]


def _is_projection(name: str, family: Any) -> bool:
    parts = name.split(".")
    if len(parts) < 2 or parts[-1] != "weight" or parts[-2] not in PROJECTIONS:
        return False
    module = ".".join(parts[:-1])
    return family.role_of(module) in ("language", None) and "vision" not in module and "visual" not in module


def analyse(tuned: dict[str, torch.Tensor], base: dict[str, torch.Tensor], family: Any,
            ranks: tuple[int, ...] = RANKS) -> list[dict[str, Any]]:
    """Per language projection: shape, ||ΔW||_F, energy at each rank, singular values."""
    rows = []
    for name in sorted(tuned):
        if not _is_projection(name, family) or name not in base or tuned[name].dim() != 2:
            continue
        delta = tuned[name].float() - base[name].float()
        norm = float(delta.norm())
        row: dict[str, Any] = {"name": name, "shape": list(delta.shape), "delta_norm": norm,
                               "relative_norm": norm / max(float(base[name].float().norm()), 1e-12)}
        if norm == 0.0:
            row["unchanged"] = True
        else:
            row["energy"], row["singular_values"] = energy_curve(delta, ranks)
        rows.append(row)
    return rows


def verdict(median_energy: dict[str, float], rank: int, n: int) -> str:
    """One sentence on whether LoRA at ``rank`` can express the update."""
    key = str(min(RANKS, key=lambda r: (abs(r - rank), r)))
    share = median_energy.get(key)
    if share is None:
        return "no updated language projection found: nothing to compare"
    head = f"rank {key} captures {share:.0%} of the update energy (median over {n} matrices)"
    if share >= HIGH:
        return f"{head}: the update is low-rank; LoRA r={key} can express it"
    if share >= LOW:
        return f"{head}: partly low-rank; LoRA r={key} may fall short — compare with full and a higher rank"
    return f"{head}: the update is high-rank; LoRA r={key} may fall short — compare with full"


def summarise(rows: list[dict[str, Any]], rank: int = 16) -> dict[str, Any]:
    changed = [r for r in rows if not r.get("unchanged")]
    median = {str(k): round(statistics.median(r["energy"][str(k)] for r in changed), 6)
              for k in RANKS} if changed else {}
    return {"matrices": len(rows), "unchanged": len(rows) - len(changed), "ranks": list(RANKS),
            "median_energy": median, "rank": rank, "verdict": verdict(median, rank, len(changed)),
            "per_matrix": [{k: v for k, v in r.items() if k != "singular_values"} for r in rows]}


def plot(rows: list[dict[str, Any]], summary: dict[str, Any], out: Path) -> Path:
    """Left: cumulative energy vs rank per matrix (grey) and median (black). Right: the
    normalised singular value spectra."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for r in rows:
        if r.get("unchanged"):
            continue
        s = torch.tensor(r["singular_values"])
        cum = torch.cumsum(s ** 2, 0) / float((s ** 2).sum())
        left.plot(range(1, len(cum) + 1), cum.tolist(), color="0.7", lw=0.8)
        right.semilogy(range(1, len(s) + 1), (s / s[0]).clamp_min(1e-12).tolist(), color="0.6", lw=0.8)
    if summary["median_energy"]:
        ks = [int(k) for k in summary["median_energy"]]
        left.plot(ks, list(summary["median_energy"].values()), "o-", color="black", label="median")
        left.legend()
    left.set(xscale="log", xlabel="rank r", ylabel="share of ||ΔW||² captured", ylim=(0, 1.02),
             title="update energy kept by a rank-r LoRA")
    right.set(xlabel="index", ylabel="σ / σ₁", title="singular values of ΔW")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def analyse_run(run: str | Path, base: str | Path | None = None, rank: int = 16) -> dict[str, Any]:
    """Compare ``run/model`` with its base; write ``rank.json`` and ``rank_spectrum.png``."""
    from vlmtune.atomic import write_json
    from vlmtune.families.shapes import load_config_any
    from vlmtune.families import get_family

    run = Path(run)
    if not RunDir(run).model.is_dir():
        raise RunDirError(f"{run}: no model/ directory: rank analysis needs a full fine-tune run (method.kind: full)")
    base_dir = base_of(run, base)
    config = load_config_any(str(base_dir))
    family = get_family(config.model_type, source=str(base_dir), config=config)
    rows = analyse(_read_weights(RunDir(run).model), _read_weights(base_dir), family)
    summary = summarise(rows, rank)
    summary["base"] = str(base_dir)
    summary["plot"] = str(plot(rows, summary, run / "rank_spectrum.png"))
    write_json(run / RANK, summary)
    return summary
