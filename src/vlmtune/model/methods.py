"""full | freeze | lora | dora | qlora: how the base loads and what trains.

One function, :func:`prepare`, decides both, so the training loop is the same for every
method: it trains whatever has ``requires_grad`` and saves adapters or full weights.

- ``full``: every role trains unless ``trainable.<role>: false`` (freeze the vision tower).
- ``freeze``: only the roles set true in ``trainable`` train.
- ``lora`` / ``dora`` (``method.rslora`` for rank-stabilised scaling): PEFT adapters on the
  linear layers named by ``method.targets`` inside the roles of ``method.lora_on``;
  ``trainable`` roles train fully beside them (PEFT ``modules_to_save``).
- ``qlora``: the language model loads 4-bit (NF4/FP4, optional double quantisation) or
  8-bit through bitsandbytes, vision tower, projector and LM head stay unquantised, then LoRA.

Example:
    >>> model, processor, family = prepare(cfg)  # doctest: +SKIP
    >>> count_parameters(model)["trainable"] < count_parameters(model)["total"]
    True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vlmtune.config import ROLES, RunConfig
from vlmtune.errors import ConfigError
from vlmtune.families.base import Family, registry_name
from vlmtune.model.load import load_base, logical_numel
# Function-level imports: peft loads only when adapters are attached.


def prepare(cfg: RunConfig, *, device: torch.device | None = None) -> tuple[nn.Module, Any, Family]:
    """Load the base as ``cfg.method`` requires and mark what trains."""
    model, processor, family = load_base(cfg.model, quantization=quantization_of(cfg),
                                         device=device)
    model.config.use_cache = False
    if cfg.method.kind == "qlora":
        from peft import prepare_model_for_kbit_training
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    for param in model.parameters():
        param.requires_grad_(False)
    if cfg.method.uses_adapter:
        model = _add_adapters(model, cfg, family)
    else:
        for name, param in model.named_parameters():
            param.requires_grad_(cfg.trains_role(family.role_of(name) or "language"))
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"nothing trains: method.kind={cfg.method.kind} with every role frozen; set "
                          "trainable.<role>: true for at least one of vision, projector, language",
                          field="trainable")
    if cfg.train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, processor, family


def quantization_of(cfg: RunConfig) -> dict | None:
    """bitsandbytes settings for QLoRA (built into a BitsAndBytesConfig by load_base)."""
    if cfg.method.kind != "qlora":
        return None
    return {"bits": cfg.method.bits, "quant_type": cfg.method.quant_type,
            "double_quant": cfg.method.double_quant}


def lora_target_names(model: nn.Module, family: Family, roles: list[str],
                      targets: list[str] | str | None) -> list[str]:
    """Full names of the linear modules that get adapters.

    ``targets``: leaf names (``q_proj``), ``"all-linear"``, or None for the defaults: the
    family's decoder projections in the language model and every linear layer of the
    vision tower or projector (their layer names differ per family: ``qkv``, ``fc1``...).
    The LM head never gets an adapter (PEFT's ``all-linear`` makes the same exception).
    """
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or name.split(".")[-1] == "lm_head":
            continue
        role = family.role_of(name)
        if role not in roles:
            continue
        leaves = targets if targets is not None else (family.lora_targets if role == "language" else "all-linear")
        if leaves == "all-linear" or name.split(".")[-1] in leaves:
            names.append(name)
    return names


def role_modules(model: nn.Module, family: Family, role: str) -> tuple[list[str], list[str]]:
    """Smallest set of module names whose parameters are exactly ``role``'s.

    Returns ``(modules, loose_params)``: loose parameters sit directly on a module shared
    with other roles (LLaVA-NeXT's ``image_newline``) and cannot be wrapped by PEFT.
    """
    modules: list[str] = []
    loose: list[str] = []

    def visit(prefix: str, module: nn.Module) -> None:
        owners = {family.role_of(f"{prefix}{n}") for n, _ in module.named_parameters()}
        if owners == {role} and not isinstance(module, (nn.ModuleList, nn.ModuleDict)) and prefix:
            modules.append(prefix.rstrip("."))
            return
        if role not in owners:
            return
        for name, param in module.named_parameters(recurse=False):
            if family.role_of(prefix + name) == role:
                loose.append(prefix + name)
        for name, child in module.named_children():
            visit(f"{prefix}{name}.", child)

    visit("", model)
    return modules, loose


def expert_parameters(model: nn.Module, family: Family) -> list[str]:
    """Full names of the language model's fused expert weights (3-D parameters of an
    ``experts`` module: transformers 5 stores a MoE layer's experts as one tensor each)."""
    names = []
    for module_name, module in model.named_modules():
        if module_name.split(".")[-1] != "experts" or family.role_of(module_name) != "language":
            continue
        names += [f"{module_name}.{n}" for n, p in module.named_parameters(recurse=False) if p.ndim == 3]
    return names


def _add_adapters(model: nn.Module, cfg: RunConfig, family: Family) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    m = cfg.method
    targets = lora_target_names(model, family, list(m.lora_on), m.targets)
    found = {name.split(".")[-1] for name in targets}
    missing = [t for t in m.targets if t not in found] if isinstance(m.targets, list) else []
    if not targets or missing:
        linear = sorted({name.split(".")[-1] for name in lora_target_names(model, family, list(m.lora_on),
                                                                             "all-linear")})
        raise ConfigError(f"no linear layer named {missing or m.targets or list(family.lora_targets)} in roles "
                          f"{list(m.lora_on)}; layers there: {', '.join(linear[:12])}", field="method.targets")
    to_save: list[str] = []
    for role in ROLES:
        if cfg.trains_role(role):
            modules, loose = role_modules(model, family, role)
            to_save += modules
            if loose:
                print(f"note: {', '.join(loose)} cannot train beside adapters (not in a module of its own)")
    experts = expert_parameters(model, family) if m.experts else []
    if m.experts and not experts:
        raise ValueError("method.experts: this model has no fused expert weights (not a mixture of experts)")
    lora = LoraConfig(r=m.r, lora_alpha=m.alpha, lora_dropout=m.dropout, target_modules=targets,
                      target_parameters=experts or None,
                      use_dora=m.kind == "dora", use_rslora=m.rslora,
                      modules_to_save=to_save or None, bias="none")
    return get_peft_model(model, lora)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable and total parameter counts of the model as deployed (base + adapters);
    a 4-bit weight counts as its logical size."""
    trainable = total = 0
    for name, param in model.named_parameters():
        if ".original_module." in name:  # PEFT keeps the frozen original beside a trained copy
            continue
        n = logical_numel(param)
        total += n
        if param.requires_grad:
            trainable += n
    return {"trainable": trainable, "total": total}


def _role(name: str, family: Family) -> str:
    """The role of a parameter of the (possibly PEFT- or DDP-wrapped) model; adapters and
    ``modules_to_save`` copies belong to the role of the layer they sit on."""
    return family.role_of(registry_name(name).replace(".modules_to_save.default", "")) or "language"


def param_groups(model: nn.Module, family: Family, lr: float, rates: dict[str, float | None]) -> list[dict]:
    """The trainable parameters as optimizer groups: one per learning rate, where ``rates``
    gives a role its own (``{"vision": 2e-5}``; None: ``lr``). One group when none is set."""
    groups: dict[float, list[nn.Parameter]] = {lr: []}  # train.lr's group first (the logged rate)
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault(rates.get(_role(name, family)) or lr, []).append(param)
    return [{"params": params, "lr": rate} for rate, params in groups.items() if params or rate == lr]


def trainable_by_role(model: nn.Module, family: Family) -> dict[str, int]:
    """Trainable parameters per role ('adapter' for LoRA weights), for reports and tests."""
    out = {role: 0 for role in (*ROLES, "adapter")}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if "lora_" in name:
            out["adapter"] += param.numel()
            continue
        out[_role(name, family)] += param.numel()
    return out
