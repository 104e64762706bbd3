"""The bench model: a Qwen2-VL built locally at a chosen size, seeded random init.

Why this way: no weights can be downloaded, and the comparison needs a real architecture
(vision tower with 2x2 patch merger, M-RoPE, GQA), not a toy. The recipe is the zoo
builder's (:mod:`vlmtune.zoo.build`): ``build_tiny`` supplies the tokenizer trained on the
bench data, the processor, chat template and generation config; the towers are then
resized and re-initialised.

Example:
    >>> path = build_model(Path("/tmp/bench-model"), SIZES["quick"], Path("train.jsonl"))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

SIZES = {
    # name: (text_hidden, text_layers, text_heads, text_kv_heads, text_ffn, vision_hidden, vision_layers, vision_heads)
    "quick": (64, 2, 2, 1, 128, 64, 2, 2),
    "small": (256, 4, 4, 2, 1024, 192, 4, 3),
    "bench": (512, 8, 8, 2, 2048, 256, 4, 4),
    "large": (768, 10, 12, 4, 2048, 384, 6, 6),
}


def plan_for(size: str, seed: int = 0):
    from vlmtune.zoo.build import BuildPlan

    th, tl, tn, tkv, tf, vh, vl, vn = SIZES[size]
    return replace(BuildPlan(), seed=seed, text_hidden=th, text_layers=tl, text_heads=tn, text_kv_heads=tkv,
                   text_ffn=tf, vision_hidden=vh, vision_layers=vl, vision_heads=vn)


def build_model(out: Path, size: str, train_jsonl: Path, *, seed: int = 0) -> dict:
    """Write the checkpoint to ``out``; return its size record (params per tower)."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    from vlmtune.zoo.build import corpus_lines, init_checkpoint

    plan = plan_for(size, seed)
    init_checkpoint(plan, corpus_lines(Path(train_jsonl)), Path(out))
    config = AutoConfig.from_pretrained(out)
    config.use_cache = True  # generation wants it; the trainers switch it off themselves
    config.text_config.use_cache = True
    config.save_pretrained(out)
    model = AutoModelForImageTextToText.from_pretrained(out)
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for n, p in model.named_parameters() if ".visual." in f".{n}")
    return {"size": size, "family": "qwen2_vl", "total_params": total, "vision_params": vision,
            "language_params": total - vision, "vocab_size": config.text_config.vocab_size,
            "dims": {k: v for k, v in asdict(plan).items() if k.startswith(("text_", "vision_", "image_", "vocab"))}}
