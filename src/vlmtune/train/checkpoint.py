"""Checkpoints that survive a crash: trainable weights, optimizer, scheduler, RNG, step.

Each checkpoint is a directory ``checkpoints/step-000050`` staged under a temporary name
and renamed into place; its ``manifest.json`` (written last) lists every file with size
and SHA-256. A checkpoint whose manifest is missing or does not match is torn: it is
skipped and the previous one used. Only parameters that train are saved (an adapter run
checkpoints megabytes, not the base). No pickle: tensors are safetensors, the optimizer
state loads with ``torch.load(weights_only=True)``.

Example:
    >>> save_checkpoint(run / "checkpoints", 50, weights, optimizer.state_dict(), scheduler,
    ...                 {"epoch": 0}, keep=2)  # doctest: +SKIP
    >>> latest_checkpoint(run / "checkpoints").name
    'step-000050'
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from vlmtune.atomic import staged_dir
from vlmtune.errors import RunDirError

MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _save_rng(folder: Path) -> None:
    state = rng_state()
    tensors = {"torch": state["torch"]}
    for i, t in enumerate(state.get("cuda", [])):
        tensors[f"cuda{i}"] = t
    save_file(tensors, str(folder / "rng.safetensors"))
    py = state["python"]
    np_state = state["numpy"]
    meta = {"python": [py[0], list(py[1]), py[2]],
            "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
    (folder / "rng.json").write_text(json.dumps(meta))


def _load_rng(folder: Path) -> None:
    tensors = load_file(str(folder / "rng.safetensors"))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    meta = json.loads((folder / "rng.json").read_text())
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_checkpoint(folder: Path, step: int, weights: dict[str, torch.Tensor], optimizer_state: dict[str, Any],
                    scheduler: Any, state: dict[str, Any], keep: int) -> Path:
    """Write ``folder/step-NNNNNN`` atomically, then prune to the newest ``keep``.

    ``weights`` are the trainable parameters (full, on CPU) and ``optimizer_state`` the
    optimizer's state dict (see vlmtune.train.distributed, which gathers both under FSDP)."""
    target = Path(folder) / f"step-{step:06d}"
    with staged_dir(target) as tmp:
        save_file(weights, str(tmp / "trainable.safetensors"))
        torch.save(optimizer_state, tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        _save_rng(tmp)
        (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=2))
        files = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(tmp.iterdir())}
        (tmp / MANIFEST).write_text(json.dumps({"step": step, "files": files}, indent=2))
    for old in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def list_checkpoints(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step-"))


def is_complete(checkpoint: Path) -> bool:
    """True if the manifest exists and every file matches its size and hash."""
    try:
        manifest = json.loads((checkpoint / MANIFEST).read_text())
        for name, info in manifest["files"].items():
            path = checkpoint / name
            if path.stat().st_size != info["bytes"] or _sha256(path) != info["sha256"]:
                return False
    except (OSError, ValueError, KeyError):
        return False
    return True


def latest_checkpoint(folder: Path, *, warn: bool = True) -> Path | None:
    """The newest complete checkpoint (torn ones are reported and skipped)."""
    for checkpoint in reversed(list_checkpoints(folder)):
        if is_complete(checkpoint):
            return checkpoint
        if warn:
            print(f"warning: {checkpoint} is incomplete or corrupt; using an earlier checkpoint")
    return None


def load_latest(folder: Path, scheduler: Any, apply: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
    """Load the newest checkpoint that loads: complete (manifest matches) and accepted by
    ``apply`` (which puts weights and optimizer state into the model). A checkpoint that
    matches its manifest but does not load (a file rewritten together with its manifest,
    a version mismatch) is reported and the previous one used. None: no checkpoint at all.
    The returned state carries ``path``. Raises if checkpoints exist and none loads."""
    candidates = list(reversed(list_checkpoints(folder)))
    first_problem = None
    for checkpoint in candidates:
        if not is_complete(checkpoint):
            problem = "incomplete or corrupt (manifest does not match)"
        else:
            try:
                state = load_checkpoint(checkpoint, scheduler)
                apply(state)
                return {**state, "path": checkpoint}
            except Exception as err:  # noqa: BLE001 - whatever the cause, an earlier checkpoint may load
                problem = f"does not load ({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''})"
        print(f"warning: {checkpoint} {problem}; trying an earlier checkpoint")
        first_problem = first_problem or f"{checkpoint.name} {problem}"
    if candidates:
        raise RunDirError(f"{folder}: no checkpoint can be resumed from (newest: {first_problem}); "
                          "start again with --overwrite")
    return None


def load_checkpoint(checkpoint: Path, scheduler: Any) -> dict[str, Any]:
    """Restore the scheduler and RNG; return the saved loop state with the trainable
    ``weights`` and ``optimizer`` state dict for the caller to load into model and optimizer."""
    state = json.loads((checkpoint / "state.json").read_text())
    state["weights"] = load_file(str(checkpoint / "trainable.safetensors"))
    state["optimizer"] = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))
    _load_rng(checkpoint)
    return state
