"""Tiny checkpoints generated for any image-text-to-text architecture transformers ships.

Why: a hand-written recipe per family cannot follow transformers' release pace. Every
architecture already has what a tiny build needs: its config class (shrunk by field
name in :mod:`vlmtune.testing.shrink`), its processor class and image/video processor
classes (from transformers' auto mappings), and, in its processing module's source, the
special tokens the processor looks for. We train a byte-level BPE carrying those tokens
(plus ``<|im_start|>``/``<|im_end|>`` for a ChatML template whose image items render the
processor's own ``image_token``), build the processor from it, then point every
``*_token_id``/``*_token_index`` field of the config at the matching processor token.
Families that need more get a short entry in :mod:`vlmtune.testing.overrides`.

Example:
    >>> build_generic("aya_vision", "/tmp/tiny-aya")        # doctest: +SKIP
    PosixPath('/tmp/tiny-aya')
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

from vlmtune.testing.overrides import Override, override_for
from vlmtune.testing.shrink import shrink_dict
from vlmtune.testing.tokenizer import TokenPlan, build_hf_tokenizer

# Literal special tokens in a processing module: <...>, <|...|>, [IMG]-style.
_LITERAL = re.compile(r"""["'](<\|?[A-Za-z_][\w\-]{0,40}\|?>|\[[A-Z][A-Z_]{1,20}\])["']""")
_TOKENIZER_ATTR = re.compile(r"""tokenizer(?:\.|, ["'])(\w+_token)\b""")
CHAT_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def chatml_template(image: str, newline: bool = True) -> str:
    """ChatML with each image item rendered as ``image`` (the processor's placeholder) and a newline."""
    return (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}" + image.replace("'", "\\'") + ("\n" if newline else "") + "{% elif c['type'] == 'text' %}"
        "{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


def _class(name: str | dict | tuple | None):
    import transformers

    if isinstance(name, dict):
        name = name.get("torchvision") or name.get("pil")
    if isinstance(name, (tuple, list)):
        name = next((n for n in name if n), None)
    return getattr(transformers, name) if name else None


def processor_classes(model_type: str) -> dict[str, Any]:
    """The processor class and its sub-processor classes for ``model_type`` (None where absent)."""
    # the *_auto modules merge their extra entries into the mappings on import: use theirs
    from transformers.models.auto.feature_extraction_auto import FEATURE_EXTRACTOR_MAPPING_NAMES
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES
    from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING_NAMES

    processor = _class(PROCESSOR_MAPPING_NAMES.get(model_type))
    # a processor shared across types (glm4v_moe uses Glm4vProcessor): its own type's sub-processors
    owner = processor.__module__.split(".")[-2] if processor else model_type
    out = {"processor": processor}
    for name, table in (("image_processor", IMAGE_PROCESSOR_MAPPING_NAMES),
                        ("video_processor", VIDEO_PROCESSOR_MAPPING_NAMES),
                        ("feature_extractor", FEATURE_EXTRACTOR_MAPPING_NAMES)):
        out[name] = _class(table.get(model_type) or table.get(owner))
    return out


def source_tokens(processor_cls) -> tuple[list[str], list[str]]:
    """(literal special tokens, tokenizer attribute names) read from the processor's module."""
    text = inspect.getsource(inspect.getmodule(processor_cls))
    literals = list(dict.fromkeys(_LITERAL.findall(text)))
    attrs = [a for a in dict.fromkeys(_TOKENIZER_ATTR.findall(text))
             if a not in ("bos_token", "eos_token", "pad_token", "unk_token", "sep_token", "cls_token")]
    return literals, attrs


def token_plan(processor_cls, ov: Override) -> TokenPlan:
    """Special tokens: ChatML's, the processor module's literals, and one per tokenizer attribute."""
    literals, attrs = source_tokens(processor_cls)
    named = {a: f"<|{a}|>" for a in attrs}
    named.update(ov.named_tokens)
    for a, default in ov.named_tokens.items():
        named[a] = default
    tokens = (*CHAT_TOKENS, *literals, *ov.extra_tokens, *named.values())
    return TokenPlan(tokens=tuple(dict.fromkeys(tokens)), eos="<|im_end|>", pad="<|endoftext|>",
                     bos=ov.bos, named=named)


def _sub_processor(cls, ov: Override, size: int, config: dict):
    from vlmtune.testing.shrink_image import match_config, shrink_image_processor

    if cls is None:
        return None
    proc = cls(**ov.image_kwargs(size)) if ov.image_kwargs else cls()
    match_config(proc, lambda name: _find(config, name))
    shrink_image_processor(proc, size)
    return proc


_PROCESSOR_ALIASES = {"img_size": "image_size"}


def _find(d: dict, key: str):
    """A config field by name: top level first, then sub-configs (vision before others)."""
    if key in d and not isinstance(d[key], dict):
        return d[key]
    subs = sorted((k for k, v in d.items() if isinstance(v, dict) and k not in ("id2label", "label2id")),
                  key=lambda k: "vision" not in k)
    for k in subs:
        found = _find(d[k], key)
        if found is not None:
            return found
    return None


def build_processor(model_type: str, ov: Override, size: int, config: dict, vocab_size: int = 1024):
    """The architecture's own processor with a locally trained tokenizer and ChatML template.

    Processor arguments named like config fields (``patch_size``,
    ``vision_feature_select_strategy``...) take the tiny config's values."""
    classes = processor_classes(model_type)
    if classes["processor"] is None:
        raise ValueError(f"transformers has no processor class for {model_type!r}")
    cls = classes["processor"]
    tokenizer = build_hf_tokenizer(token_plan(cls, ov), None, vocab_size)
    params = inspect.signature(cls.__init__).parameters
    kwargs = {"tokenizer": tokenizer}
    for name in params:
        key = _PROCESSOR_ALIASES.get(name, name)
        if name not in ("self", "tokenizer", "chat_template", "kwargs") and _find(config, key) is not None:
            kwargs[name] = _find(config, key)
    kwargs.update(ov.processor_kwargs)
    for name in ("image_processor", "video_processor", "feature_extractor"):
        if name in params:
            kwargs[name] = _sub_processor(classes[name], ov, size, config) if name != "feature_extractor" else (
                classes[name]() if classes[name] else None)
    processor = cls(**kwargs)
    image = ov.placeholder(processor) if ov.placeholder else processor.image_token
    processor.chat_template = ov.template or chatml_template(image, ov.newline_after_image)
    return processor


_TOKEN_FIELD = re.compile(r"(\w+?)(?:_token)?_(?:id|index)")
_ROLE = {"bos": "bos_token_id", "eos": "eos_token_id", "pad": "pad_token_id"}


def _token_id(name: str, processor, tokenizer) -> int | None:
    """Id of the processor's ``<name>_token`` (its ``_id`` attribute, or its string's id)."""
    if name in _ROLE:
        return getattr(tokenizer, _ROLE[name])
    for owner in (processor, tokenizer):
        tid = getattr(owner, f"{name}_token_id", None)
        if isinstance(tid, int):
            return tid
        text = getattr(owner, f"{name}_token", None)
        if isinstance(text, str):
            tid = tokenizer.convert_tokens_to_ids(text)
            if isinstance(tid, int) and tid != tokenizer.unk_token_id:
                return tid
    return None


def wire_tokens(d: dict, processor, tokenizer) -> dict:
    """Point every token-id field of a config dict at the processor's tokens.

    A field the processor does not know (e.g. an unused ``video_token_id``) gets a fresh
    special token of its own, so no id is left pointing past the tiny vocabulary.
    """
    out = {}
    for key, value in d.items():
        match = _TOKEN_FIELD.fullmatch(key) if isinstance(key, str) else None
        if key in ("id2label", "label2id"):
            out[key] = value
        elif isinstance(value, dict):
            out[key] = wire_tokens(value, processor, tokenizer)
        elif match and value is None:  # unset by default (MiniCPM-V): the processor's token if it has one
            out[key] = _token_id(match.group(1), processor, tokenizer)
        elif match and (isinstance(value, int) and not isinstance(value, bool) or isinstance(value, list)):
            tid = _token_id(match.group(1), processor, tokenizer)
            if tid is None and (isinstance(value, list) or value >= 0):
                tokenizer.add_special_tokens({"additional_special_tokens": [f"<|{match.group(1)}|>"]},
                                             replace_extra_special_tokens=False)
                tid = tokenizer.convert_tokens_to_ids(f"<|{match.group(1)}|>")
            out[key] = value if tid is None else tid
        else:
            out[key] = value
    return out


def _set_image_size(d: dict, grid: int) -> int | None:
    """Vision sub-configs with ``image_size`` and ``patch_size`` get ``grid`` patches a side."""
    found = None
    patch = d.get("patch_size")
    if isinstance(d.get("image_size"), int) and isinstance(patch, int):
        d["image_size"] = patch * grid
        found = d["image_size"]
    for value in d.values():
        if isinstance(value, dict):
            found = _set_image_size(value, grid) or found
    return found


def _patch_size(d: dict) -> int | None:
    if isinstance(d.get("patch_size"), int):
        return d["patch_size"]
    for value in d.values():
        if isinstance(value, dict) and (p := _patch_size(value)):
            return p
    return None


def tiny_config(model_type: str, processor_factory, ov: Override, hidden: int, layers: int):
    """(processor, config): the shrunk config of ``model_type`` wired to its processor's tokens."""
    from transformers import AutoConfig

    base = AutoConfig.for_model(model_type)
    for key, sub in getattr(base, "sub_configs", {}).items():  # text-only defaults (Gemma 4): add the tower
        if "vision" in key and getattr(base, key, None) is None and isinstance(sub, type):
            setattr(base, key, sub())
    d = shrink_dict(base.to_dict(), width=hidden, layers=layers, vocab=1 << 30)
    size = _set_image_size(d, ov.grid) or (_patch_size(d) or 16) * ov.grid
    processor = processor_factory(size, d)
    tok = processor.tokenizer
    d = wire_tokens(d, processor, tok)
    d = shrink_dict(d, width=hidden, layers=layers, vocab=len(tok))
    d = ov.apply_config(d, processor)
    if any("mrope_section" in _modeling_source(mt) for mt in {model_type, *_sub_types(d)}):
        _default_mrope(d)
    return processor, type(base).from_dict(d)


def _sub_types(d: dict) -> set[str]:
    return {v["model_type"] for v in d.values() if isinstance(v, dict) and isinstance(v.get("model_type"), str)}


def _modeling_source(model_type: str) -> str:
    """Source of the modeling module of ``model_type`` (or of a sub-config type), "" if none."""
    import importlib

    from transformers.models.auto.configuration_auto import model_type_to_module_name

    name = model_type_to_module_name(model_type)
    try:
        return inspect.getsource(importlib.import_module(f"transformers.models.{name}.modeling_{name}"))
    except (ImportError, OSError):
        return ""


def _default_mrope(d: dict) -> None:
    """Models that read ``mrope_section`` with a built-in default sized for the real head dim
    (GLM-4V's [8, 12, 12]) get one sized for the tiny rotary half-dim."""
    from vlmtune.testing.spec import mrope_section

    for key, value in d.items():
        if not isinstance(value, dict) or key in ("id2label", "label2id"):
            continue
        rope = value.get("rope_parameters")
        if isinstance(rope, dict) and "mrope_section" not in rope and value.get("num_attention_heads"):
            head = value.get("head_dim") or value["hidden_size"] // value["num_attention_heads"]
            rotary = int(head * (rope.get("partial_rotary_factor") or value.get("partial_rotary_factor") or 1))
            value["rope_parameters"] = {**rope, "mrope_section": mrope_section(rotary)}
        else:
            _default_mrope(value)


_MISMATCH = re.compile(r"tokens: (\d+), features:? (\d+)")
_SEQ_ATTRS = ("image_seq_length", "image_seq_len", "num_image_tokens")
PROBE = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What shape?"}]}]


def probe_batch(processor) -> dict:
    """One chat turn with one 64x48 image, as the processor encodes it."""
    import numpy as np
    from PIL import Image

    image = Image.fromarray((np.random.RandomState(0).rand(48, 64, 3) * 255).astype("uint8"))
    text = processor.apply_chat_template(PROBE, tokenize=False, add_generation_prompt=True)
    batch = dict(processor(text=[text], images=[[image]], return_tensors="pt"))
    batch.pop("labels", None)
    return {k: v.float() if hasattr(v, "is_floating_point") and v.is_floating_point() else v
            for k, v in batch.items()}


def fit_image_tokens(model, processor) -> None:
    """Processors that insert a fixed number of tokens per image (``image_seq_length``...)
    default to the real model's count; set it to what the tiny model's vision path yields,
    read from the model's own features/tokens mismatch check on a probe image."""
    import torch

    attr = next((a for a in _SEQ_ATTRS if isinstance(getattr(processor, a, None), int)), None)
    side = attr is None and isinstance(getattr(processor, "patch_size", None), int)  # Cohere2: tokens a side
    attr = "patch_size" if side else attr
    if attr is None:
        return
    for _ in range(2):
        try:
            with torch.no_grad():
                model(**probe_batch(processor))
            return
        except ValueError as err:
            match = _MISMATCH.search(str(err))
            if not match:
                raise
            tokens, features = int(match.group(1)), int(match.group(2))
            per_image = getattr(processor, attr) ** (2 if side else 1)
            if side and tokens % per_image:
                raise
            crops = max(1, round(tokens / per_image))
            fitted = max(1, features // crops)
            setattr(processor, attr, int(fitted**0.5) if side else fitted)
            if side:  # Cohere2 reads it back from its image processor when reloaded
                processor.image_processor.patch_size = processor.patch_size


def build_generic(model_type: str, out_dir: str | Path, *, hidden: int = 32, layers: int = 2,
                  seed: int = 0, vocab_size: int = 1024) -> Path:
    """Write a tiny random checkpoint of any supported ``model_type`` (config + processor)."""
    from vlmtune.testing.init import generation_config, init_model

    ov = override_for(model_type)
    processor, config = tiny_config(
        model_type, lambda size, d: build_processor(model_type, ov, size, d, vocab_size), ov, hidden, layers)
    model = init_model(config, seed, ov.post_init)
    fit_image_tokens(model, processor)
    model.generation_config = generation_config(processor.tokenizer, ())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
