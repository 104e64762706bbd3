"""Bench worker: batched evaluation (vlmtune) vs one prompt at a time (``model.generate``).

Run by ``run.py`` in its own process: ``python bench/worker_eval.py SPEC.json OUT.json``.
Both paths use the model vlmtune trained (base + LoRA adapter, unmerged, as ``vlmtune
eval`` runs it), the same prompts and images, greedy decoding and the same stop tokens.
The one-by-one path is what a user writes by hand: render the prompt, call the processor
on one sample, ``model.generate``, decode.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import peak_rss_bytes, read_spec, set_threads, write_result  # noqa: E402


def one_by_one(model, processor, family, samples, kwargs) -> list[str]:
    import torch

    from vlmtune.data.encode import prompt_text

    texts = []
    with torch.no_grad():
        for sample in samples:
            prompt = prompt_text(processor, family, sample.prompt_messages)
            images = sample.load_images()
            inputs = processor(text=[prompt], images=[images] if images else None, return_tensors="pt")
            out = model.generate(**inputs, **kwargs)
            new = out[0, inputs["input_ids"].shape[1]:]
            texts.append(processor.tokenizer.decode(new, skip_special_tokens=True).strip())
    return texts


def main(spec_path: str, out_path: str) -> None:
    spec = read_spec(spec_path)
    set_threads(spec["threads"])
    from vlmtune.config import apply_overrides
    from vlmtune.data.schema import load_samples
    from vlmtune.evaluate.run import generate_all
    from vlmtune.evaluate.generate import Generator
    from vlmtune.model.trained import load_trained

    model, processor, family, cfg = load_trained(Path(spec["run"]))
    cfg = apply_overrides(cfg, [f"eval.batch_size={spec['eval_batch_size']}",
                                f"eval.max_new_tokens={spec['max_new_tokens']}", "eval.shots=0"])
    samples = load_samples(spec["eval"], root=spec["root"])
    generator = Generator(model, processor, family, max_new_tokens=spec["max_new_tokens"])
    one_by_one(model, processor, family, samples[:1], generator.kwargs)  # warm-up, untimed

    start, cpu = time.perf_counter(), time.process_time()
    single = one_by_one(model, processor, family, samples, generator.kwargs)
    single_s, single_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    records = generate_all(generator, samples, [], cfg, "batched")
    batched_s, batched_cpu = time.perf_counter() - start, time.process_time() - cpu
    batched = [r["prediction"] for r in records]

    differ = [{"id": s.id, "one_by_one": a, "batched": b} for s, a, b in zip(samples, single, batched) if a != b]
    write_result(out_path, {
        "prompts": len(samples), "batch_size": spec["eval_batch_size"], "max_new_tokens": spec["max_new_tokens"],
        "one_by_one_s": single_s, "batched_s": batched_s, "speedup": single_s / batched_s,
        "one_by_one_cpu_s": single_cpu, "batched_cpu_s": batched_cpu, "cpu_speedup": single_cpu / batched_cpu,
        "identical": not differ, "n_identical": len(samples) - len(differ), "differ": differ[:10],
        "examples": [{"id": s.id, "prediction": b} for s, b in zip(samples[:5], batched)],
        "peak_rss_bytes": peak_rss_bytes(),
    })


if __name__ == "__main__":
    main(*sys.argv[1:3])
