"""The real-vocabulary bench model (``run.py --size real``): a published Qwen2-VL config cut
to fit 2 shared CPU cores, with its vocabulary and image processing kept.

Why this cut: what separates trainers on real VLMs is the 152k-row LM head (full logits
for every position vs. only the labelled ones) and images of hundreds of tokens; neither
depends on the decoder's depth. Qwen2-VL-7B at its real hidden size (3584) costs ~2 GFLOP
per token forward for the LM head and two layers alone, ~3 minutes a step here, and 6 GB of
fp32 weights per process; so the width and depth are cut, the vocabulary and the image
geometry are not. :data:`REAL` records exactly what is kept and what is cut.

Kept from ``Qwen-Qwen2-VL-7B-Instruct.json``: ``vocab_size`` (152,064 rows of the input
embedding and of the untied LM head), ``tie_word_embeddings=false``, the vision patch
(14 px), temporal patch 2, 2x2 spatial merge, rope theta, and the real processor
(``Qwen2VLImageProcessor`` defaults: CLIP mean/std, 3,136..1,003,520 pixels), so a 448 px
image is 32x32 patches -> 256 image tokens. The tokenizer is the bench's locally trained
one (its ids are the first ~1,000 rows; ids beyond it never occur, like unused rows of a
real vocabulary), chat template and special tokens as in the standard bench.
"""

from __future__ import annotations

import json
from pathlib import Path

# the public config.json of Qwen/Qwen2-VL-7B-Instruct, vendored so a clean clone runs the bench
CONFIG = Path(__file__).resolve().parent / "configs" / "Qwen-Qwen2-VL-7B-Instruct.json"
# name: (text_hidden, text_layers, text_heads, text_kv_heads, text_ffn, vision_embed, vision_layers, vision_heads)
REAL = {
    "real": (512, 2, 8, 2, 2048, 256, 2, 4),
    "real-quick": (64, 2, 2, 1, 128, 64, 1, 2),
}
CUT_FROM = {"text_hidden": 3584, "text_layers": 28, "text_heads": 28, "text_kv_heads": 4, "text_ffn": 18944,
            "vision_embed": 1280, "vision_layers": 32, "vision_heads": 16}


def config_file() -> Path:
    return CONFIG


def real_config(tiny_config, dims: tuple, vocab_size: int):
    """The tiny build's config (its token ids) with the real vocabulary, vision geometry and
    the cut widths; M-RoPE split scaled to the cut head size like the released 16/24/24."""
    from transformers import Qwen2VLConfig

    from vlmtune.testing.spec import mrope_section

    th, tl, tn, tkv, tf, ve, vl, vn = dims
    published = json.loads(config_file().read_text(encoding="utf-8"))
    data = tiny_config.to_dict()
    text = data["text_config"]
    for key in ("layer_types", "head_dim"):
        text.pop(key, None)
    text.update(vocab_size=vocab_size, hidden_size=th, num_hidden_layers=tl, num_attention_heads=tn,
                num_key_value_heads=tkv, intermediate_size=tf, use_cache=True,
                rms_norm_eps=published["rms_norm_eps"], tie_word_embeddings=published["tie_word_embeddings"])
    text["rope_parameters"] = {**text["rope_parameters"], "rope_theta": published["rope_theta"],
                               "mrope_section": mrope_section(th // tn)}
    data["vision_config"].update(depth=vl, embed_dim=ve, num_heads=vn, mlp_ratio=4, hidden_size=th,
                                 patch_size=published["vision_config"]["spatial_patch_size"],
                                 spatial_merge_size=2, temporal_patch_size=2, hidden_act="quick_gelu")
    data["tie_word_embeddings"] = published["tie_word_embeddings"]
    for key in ("model_type", "transformers_version", "architectures"):
        data.pop(key, None)
    return Qwen2VLConfig(**data)


def build_real_model(out: Path, size: str, train_jsonl: Path, *, seed: int = 0) -> dict:
    """Write the checkpoint to ``out`` (random init, seed ``seed``); return its size record."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, Qwen2VLImageProcessor

    from vlmtune.testing import build_tiny
    from vlmtune.zoo.build import corpus_lines

    out = Path(out)
    published = json.loads(config_file().read_text(encoding="utf-8"))
    build_tiny("qwen2_vl", out, corpus=corpus_lines(Path(train_jsonl)), vocab_size=1024, seed=seed)
    processor = AutoProcessor.from_pretrained(out)
    processor.image_processor = Qwen2VLImageProcessor()  # the real defaults: 14 px patches, 2x2 merge, CLIP norm
    config = real_config(AutoConfig.from_pretrained(out), REAL[size], published["vocab_size"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config)
    for stale in out.glob("model*.safetensors*"):
        stale.unlink()
    model.config.use_cache = True
    model.save_pretrained(out)
    processor.save_pretrained(out)
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for n, p in model.named_parameters() if ".visual." in f".{n}")
    head = model.lm_head.weight.numel()
    names = ("text_hidden", "text_layers", "text_heads", "text_kv_heads", "text_ffn", "vision_embed",
             "vision_layers", "vision_heads")
    return {"size": size, "family": "qwen2_vl", "published_config": CONFIG.name, "total_params": total,
            "vision_params": vision, "language_params": total - vision, "lm_head_params": head,
            "vocab_size": config.text_config.vocab_size, "tokenizer_size": len(processor.tokenizer),
            "tied_embeddings": bool(config.tie_word_embeddings),
            "dims": dict(zip(names, REAL[size])), "published_dims": CUT_FROM,
            "image_processor": {k: v for k, v in processor.image_processor.to_dict().items()
                                if k in ("size", "patch_size", "merge_size", "temporal_patch_size")}}
