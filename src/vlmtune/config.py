"""The one typed run configuration: YAML file + ``key.sub=value`` overrides -> ``RunConfig``.

Every command reads a ``RunConfig``; the CLI and YAML derive from these classes, so a field
added here is a field users can set. Invalid input raises :class:`ConfigError` naming the
file, the line and the dotted field, e.g. ``cfg.yaml:7: method.r: must be >= 1, got 0``.

Relative paths in a config resolve against the current working directory (as in
LLaMA-Factory and TRL); the resolved config saved in a run directory holds absolute paths.

Example:
    >>> cfg = load_config("cfg.yaml", ["method.r=16", "train.max_steps=50"])  # doctest: +SKIP
    >>> cfg.method.r
    16
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vlmtune.config_errors import explain_validation_error, yaml_line_index
from vlmtune.errors import ConfigError, InputError

ROLES = ("vision", "projector", "language")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    path: str = Field(description="local checkpoint dir, hub id, or zoo name (vlmtune/tiny-shapes)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    trust_remote_code: bool = False
    revision: str | None = None
    attn_implementation: str | None = None
    chat_template: str | None = Field(None, description="Jinja chat template file that replaces the "
                                      "checkpoint's (labels, prompts and checks all use it)")


class MethodConfig(_Section):
    kind: Literal["full", "freeze", "lora", "dora", "qlora"] = "lora"
    r: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    targets: list[str] | Literal["all-linear"] | None = None  # None: the family's default
    lora_on: list[Literal["vision", "projector", "language"]] = ["language"]
    # mixture-of-experts decoders: also adapt the experts' fused weights (PEFT target_parameters);
    # default off: LoRA adapts attention and dense MLP linears only
    experts: bool = False
    rslora: bool = False
    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True

    @property
    def uses_adapter(self) -> bool:
        return self.kind in ("lora", "dora", "qlora")


class TrainableConfig(_Section):
    """Full weights that train (besides adapters). ``None`` = the method's default:
    everything for ``full``, nothing for adapter methods and ``freeze``."""

    vision: bool | None = None
    projector: bool | None = None
    language: bool | None = None


class DataConfig(_Section):
    train: str | None = None
    val: str | None = None
    root: str | None = None  # images resolve inside this dir; default: the JSONL's dir
    max_length: int = Field(2048, ge=8)
    max_samples: int | None = Field(None, ge=1)
    allow_outside_root: bool = False
    # images above this many pixels are shrunk on load (resize), or their sample skipped / refused;
    # default 4096x4096, far below PIL's decompression-bomb limit (vlmtune.data.images)
    max_image_pixels: int = Field(4096 * 4096, ge=64 * 64)
    oversized_images: Literal["resize", "skip", "error"] = "resize"
    general: str | None = None  # general-ability training data (the forgetting control)
    mix_general: float = Field(0.0, ge=0.0, lt=1.0)  # share of the training mix drawn from `general`
    # video samples ({"type": "video"} parts): frames taken per second of video, and at most this many
    video_fps: float = Field(2.0, gt=0)
    video_max_frames: int = Field(32, ge=1)

    @property
    def image_cap(self) -> dict[str, Any]:
        """The pixel cap as keyword arguments of ``vlmtune.data.schema.load_samples``."""
        return {"max_image_pixels": self.max_image_pixels, "oversized_images": self.oversized_images}


class FsdpConfig(_Section):
    """FSDP2 settings (``train.distributed: fsdp``)."""

    wrap: list[str] | None = None  # layer classes sharded as units; None: the model's _no_split_modules
    reshard_after_forward: bool = True  # free gathered weights after forward (ZeRO-3-like); false: ZeRO-2-like
    cpu_offload: bool = False  # keep sharded weights, grads and optimizer state in CPU memory (GPU runs)


class TrainConfig(_Section):
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(2, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(2.0e-4, gt=0)
    # the vision tower's / projector's own rate (weights and adapters there), as ms-swift's
    # vit_lr / aligner_lr: full weights of a pretrained tower want a rate ~10x below an
    # adapter's. None: train.lr
    vision_lr: float | None = Field(None, gt=0)
    projector_lr: float | None = Field(None, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    seed: int = 0
    out_dir: str = "runs"
    checkpoint_every: int = Field(50, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    eval_every: int | None = Field(None, ge=1)  # validation loss; None: at the end only
    log_every: int = Field(1, ge=1)
    gradient_checkpointing: bool = False
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # several processes: auto = the accelerate launcher's FSDP/DeepSpeed config, else deepspeed if
    # train.deepspeed is set, else ddp; fsdp = FSDP2 for full/freeze (vlmtune.train.distributed)
    distributed: Literal["auto", "ddp", "fsdp", "deepspeed"] = "auto"
    fsdp: FsdpConfig = FsdpConfig()
    deepspeed: str | None = None  # DeepSpeed JSON (ZeRO-2/3, GPUs only), e.g. configs/deepspeed/zero2.json
    # Speed (see vlmtune.train.vision_cache, vlmtune.train.packing, vlmtune.train.steps); none changes the loss.
    vision_cache: Literal["auto", "off", "memory", "disk"] = "auto"  # reuse frozen image features
    vision_cache_max_bytes: int = Field(2 * 1024**3, ge=0)  # beyond this, new images are not cached
    packing: bool = False  # one padding-free row per micro-batch, attention kept inside each sample
    group_by_length: bool = False  # micro-batches of similar length (less padding)
    input_cache_max_bytes: int = Field(1024**3, ge=0)  # processed rows kept by the collator (0: off)
    # Compile each decoder layer's MLP and norms (vlmtune.train.compile): ~x1.09 per step, ~4 s to compile;
    # the loss changes by rounding only
    compile: bool = False
    # Where metrics go besides metrics.jsonl (vlmtune.train.tracking): each tracker receives params, metrics,
    # resources.json and (grids) the report; each reads its own env (MLFLOW_TRACKING_URI, WANDB_MODE, TRACKIO_DIR)
    report_to: list[Literal["tensorboard", "mlflow", "wandb", "trackio"]] = ["tensorboard"]
    project: str = Field("vlmtune", min_length=1)  # MLflow experiment / W&B or trackio project


class EvalConfig(_Section):
    """Evaluation: ``metrics`` is a list for every task or a mapping task -> list; tasks
    not named use the defaults in vlmtune.evaluate.scoring.DEFAULT_METRICS."""

    test: str | None = None  # default: data.val
    general: str | None = None  # general-ability set, scored beside the task (forgetting)
    metrics: list[str] | dict[str, list[str]] = []
    max_new_tokens: int = Field(32, ge=1)
    batch_size: int = Field(8, ge=1)
    shots: int = Field(0, ge=0)
    max_samples: int | None = Field(None, ge=1)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    merge: bool = False  # evaluate a run's adapter merged into the base instead of unmerged


class RunConfig(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model: ModelConfig
    method: MethodConfig = MethodConfig()
    trainable: TrainableConfig = TrainableConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _consistent(self) -> "RunConfig":
        m, t = self.method, self.trainable
        if self.data.mix_general > 0 and not self.data.general:
            raise ValueError("data.mix_general: needs data.general, the general-ability training set")
        if m.kind in ("freeze", "full") and not any(self.trains_role(r) for r in ROLES):
            raise ValueError(f"method.kind: {m.kind} trains nothing with every role frozen: set at least one "
                             "of trainable.vision/projector/language to true")
        d = self.train.distributed
        if d == "fsdp" and m.uses_adapter:
            raise ValueError(f"train.distributed: fsdp shards full fine-tuning (method.kind full or freeze), "
                             f"not {m.kind}; adapter runs keep a frozen base per process: use ddp")
        if d == "deepspeed" and not self.train.deepspeed:
            raise ValueError("train.deepspeed: train.distributed=deepspeed needs a DeepSpeed JSON config")
        if d in ("ddp", "fsdp") and self.train.deepspeed:
            raise ValueError(f"train.deepspeed: set, but train.distributed is {d}; use deepspeed or auto")
        if m.uses_adapter:
            both = [r for r in m.lora_on if getattr(t, r)]
            if both:
                raise ValueError(f"trainable.{both[0]}: cannot fully train a role that also "
                                 f"carries LoRA adapters (method.lora_on)")
        if self.train.vision_cache in ("memory", "disk") and not self.vision_frozen:
            raise ValueError(f"train.vision_cache: {self.train.vision_cache} needs a frozen vision tower and "
                             "projector (no trainable.vision/projector, no method.lora_on vision/projector)")
        return self

    @property
    def vision_frozen(self) -> bool:
        """Nothing trains in the vision tower or the projector (their output is a function of the image)."""
        return not any(self.trains_role(r) or (self.method.uses_adapter and r in self.method.lora_on)
                       for r in ("vision", "projector"))

    def trains_role(self, role: str) -> bool:
        """Whether the full weights of ``role`` train, with the method's default applied."""
        value = getattr(self.trainable, role)
        return (self.method.kind == "full") if value is None else value

    @property
    def run_dir(self) -> Path:
        return Path(self.train.out_dir) / self.name


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["method.r=16", "train.max_steps=null"]`` -> nested dict; values parse as YAML."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not p for p in key.split(".")):
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        try:
            node[leaf] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({getattr(err, 'problem', err)}); "
                              "quote it, e.g. key='\"text: with colon\"'") from None
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Read a YAML mapping and the line of each dotted key (for error messages)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config: {err.strerror}", file=path) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        raise ConfigError(f"invalid YAML: {getattr(err, 'problem', err)}", file=path,
                          line=None if line is None else line + 1) from None
    if not isinstance(data, dict):
        raise ConfigError("the config must be a YAML mapping (key: value)", file=path)
    return data, yaml_line_index(text)


def build_config(data: dict[str, Any], *, source: str | Path = "<config>",
                 lines: dict[str, int] | None = None) -> RunConfig:
    """Validate a plain dict into a RunConfig, raising one ConfigError for the first problem."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        field, message = explain_validation_error(err, RunConfig)
        line = (lines or {}).get(field)
        raise ConfigError(message, file=source, line=line, field=field) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    data, lines = read_yaml(path)
    extra = parse_overrides(overrides or [])
    for key in _dotted_keys(extra):  # an overridden field is no longer on its YAML line
        lines.pop(key, None)
    return build_config(_merge(data, extra), source=path, lines=lines)


@contextmanager
def located(path: str | Path, overrides: list[str] | None = None) -> Iterator[None]:
    """Give a config error raised after loading (a check that needs the model, the family or
    the launcher: ``train.packing: not supported for Gemma3``) the file and line of its key.

    A key set by a ``key=value`` override is located on the command line instead.
    """
    try:
        yield
    except InputError as err:
        key = err.field or err.message.split(":", 1)[0]
        if err.file is not None or not re.fullmatch(r"[a-z_]+(\.[a-z_0-9]+)+", key):
            raise
        message = err.message.removeprefix(f"{key}:").strip()
        overridden = [o for o in overrides or [] if o.split("=", 1)[0].strip() == key]
        if overridden:
            raise type(err)(message, file=f"command-line override {overridden[-1]!r}", field=key) from None
        try:
            line = read_yaml(path)[1].get(key)
        except InputError:
            line = None
        raise type(err)(message, file=path, line=line, field=key) from None


def apply_overrides(cfg: RunConfig, overrides: list[str], *, source: str | Path = "<config>") -> RunConfig:
    """A copy of ``cfg`` with ``key.sub=value`` overrides applied and validated."""
    if not overrides:
        return cfg
    return build_config(_merge(cfg.model_dump(), parse_overrides(overrides)), source=source)


def _dotted_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        keys.append(prefix + key)
        if isinstance(value, dict):
            keys += _dotted_keys(value, prefix + key + ".")
    return keys


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
