"""``vlmtune merge``: fold a run's adapter into its base and prove the logits agree.

For LoRA/DoRA the merge is exact up to float rounding; we print the max absolute logit
difference on a few real samples. For QLoRA, merging into the 4-bit base re-quantises the
merged weights, which changes the function: we measure by how much, and ``--dequantize``
instead merges into a full-precision copy of the base (deploy that one; the difference it
reports is the quantisation error the adapter was trained around).

Example:
    >>> report = merge_run(Path("runs/shapes-lora"), Path("merged"))  # doctest: +SKIP
    >>> report["max_abs_diff"] < 1e-4
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from vlmtune.atomic import staged_dir, write_json
from vlmtune.data.collate import Collator
from vlmtune.data.dataset import EncodedDataset
from vlmtune.data.encode import image_token_ids
from vlmtune.data.schema import load_samples
from vlmtune.data.video import VideoSampling
from vlmtune.errors import RunDirError
from vlmtune.model.load import cast_floats
from vlmtune.model.trained import load_trained
from vlmtune.ownership import DirLock, check_owned, is_empty, mark, refuse_overlap
from vlmtune.rundir import RunDir


def probe_batch(cfg: Any, processor: Any, family: Any, model_config: Any, n: int = 4) -> dict[str, torch.Tensor]:
    """A batch of up to ``n`` real samples from the run's validation (or training) set."""
    path = cfg.data.val or cfg.data.train
    samples = load_samples(path, root=cfg.data.root, allow_outside_root=cfg.data.allow_outside_root, limit=n,
                           video=VideoSampling.of(cfg.data), **cfg.data.image_cap)
    data = EncodedDataset(samples, processor, family, image_token_ids(processor, model_config), cfg.data.max_length)
    batch = Collator(processor, cfg.data.max_length)([data[i] for i in range(len(data))])
    batch.pop("labels")
    return batch


@torch.no_grad()
def logits_of(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    device = next(model.parameters()).device
    out = model(**cast_floats({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()},
                              model.dtype))
    mask = batch["attention_mask"].bool().to(device)
    return out.logits.float()[mask]


def merge_run(run: Path, out: Path, *, dequantize: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Merge, verify, and write ``out`` under its lock; ``--overwrite`` replaces only a
    merged model vlmtune wrote, and never the run being merged (or a folder around it)."""
    run, out = Path(run), Path(out)
    if not RunDir(run).adapter.is_dir():
        raise RunDirError(f"{run}: no adapter/ to merge (a full fine-tune is already a model: {RunDir(run).model})")
    refuse_overlap(out, run)
    if not is_empty(out):
        if not overwrite:
            raise RunDirError(f"{out}: exists; pass --overwrite to replace it")
        check_owned(out, "merged model")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"{out}: cannot create the output directory: {err.strerror}") from None
    with DirLock(out):
        return _merge(run, out, dequantize)


def _merge(run: Path, out: Path, dequantize: bool) -> dict[str, Any]:
    model, processor, family, cfg = load_trained(run)
    batch = probe_batch(cfg, processor, family, model.config)
    reference = logits_of(model, batch)  # the model as trained: base + unmerged adapter
    report: dict[str, Any] = {"run": str(run), "method": cfg.method.kind, "samples": int(batch["input_ids"].shape[0])}
    merged = model.merge_and_unload()
    if cfg.method.kind == "qlora":
        report["quantized_merge_max_abs_diff"] = _diff(reference, logits_of(merged, batch))
        report["merged_into"] = "dequantized base" if dequantize else "4-bit base"
        if dequantize:
            merged = load_trained(run, quantized=False)[0].merge_and_unload()
    report["max_abs_diff"] = _diff(reference, logits_of(merged, batch))
    report["logit_scale"] = float(reference.abs().max())
    try:
        with staged_dir(out) as tmp:  # replaces out in one rename; the lock is held until then
            merged.save_pretrained(tmp, safe_serialization=True)
            processor.save_pretrained(tmp)
            write_json(tmp / "merge_report.json", report)
            mark(tmp, "merged model")
    except (OSError, RuntimeError, SafetensorError) as err:
        detail = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0][:200]
        raise RunDirError(f"{out}: could not write the merged model: {detail}; nothing was replaced") from None
    return report


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())
