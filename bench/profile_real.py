"""Where a training step's time and memory go on the real-vocabulary bench model (not a test).

One process, one padded batch of the bench's training data, the model with the bench's
LoRA adapters, two loss paths on the same batch, alternated (A B B A ...):

- ``answer_only``: vlmtune's :func:`vlmtune.train.loss.token_loss_sum` (LM head at the
  labelled positions only);
- ``trl_fused``: TRL's own ``add_fused_lm_head`` forward as ``SFTTrainer.compute_loss`` calls
  it (``fused_lm_head=True``, log-probs + entropy + top-1); on CPU TRL's kernel runs the head
  over every position in chunks (its compact, labelled-only path needs Triton).

Forward hooks time the vision tower, attention, MLP and the LM head module (CPU seconds);
backward and the AdamW step are timed whole. Peak RSS growth is read per path in order of
expected peak (answer-only first), so each growth is that path's own high-water mark.

    python bench/run.py --size real --work /tmp/real     # once: data + model
    PYTHONPATH=src python bench/profile_real.py /tmp/real [--batch-size 4 --repeat 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LORA_TARGETS, Hyper, peak_rss_bytes, set_threads  # noqa: E402


def _cpu() -> float:
    return time.process_time()


class Clock:
    """CPU seconds spent inside each hooked module's forward, summed per part name."""

    def __init__(self, model) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self._start: dict[int, float] = {}
        base = model.get_base_model()
        parts = [("vision tower", base.model.visual), ("LM head (module)", base.lm_head)]
        for layer in base.model.language_model.layers:
            parts += [("attention", layer.self_attn), ("MLP", layer.mlp)]
        for name, module in parts:
            module.register_forward_pre_hook(self._pre)
            module.register_forward_hook(self._post(name))

    def _pre(self, module, args):
        self._start[id(module)] = _cpu()

    def _post(self, name):
        def hook(module, args, output):
            self.spent[name] += _cpu() - self._start.pop(id(module))
        return hook


def load(work: Path, batch_size: int):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl.trainer.utils import add_fused_lm_head

    from vlmtune.data.collate import Collator
    from vlmtune.data.dataset import EncodedDataset
    from vlmtune.data.encode import image_token_ids
    from vlmtune.data.schema import load_samples
    from vlmtune.families import get_family
    from vlmtune.model.methods import lora_target_names

    hp = Hyper(max_length=1024)
    model = AutoModelForImageTextToText.from_pretrained(work / "model", dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(work / "model")
    family = get_family(model.config.model_type)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))  # what SFTTrainer asks for
    targets = lora_target_names(model, family, ["language"], LORA_TARGETS)
    model = get_peft_model(model, LoraConfig(r=hp.r, lora_alpha=hp.alpha, lora_dropout=0.0,
                                             target_modules=targets, bias="none"))
    samples = load_samples(work / "data" / "bench_train.jsonl", root=work / "data", limit=batch_size)
    data = EncodedDataset(samples, processor, family, image_token_ids(processor, model.config), hp.max_length)
    batch = Collator(processor, hp.max_length)([data[i] for i in range(len(data))])
    return model, batch


def step(model, batch: dict, path: str, optimizer, clock: Clock) -> dict:
    from vlmtune.train.loss import n_target_tokens, token_loss_sum

    clock.spent.clear()
    inputs = dict(batch)
    t0 = _cpu()
    if path == "answer_only":
        loss = token_loss_sum(model, inputs) / n_target_tokens(batch)
    else:
        out = model(**inputs, fused_lm_head=True)
        loss = -out.log_probs.sum() / out.label_mask.sum()
    t1 = _cpu()
    loss.backward()
    t2 = _cpu()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    t3 = _cpu()
    hooked = sum(clock.spent.values())
    return {"loss": float(loss.detach()), "forward_s": t1 - t0, "backward_s": t2 - t1, "optimizer_s": t3 - t2,
            **{f"forward {k}": v for k, v in clock.spent.items()},
            # TRL's fused head calls the weight directly, so on that path this is mostly the head
            "forward rest (embeddings, norms, loss / fused head)": t1 - t0 - hooked}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("work", type=Path, help="a run.py --size real --work directory")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--repeat", type=int, default=2, help="A B pairs (alternated)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    set_threads(args.threads)
    import torch

    model, batch = load(args.work, args.batch_size)
    clock = Clock(model)
    optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=0.0)  # lr 0: same weights
    vocab = model.get_base_model().lm_head.out_features
    shape = tuple(batch["input_ids"].shape)
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    print(json.dumps({"batch": shape, "labelled_positions": labelled, "vocab": vocab,
                      "full_logits_mib": shape[0] * shape[1] * vocab * 4 / 2**20,
                      "answer_logits_mib": labelled * vocab * 4 / 2**20,
                      "image_tokens": int((batch["input_ids"] == model.config.image_token_id).sum())}))
    rows: dict[str, list[dict]] = {"answer_only": [], "trl_fused": []}
    for i in range(args.repeat):
        for path in ("answer_only", "trl_fused") if i % 2 == 0 else ("trl_fused", "answer_only"):
            before = peak_rss_bytes()
            row = step(model, batch, path, optimizer, clock)
            row["peak_rss_growth_mib"] = (peak_rss_bytes() - before) / 2**20
            row["load"] = open("/proc/loadavg").read().split()[:3]
            rows[path].append(row)
            print(json.dumps({"path": path, **{k: round(v, 4) if isinstance(v, float) else v
                                                for k, v in row.items()}}), flush=True)
    for path, runs in rows.items():
        keys = [k for k in runs[0] if k.endswith("_s") or k.startswith("forward ")]
        print(path, {k: round(statistics.median(r.get(k, 0.0) for r in runs), 3) for k in keys})


if __name__ == "__main__":
    main()
