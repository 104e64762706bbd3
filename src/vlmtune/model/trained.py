"""Reading a finished run back: its resolved config and its trained model.

A run holds either ``adapter/`` (PEFT format, loaded on top of the base named in
``config.yaml``) or ``model/`` (a full HF checkpoint). Both load with plain
transformers/peft; this module only knows which one to use.

Example:
    >>> model, processor, family, cfg = load_trained(Path("runs/shapes-lora"))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmtune.config import RunConfig
from vlmtune.errors import RunDirError
from vlmtune.model.load import attach_adapter, check_vocab, load_base, load_processor
from vlmtune.model.methods import quantization_of
from vlmtune.rundir import RunDir, load_run_config


def load_trained(run: Path, *, quantized: bool = True, device: Any = None) -> tuple[Any, Any, Any, RunConfig]:
    """The run's model as trained: base + adapter (unmerged) or the saved full model.

    ``quantized=False`` loads a QLoRA run's base in full precision (for a lossless merge).
    """
    cfg, paths = load_run_config(run), RunDir(run)
    if paths.adapter.is_dir():
        base, _, family = load_base(cfg.model, quantization=quantization_of(cfg) if quantized else None,
                                    device=device, with_processor=False)
        model = attach_adapter(base, paths.adapter)
        # the saved processor carries the template training used (model.chat_template included)
        processor = load_processor(str(paths.adapter), cfg.model.model_copy(update={"chat_template": None}),
                                   family)
        check_vocab(model, processor, str(paths.adapter))
    elif paths.model.is_dir():
        full = cfg.model.model_copy(update={"path": str(paths.model), "chat_template": None})
        model, processor, family = load_base(full, device=device)
    else:
        raise RunDirError(f"{run}: run has neither adapter/ nor model/ (did training finish?)")
    model.eval()
    return model, processor, family, cfg
