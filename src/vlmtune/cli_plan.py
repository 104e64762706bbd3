"""``vlmtune plan``: the memory plan's command line (flags, or a run config's settings).

Why its own file: every setting that changes memory is a flag (see
``vlmtune.diagnose.memory_plan.Workload``), too many to sit in ``cli.py``. A run config
(``vlmtune plan CONFIG.yaml``) supplies the same settings the run would use; flags given
on the command line override them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

_DTYPES = {"bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2, "fp32": 4, "float32": 4}


def from_run_config(path: Path) -> dict[str, Any]:
    """Workload fields (and ``model``, ``method``, ``data``) from a vlmtune run config."""
    from vlmtune.config import load_config
    from vlmtune.diagnose.preflight import workload_fields

    return workload_fields(load_config(path))


def _data_plans(model: str, data: str, root: Optional[str], shapes: Any, work: Any, methods: tuple[str, ...],
                gpu_bytes: Optional[int]) -> list[Any]:
    """Plans at the data's longest, p95 and p50 lengths (images per sample: the data's most)."""
    from vlmtune.diagnose.data_lengths import data_workloads
    from vlmtune.diagnose.memory_plan import plan_memory

    plans = []
    for case, case_work in data_workloads(model, data, root, shapes, work).items():
        for p in plan_memory(shapes, case_work, gpu_bytes=gpu_bytes, methods=methods):
            p.case = case
            plans.append(p)
    return plans


def _targets(text: Optional[str]) -> Any:
    if text is None:
        return None
    return "all-linear" if text == "all-linear" else [t.strip() for t in text.split(",") if t.strip()]


def plan(config: Optional[Path] = typer.Argument(None, help="a vlmtune run config YAML (its settings; flags override)"),
         model: Optional[str] = typer.Option(None, "--model", help="config.json, model dir, zoo name or cached hub id "
                                             "(any VLM or text LM; remote-code configs are read as data)"),
         gpu_mem: Optional[str] = typer.Option(None, "--gpu-mem", help="memory per GPU, e.g. 80GiB, 24GB"),
         seq: Optional[int] = typer.Option(None, "--seq", help="tokens per sample, image tokens included; with "
                                           "--data the max_length (default: 2048)"),
         batch: Optional[int] = typer.Option(None, "--batch", help="micro-batch per GPU (default: 1)"),
         grad_accum: Optional[int] = typer.Option(None, "--grad-accum", help="micro-batches per optimizer step; "
                                                  ">1 keeps the gradients alive through the later ones (default: 1)"),
         method: Optional[str] = typer.Option(None, "--method",
                                              help="all|full|freeze|lora|dora|qlora4|qlora8 (default: all)"),
         lora_r: Optional[int] = typer.Option(None, "--lora-r", help="default 16"),
         lora_targets: Optional[str] = typer.Option(None, "--lora-targets", help="comma-separated leaf names or "
                                                    "all-linear (default: the family's default)"),
         lora_dropout: Optional[float] = typer.Option(None, "--lora-dropout", help="[0.05]"),
         modules_to_save: Optional[str] = typer.Option(None, "--modules-to-save", help="e.g. embed_tokens,lm_head"),
         images: Optional[int] = typer.Option(None, "--images", help="images per sample (default: 1)"),
         image_size: Optional[int] = typer.Option(None, "--image-size", help="image side in pixels"),
         dtype: Optional[str] = typer.Option(None, "--dtype", help="bf16|fp16|fp32 weights (default: bf16)"),
         no_master_weights: bool = typer.Option(False, "--no-master-weights",
                                                help="AdamW moments in the weight dtype, no fp32 master copy"),
         checkpointing: bool = typer.Option(False, "--gradient-checkpointing"),
         activation_offload: bool = typer.Option(False, "--activation-offload",
                                                 help="checkpointed layer inputs kept in CPU memory"),
         optim: Optional[str] = typer.Option(None, "--optim",
                                             help="adamw|adamw8bit|paged_adamw8bit|sgd (default: adamw)"),
         quant: Optional[str] = typer.Option(None, "--quant", help="4-bit kind: bnb4|nf4|gptq4 (default: bnb4)"),
         no_kbit_upcast: bool = typer.Option(False, "--no-kbit-upcast",
                                             help="QLoRA without PEFT's fp32 upcast of unquantized weights"),
         bnb_keeps_inputs: bool = typer.Option(False, "--bnb-keeps-inputs", help="bitsandbytes < 0.43.2: "
                                               "every 4-bit matmul keeps its input for the backward"),
         bnb_fp16_state: bool = typer.Option(False, "--bnb-fp16-state", help="4-bit weights quantized from fp16 "
                                             "(bitsandbytes < 0.43.0, Lightning Fabric) in a bf16 model: each "
                                             "dequantized weight is copied to bf16"),
         quantize_head: bool = typer.Option(False, "--quantize-head", help="QLoRA-4: the untied LM head is 4-bit "
                                            "too (Lightning Fabric's plugin replaces every Linear)"),
         repeat_kv: bool = typer.Option(False, "--repeat-kv", help="the training code copies K/V to every query "
                                        "head before attention (lit-gpt)"),
         mlp_act: Optional[str] = typer.Option(None, "--mlp-act", help="the MLP activation as the training code "
                                               "runs it, a transformers ACT2FN name, e.g. gelu_pytorch_tanh for a "
                                               "fused F.gelu (default: the config's hidden_act)"),
         gpus: Optional[int] = typer.Option(None, "--gpus", help="default 1"),
         zero: Optional[int] = typer.Option(None, "--zero", help="ZeRO stage 0|2|3 (default: 0)"),
         attn: Optional[str] = typer.Option(None, "--attn", help="eager|sdpa|flash (default: sdpa)"),
         loss: Optional[str] = typer.Option(None, "--loss", help="vlmtune|hf|model|chunked (default: vlmtune)"),
         answer_tokens: Optional[int] = typer.Option(None, "--answer-tokens", help="labelled tokens per sample: "
                                                     "vlmtune's loss keeps only their logits (default: all of --seq)"),
         measure: Optional[str] = typer.Option(None, "--measure",
                                               help="allocated|reserved|device (default: device on cuda)"),
         device: Optional[str] = typer.Option(None, "--device", help="cuda|cpu (default: cuda)"),
         data: Optional[Path] = typer.Option(None, "--data", help="training JSONL: plan its longest sample, p95 "
                                             "and p50 lengths as the model's processor encodes them"),
         data_root: Optional[Path] = typer.Option(None, "--data-root", help="image root for --data"),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """Predict peak training memory per method from config.json alone (no weights)."""
    model, chosen, fields, data_file, root = _settings(dict(locals()))
    _show(model, chosen, fields, data_file, root, gpu_mem, as_json)


def _settings(opts: dict[str, Any]) -> tuple[str, str, dict[str, Any], Any, Any]:
    """(model, method, Workload fields, data, data_root): the run config's, then the flags'."""
    from vlmtune.diagnose.memory_plan import ALL_METHODS
    from vlmtune.errors import InputError

    fields = from_run_config(opts["config"]) if opts["config"] else {}
    picked = {k: opts[k] or fields.get(k) for k in ("model", "data", "data_root", "method")}
    for key in picked:
        fields.pop(key, None)
    if not picked["model"]:
        raise InputError("give --model (config.json, model dir or cached hub id) or a run config", field="--model")
    dtype, quant, saved = opts["dtype"], opts["quant"], opts["modules_to_save"]
    if dtype and dtype not in _DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; choose bf16, fp16 or fp32", field="--dtype")
    flags = {k: opts[k] for k in ("seq", "batch", "lora_r", "lora_dropout", "images", "image_size", "optim", "gpus",
                                  "zero", "attn", "loss", "answer_tokens", "measure", "device", "mlp_act",
                                  "grad_accum")}
    flags.update(lora_targets=_targets(opts["lora_targets"]), quant={"nf4": "bnb4"}.get(quant or "", quant),
                 weight_bytes=_DTYPES.get(dtype) if dtype else None,
                 modules_to_save=[m.strip() for m in saved.split(",")] if saved else None)
    fields.update({k: v for k, v in flags.items() if v is not None})
    for flag, name, value in (("no_master_weights", "master_weights", False),
                              ("checkpointing", "gradient_checkpointing", True),
                              ("activation_offload", "activation_offload", True),
                              ("no_kbit_upcast", "kbit_upcast", False),
                              ("bnb_keeps_inputs", "bnb_keeps_inputs", True),
                              ("bnb_fp16_state", "bnb_fp16_state", True),
                              ("quantize_head", "quantize_head", True),
                              ("repeat_kv", "repeat_kv", True)):
        if opts[flag]:
            fields[name] = value
    chosen = picked["method"] or "all"
    if chosen != "all" and chosen not in ALL_METHODS:
        raise InputError(f"unknown method {chosen!r}; choose from all, {', '.join(ALL_METHODS)}", field="--method")
    return picked["model"], chosen, fields, picked["data"], picked["data_root"]


def _show(model: str, chosen: str, fields: dict[str, Any], data: Any, root: Any, gpu_mem: Optional[str],
          as_json: bool) -> None:
    from vlmtune.diagnose.memory_plan import METHODS, Workload, model_shapes, parse_size, plan_memory, vision_share
    from vlmtune.diagnose.render import plan_table

    work = Workload(**fields)
    shapes = model_shapes(model)
    methods = METHODS if chosen == "all" else (chosen,)
    gpu_bytes = parse_size(gpu_mem) if gpu_mem else None
    if data:
        plans = _data_plans(model, str(data), str(root) if root else None, shapes, work, methods, gpu_bytes)
    else:
        plans = plan_memory(shapes, work, gpu_bytes=gpu_bytes, methods=methods)
    if as_json:
        typer.echo(json.dumps({"model": model, "params": shapes.by_role, "exact_counts": shapes.exact,
                               "plans": [p.to_dict() for p in plans]}, indent=2))
        return
    console = Console()
    Console(width=max(console.width, 140)).print(plan_table(plans, f"{model}: {shapes.total / 1e9:.2f}B params "
                                                 f"({vision_share(shapes):.0%} vision + projector), seq {work.seq} x "
                                                 f"batch {work.batch}, {work.weight_bytes * 8}-bit weights"))
    for note in sorted({n for p in plans for n in p.notes}):
        console.print(f"  {note}")
