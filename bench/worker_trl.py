"""Bench worker: train with TRL's ``SFTTrainer`` + PEFT, as its documentation does for VLMs.

Run by ``run.py`` in its own process: ``python bench/worker_trl.py SPEC.json OUT.json``.

How TRL 1.16 is used (read from its source): a ``datasets.Dataset`` with ``images`` (PIL)
and ``messages`` columns; ``SFTTrainer`` then skips dataset preparation and its
``DataCollatorForVisionLanguageModeling`` renders, tokenizes and processes images per batch.
``packing`` and ``padding_free`` are refused for vision datasets, so both stay off.
``assistant_only_loss=True`` masks everything but the assistant turns, found through
``{% generation %}`` markers in the chat template: TRL's own patched templates only cover
released model templates, so :data:`TRAINING_TEMPLATE` adds the markers to this model's
template around exactly what vlmtune labels (answer + ``<|im_end|>``, not the newline).

The timed window is the same as vlmtune's: from loading the model and building the
dataset to the saved adapter.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (LORA_TARGETS, Hyper, answer_loss, peak_rss_bytes, read_spec, set_threads,  # noqa: E402
                    warm_imports, write_result)

_CONTENT = ("{% if message['content'] is string %}{{ message['content'] }}{% else %}"
            "{% for part in message['content'] %}{% if part['type'] == 'image' %}"
            "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}{% elif part['type'] == 'text' %}"
            "{{ part['text'] }}{% endif %}{% endfor %}{% endif %}")
TRAINING_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}" + _CONTENT + "{{ '<|im_end|>' }}"
    "{% endgeneration %}{{ '\\n' }}{% else %}" + _CONTENT + "{{ '<|im_end|>\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def check_template(processor, rows: list[dict]) -> None:
    """The training template must render every sample exactly as the model's own template."""
    for row in rows:
        ours = processor.apply_chat_template(row["messages"], tokenize=False, chat_template=TRAINING_TEMPLATE)
        if ours != processor.apply_chat_template(row["messages"], tokenize=False):
            raise SystemExit(f"{row['id']}: the bench's TRL training template renders differently "
                             "from the model's chat template; update TRAINING_TEMPLATE")


def load_rows(train_jsonl: str, root: str) -> list[dict]:
    from vlmtune.data.schema import load_samples

    return [{"id": s.id, "messages": s.messages, "images": s.load_images()}
            for s in load_samples(train_jsonl, root=root)]


def label_check(collator, processor, rows: list[dict], spec: dict, hp: Hyper, n: int) -> dict:
    """Do TRL's labels equal vlmtune's on the first ``n`` samples (same tokens, same positions)?"""
    from vlmtune.data.dataset import EncodedDataset
    from vlmtune.data.encode import IGNORE
    from vlmtune.data.schema import load_samples
    from vlmtune.families import get_family

    samples = load_samples(spec["train"], root=spec["root"], limit=n)
    data = EncodedDataset(samples, processor, get_family("qwen2_vl"), set(), hp.max_length)
    equal, tokens = 0, 0
    for example, row in zip(data.examples, rows):
        batch = collator([{"images": row["images"], "messages": row["messages"]}])
        theirs = batch["labels"][0].tolist()
        tokens += sum(label != IGNORE for label in theirs)
        equal += theirs == example.encoded.labels
    return {"samples": len(data.examples), "equal": equal, "trl_answer_tokens": tokens,
            "vlmtune_answer_tokens": sum(e.encoded.n_answer_tokens for e in data.examples)}


def main(spec_path: str, out_path: str) -> None:
    spec = read_spec(spec_path)
    set_threads(spec["threads"])
    hp = Hyper(**spec["hyper"])
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from vlmtune.families import get_family
    from vlmtune.train.measure import machine_info
    from vlmtune.model.methods import count_parameters, lora_target_names

    class LoopClock(TrainerCallback):
        """Time of the training loop alone (after the trainer is built, before saving)."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.seconds = time.perf_counter() - self.start

    template = Path(spec["runs"]) / "trl_training_template.jinja"
    template.parent.mkdir(parents=True, exist_ok=True)
    template.write_text(TRAINING_TEMPLATE, encoding="utf-8")
    warm_imports(spec["model"])
    rss_ready = peak_rss_bytes()
    start, cpu = time.perf_counter(), time.process_time()
    torch.manual_seed(hp.seed)
    model = AutoModelForImageTextToText.from_pretrained(spec["model"], dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(spec["model"])
    rows = load_rows(spec["train"], spec["root"])
    dataset = Dataset.from_list([{"images": r["images"], "messages": r["messages"]} for r in rows])
    targets = lora_target_names(model, get_family(model.config.model_type), ["language"], LORA_TARGETS)
    peft_config = LoraConfig(r=hp.r, lora_alpha=hp.alpha, lora_dropout=hp.dropout, target_modules=targets,
                             bias="none")
    args = SFTConfig(
        output_dir=str(Path(spec["runs"]) / "trl"), num_train_epochs=hp.epochs,
        per_device_train_batch_size=hp.batch_size, gradient_accumulation_steps=1, learning_rate=hp.lr,
        lr_scheduler_type=hp.schedule, warmup_steps=hp.warmup_steps(len(rows)), weight_decay=hp.weight_decay,
        max_grad_norm=hp.max_grad_norm, optim="adamw_torch", seed=hp.seed, bf16=False, fp16=False,
        use_cpu=True, gradient_checkpointing=False, max_length=hp.max_length, assistant_only_loss=True,
        chat_template_path=str(template), packing=False, padding_free=False, logging_steps=1,
        save_strategy="no", report_to="none", dataloader_num_workers=0, disable_tqdm=True,
    )
    clock = LoopClock()
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                         peft_config=peft_config, callbacks=[clock])
    output = trainer.train()
    trainer.save_model(str(Path(spec["runs"]) / "trl" / "adapter"))
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    rss = peak_rss_bytes()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    per_epoch = max(1, len(losses) // max(1, round(hp.epochs)))
    samples = int(round(hp.epochs * len(rows)))
    counts = count_parameters(trainer.model)
    check_template(processor, rows)
    result = {
        "trainer": "trl", "trl_version": __import__("trl").__version__,
        "wall_s": seconds, "cpu_s": cpu_s, "samples": samples, "samples_per_s": samples / seconds,
        "samples_per_cpu_s": samples / cpu_s,
        "loop_s": clock.seconds, "loop_samples_per_s": samples / clock.seconds,
        "trl_reported_samples_per_s": output.metrics.get("train_samples_per_second"),
        "steps": trainer.state.global_step, "peak_rss_bytes": rss, "rss_before_train_bytes": rss_ready,
        "trainable_params": counts["trainable"], "total_params": counts["total"],
        "final_loss": losses[-1], "last_epoch_mean_loss": sum(losses[-per_epoch:]) / len(losses[-per_epoch:]),
        "losses": losses, "lora_targets": len(targets), "machine": machine_info(),
        "label_check": label_check(trainer.data_collator, processor, rows, spec, hp, spec["loss_samples"]),
    }
    trainer.model.config.use_cache = True
    result["post_loss"] = answer_loss(trainer.model, processor, spec["train"], spec["root"],
                                      limit=spec["loss_samples"], batch_size=hp.batch_size,
                                      max_length=hp.max_length)
    write_result(out_path, result)


if __name__ == "__main__":
    main(*sys.argv[1:3])
