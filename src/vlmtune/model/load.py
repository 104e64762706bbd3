"""Load a base model and its processor from a local dir, a hub id or a zoo name.

The family is known from ``config.json`` before any weight is read, so an unsupported
architecture fails fast with the list of supported ones. Remote code runs only when the
user set ``model.trust_remote_code`` (``--trust-remote-code``).

dtype ``auto``: float32 on CPU (bf16 matmuls are ~12x slower on AVX2 CPUs), bfloat16 on
a GPU that supports it, else float32.

Example:
    >>> model, processor, family = load_base(ModelConfig(path="vlmtune/tiny-shapes"))  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from vlmtune.config import ModelConfig
from vlmtune.errors import InputError
from vlmtune.families import get_family
from vlmtune.families.base import Family
# Function-level imports: transformers/peft load only when a model is loaded: the config and zoo
# helpers stay light.


def resolve_model_path(path: str) -> str:
    """Zoo names (``vlmtune/<name>``) map to the checkpoints shipped in the package."""
    from vlmtune import zoo

    return str(zoo.resolve(path)) if zoo.is_zoo_name(path) else path


def pick_dtype(name: str, device: torch.device | None = None) -> torch.dtype:
    if name != "auto":
        return getattr(torch, name)
    device = device or (torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_model_config(cfg: ModelConfig) -> tuple[Any, Family, str]:
    from transformers import AutoConfig

    path = resolve_model_path(cfg.path)
    local = Path(path)
    if local.exists() and not (local / "config.json").is_file():
        raise InputError("not a model directory (no config.json)", file=local, field="model.path")
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code, revision=cfg.revision)
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise InputError("this model needs remote code; pass --trust-remote-code (or set "
                             "model.trust_remote_code: true) if you trust it", file=path,
                             field="model.trust_remote_code") from None
        raise InputError(str(err).splitlines()[0] + _not_local(local), file=path, field="model.path") from None
    except OSError as err:
        raise InputError(f"cannot load model config: {str(err).splitlines()[0]}{_not_local(local)}", file=path,
                         field="model.path") from None
    return config, get_family(config.model_type, source=path, config=config), path


def _not_local(path: Path) -> str:
    """A path that is neither a local dir nor a reachable hub id: say both were tried (a typo in a
    local path otherwise reads like a network problem)."""
    return "" if path.exists() else f" (and there is no local directory {path})"


def _bnb_config(quantization: dict, family: Family, dtype: torch.dtype) -> Any:
    from transformers import BitsAndBytesConfig

    keep = [*family.vision, *family.projector, "lm_head"]  # only the decoder is quantised
    if quantization["bits"] == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=keep)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quantization["quant_type"],
                              bnb_4bit_use_double_quant=quantization["double_quant"],
                              bnb_4bit_compute_dtype=dtype, llm_int8_skip_modules=keep)


def load_processor(path: str, cfg: ModelConfig, family: Family | None = None) -> Any:
    """The checkpoint's processor, with ``model.chat_template`` in place of its template.

    With ``family`` (a chat-template family), the template is checked now, so one that
    cannot give correct labels is refused before any sample is read.
    """
    from transformers import AutoProcessor

    local = Path(path)
    if local.is_dir() and not any((local / name).is_file() for name in TOKENIZER_FILES):
        raise InputError(f"no tokenizer files in the model directory (one of {', '.join(TOKENIZER_FILES)}); "
                         "copy them from the model's original folder", file=path, field="model.path")
    try:
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=cfg.trust_remote_code,
                                                  revision=cfg.revision)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load the processor: {str(err).splitlines()[0][:200]}", file=path,
                         field="model.path") from None
    tok = processor.tokenizer
    if tok.pad_token is None:  # batching needs a pad token; EOS is the usual stand-in
        tok.pad_token = tok.eos_token
    if cfg.chat_template:
        set_chat_template(processor, read_chat_template(cfg.chat_template))
    if family is not None and family.prompt is None:
        check_chat_template(processor, None if cfg.chat_template else path)
    return processor


def load_processor_only(cfg: ModelConfig) -> tuple[Any, Family, set[int]]:
    """Processor, family and image token ids of ``cfg``'s model, without reading weights."""
    from vlmtune.data.encode import image_token_ids

    config, family, path = load_model_config(cfg)
    processor = load_processor(path, cfg, family)
    return processor, family, image_token_ids(processor, config)


def read_chat_template(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot read chat template {path}: {err.strerror}", field="model.chat_template") from None


def set_chat_template(processor: Any, template: str) -> None:
    """Use ``template`` for rendering (processor) and for assistant masks (tokenizer)."""
    processor.chat_template = template
    processor.tokenizer.chat_template = template


def check_chat_template(processor: Any, checkpoint: str | None) -> None:
    """Refuse (one line) a template that cannot give correct labels and prompts; ``checkpoint``
    names where it came from, None when ``model.chat_template`` set it."""
    from vlmtune.data.chat_template import TemplateRefused, template_info

    try:
        note = template_info(processor).note
    except TemplateRefused as err:
        where = {} if checkpoint is None else {"file": checkpoint}
        raise InputError(f"{err}", field="model.chat_template" if checkpoint is None else "chat_template",
                         **where) from None
    if note and note not in _NOTED:
        _NOTED.add(note)
        print(f"note: {note}", file=sys.stderr)


_NOTED: set[str] = set()  # chat-template notes already printed (each is said once)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def _from_pretrained(cls: Any, path: str, kwargs: dict[str, Any]) -> Any:
    """Weights that are missing, truncated or of another shape are one line naming the folder
    (safetensors raises ``SafetensorError``, transformers ``OSError`` or ``RuntimeError``)."""
    from safetensors import SafetensorError

    try:
        return cls.from_pretrained(path, **kwargs)
    except (OSError, SafetensorError, RuntimeError) as err:
        detail = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise InputError(f"cannot load the model weights: {detail} (missing, truncated or from another "
                         "model?)", file=path, field="model.path") from None


def load_base(cfg: ModelConfig, *, quantization: dict | None = None,
              device: torch.device | None = None, with_processor: bool = True) -> tuple[Any, Any, Family]:
    """Model (eval mode off, on ``device``), processor (None unless ``with_processor``) and
    family for ``cfg``."""
    from transformers import AutoModelForImageTextToText

    config, family, path = load_model_config(cfg)
    dtype = pick_dtype(cfg.dtype, device)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": cfg.trust_remote_code,
                              "revision": cfg.revision}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if quantization:
        kwargs["quantization_config"] = _bnb_config(quantization, family, dtype)
        if device is not None and device.type == "cuda":
            kwargs["device_map"] = {"": device.index or 0}
    model = _from_pretrained(AutoModelForImageTextToText, path, kwargs)
    if device is not None and not quantization:
        model.to(device)
    if not with_processor:
        return model, None, family
    processor = load_processor(path, cfg, family)
    check_vocab(model, processor, path)
    cast_inputs_to_model_dtype(model)
    return model, processor, family


def cast_floats(inputs: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    """Floating-point tensors (pixel values) in the model's dtype; ids and masks unchanged."""
    return {k: v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dtype != dtype else v
            for k, v in inputs.items()}


def cast_inputs_to_model_dtype(model: Any) -> None:
    """Some image processors emit a fixed dtype (Llama 4's: bfloat16) that a float32 model
    on CPU cannot multiply; cast floating inputs to the model's dtype on every forward."""
    dtype = getattr(model, "dtype", None)
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        model.register_forward_pre_hook(lambda _m, args, kwargs: (args, cast_floats(kwargs, dtype)),
                                        with_kwargs=True)


def check_vocab(model: Any, processor: Any, path: str) -> None:
    """A tokenizer with ids beyond the embedding table would index out of range mid-training."""
    rows = model.get_input_embeddings().num_embeddings
    size = len(processor.tokenizer)
    if size > rows:
        raise InputError(f"tokenizer/processor mismatch: the tokenizer has {size} tokens but the model's "
                         f"embedding has {rows} rows (processor files from another model?)", file=path,
                         field="tokenizer")


BASE_SIGNATURE = "vlmtune_base.json"


def logical_numel(param: Any) -> int:
    """Elements a parameter stands for: bitsandbytes 4-bit packs two per stored byte."""
    return param.numel() * (2 if param.__class__.__name__ == "Params4bit" else 1)


def base_signature(model: Any) -> dict[str, Any]:
    """What an adapter needs of its base: the architecture and its exact size. Two models
    with the same module names and widths (a LoRA would load silently) still differ here."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    # PEFT keeps the base copy of a fully trained module as ``original_module``: count it,
    # and skip the trained copy (``modules_to_save``) and the adapters.
    params = sum(logical_numel(p) for n, p in base.named_parameters() if "lora_" not in n
                 and ".modules_to_save." not in n)
    return {"model_type": base.config.model_type, "architectures": list(base.config.architectures or []),
            "embedding_rows": base.get_input_embeddings().num_embeddings, "parameters": int(params),
            "name_or_path": str(getattr(base.config, "_name_or_path", ""))}


def _check_signature(model: Any, adapter: Path) -> None:
    import json

    path = adapter / BASE_SIGNATURE
    if not path.is_file():
        return  # an adapter trained elsewhere: PEFT's own shape checks still apply
    saved, now = json.loads(path.read_text()), base_signature(model)
    for key in ("model_type", "embedding_rows", "parameters"):
        if saved.get(key) != now[key]:
            raise InputError(f"adapter was trained on another base model ({key}: {saved.get(key)!r}, this base: "
                             f"{now[key]!r}; trained on {saved.get('name_or_path')!r})", file=path, field=key)


def attach_adapter(model: Any, adapter: str | Path, name: str = "default") -> Any:
    """Load a PEFT adapter onto ``model`` (wrapping it on first use); a clear error if the
    adapter was trained on another base."""
    import json

    from peft import PeftModel

    config_file = Path(adapter) / "adapter_config.json"
    if not config_file.is_file():
        raise InputError("not a PEFT adapter (no adapter_config.json)", file=adapter, field="adapter")
    trained_on = json.loads(config_file.read_text()).get("base_model_name_or_path")
    _check_signature(model, Path(adapter))
    try:
        if isinstance(model, PeftModel):
            model.load_adapter(str(adapter), adapter_name=name)
            return model
        return PeftModel.from_pretrained(model, str(adapter), adapter_name=name)
    except (RuntimeError, ValueError, KeyError) as err:
        lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
        first = next((ln for ln in lines if "mismatch" in ln or "not found" in ln), lines[0] if lines else "")[:200]
        raise InputError(f"adapter does not fit this base model (it was trained on {trained_on!r}): {first}",
                         file=config_file, field="base_model_name_or_path") from None
