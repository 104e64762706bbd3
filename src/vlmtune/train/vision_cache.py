"""Frozen vision cache: compute each image's features once, reuse them every epoch.

When neither the vision tower nor the projector trains, what the language model receives
at an image's placeholder tokens is a fixed function of the image (we never augment). So
the first time a training example is seen, a forward pre-hook on the language model
*captures* the embeddings at its image-token positions (vision tower + projector output,
after the family's own merge); the next time, the batch goes in without ``pixel_values``
and the same hook *replays* the captured rows into those positions. Everything else
(token embeddings, Qwen's M-RoPE positions from ``image_grid_thw``, masks) is computed by
the model as usual, so the loss is the same as without the cache.

Families whose image features enter the decoder elsewhere than its input embeddings
(Mllama's cross-attention, Qwen3-VL's DeepStack layers) set ``Family.vision_cache=False``;
``auto`` leaves the cache off for them and an explicit ``memory``/``disk`` is refused.

A cache in ``memory`` keeps tensors; ``disk`` writes one safetensors file per example
under ``<run>/vision_cache/`` (removed when training ends). Past ``max_bytes`` new examples
are simply not cached: their batches run the vision tower as before.

Example:
    >>> cache = VisionCache.for_run(cfg, model, family, run_dir)  # doctest: +SKIP
    >>> batch = cache.prepare(keys, counts, batch)   # drops pixel inputs when all are cached
    >>> with cache.serving(keys, counts):            # capture or replay in the LM pre-hook
    ...     loss = token_loss_sum(model, batch)
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from vlmtune.atomic import write_bytes
from vlmtune.errors import ConfigError
# Function-level imports: safetensors and the distributed helpers load only for the disk cache /
# several processes.

# Batch keys only the vision tower reads; dropped when every example of a batch is cached.
PIXEL_KEYS = ("pixel_values", "pixel_attention_mask")


def placeholder_id(config: Any) -> int | None:
    """The token id whose positions receive image features (``masked_scatter`` target)."""
    for attr in ("image_token_id", "image_token_index"):
        value = getattr(config, attr, None)
        if isinstance(value, int):
            return value
    return None


def resolve_mode(cfg: Any, family: Any) -> str:
    """``train.vision_cache`` with ``auto`` decided: off | memory | disk."""
    from vlmtune.train.distributed import strategy

    mode = cfg.train.vision_cache
    # FSDP and ZeRO-3 gather the vision tower's shards on every process in lockstep: a process whose
    # batch is served from the cache would skip those collectives and hang the others.
    sharded = strategy(cfg) in ("fsdp", "deepspeed")
    if mode == "auto":
        return "memory" if cfg.vision_frozen and family.vision_cache and not sharded else "off"
    if mode != "off" and sharded:
        raise ConfigError(f"train.vision_cache: {mode} cannot be used with FSDP or DeepSpeed (processes would skip "
                          "different vision-tower all-gathers); use auto or off")
    if mode != "off" and not family.vision_cache:
        raise ConfigError(f"train.vision_cache: {mode} is not exact for {family.name} "
                          f"({family.vision_cache_why}); use auto or off")
    return mode


def language_module(model: nn.Module, family: Any) -> nn.Module:
    """The decoder that receives ``inputs_embeds`` (under PEFT/DDP wrappers)."""
    base = getattr(model, "module", model)  # DDP
    if hasattr(base, "get_base_model"):  # PEFT
        base = base.get_base_model()
    return base.get_submodule(family.language[0])


class VisionCache:
    def __init__(self, model: nn.Module, family: Any, mode: str, max_bytes: int, directory: Path | None = None):
        self.mode = mode
        self.max_bytes = max_bytes
        self.directory = directory
        self.image_id = placeholder_id(getattr(model, "config", None)) if mode != "off" else None
        self.enabled = mode != "off" and self.image_id is not None
        self.bytes = 0
        self.hits = self.misses = 0
        self._store: dict[int, torch.Tensor] = {}
        self._known: set[int] = set()  # keys stored (memory or disk)
        self._active: tuple[list[int], list[int], torch.Tensor] | None = None
        self._handle = None
        if self.enabled:
            module = language_module(model, family)
            self._handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)
            if mode == "disk":
                directory.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_run(cls, cfg: Any, model: nn.Module, family: Any, run: Path, rank: int = 0) -> "VisionCache":
        mode = resolve_mode(cfg, family)
        return cls(model, family, mode, cfg.train.vision_cache_max_bytes,
                   run / "vision_cache" / f"rank{rank}" if mode == "disk" else None)

    def image_tokens(self, examples: list[Any]) -> list[int]:
        """Image placeholder tokens per example (0 for all when the cache is off)."""
        if not self.enabled:
            return [0] * len(examples)
        return [e.encoded.input_ids.count(self.image_id) for e in examples]

    def has_all(self, keys: list[int], counts: list[int]) -> bool:
        """Every example with image tokens has its features cached (text-only ones need none)."""
        return self.enabled and all(n == 0 or k in self._known for k, n in zip(keys, counts))

    def prepare(self, keys: list[int], counts: list[int], batch: dict[str, Any]) -> dict[str, Any]:
        """``batch`` without its pixel inputs when every example's features are cached."""
        if not self.has_all(keys, counts) or not any(counts):
            return batch
        return {k: v for k, v in batch.items() if k not in PIXEL_KEYS}

    @contextmanager
    def serving(self, keys: list[int], counts: list[int], input_ids: torch.Tensor) -> Iterator[None]:
        """Within this block, the LM pre-hook captures (or replays) the features of the
        examples ``keys`` (in batch order, ``counts`` image tokens each; ``input_ids`` is
        the batch's, padded or packed: image positions in row-major order follow ``keys``)."""
        self._active = (list(keys), list(counts), input_ids) if self.enabled and any(counts) else None
        try:
            yield
        finally:
            self._active = None

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if self._active is None:
            return None
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:
            raise RuntimeError("vision cache: the language model was not called with inputs_embeds")
        keys, counts, ids = self._active
        self._active = None  # one LM call per micro-batch
        mask = (ids == self.image_id).to(embeds.device)
        if int(mask.sum()) != sum(counts):
            raise RuntimeError(f"vision cache: {int(mask.sum())} image tokens in the batch, expected {sum(counts)}")
        if self.has_all(keys, counts):
            self.hits += sum(n > 0 for n in counts)  # examples (with images) served from the cache
            rows = torch.cat([self._load(k) for k, n in zip(keys, counts) if n]).to(embeds.device, embeds.dtype)
            kwargs = {**kwargs, "inputs_embeds": embeds.masked_scatter(mask.unsqueeze(-1), rows)}
            return args, kwargs
        self.misses += sum(n > 0 for n in counts)
        rows = embeds[mask].detach()
        for key, part in zip(keys, rows.split(counts)):
            if key not in self._known and part.numel():
                self._save(key, part)
        return None

    def _save(self, key: int, rows: torch.Tensor) -> None:
        size = rows.numel() * rows.element_size()
        if self.bytes + size > self.max_bytes:
            return  # cap reached: this example keeps running the vision tower
        rows = rows.to("cpu", copy=True).contiguous()
        if self.mode == "disk":
            from safetensors.torch import save

            write_bytes(self.directory / f"{key}.safetensors", save({"rows": rows}))
        else:
            self._store[key] = rows
        self._known.add(key)
        self.bytes += size

    def _load(self, key: int) -> torch.Tensor:
        if self.mode == "disk":
            from safetensors.torch import load_file
            return load_file(str(self.directory / f"{key}.safetensors"))["rows"]
        return self._store[key]

    def stats(self) -> dict[str, Any]:
        return {"mode": self.mode if self.enabled else "off", "entries": len(self._known),
                "bytes": self.bytes, "hits": self.hits, "misses": self.misses}

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._store.clear()
        if self.mode == "disk" and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            try:
                self.directory.parent.rmdir()  # the last process out removes vision_cache/
            except OSError:
                pass
