"""Eval decode A/B on a bench work directory, interleaved in one process (not a test).

Absolute seconds on a shared machine mostly measure the neighbours, so this runs, in one
process on the model vlmtune trained in ``WORK``: one prompt at a time with
``model.generate`` (the bench's baseline), batched without the shared-prefix prefill, and
batched with it; then the same in reverse order, ``--reps`` times. Prints CPU seconds and
the load average of each pass, the best-of ratios, and whether every pass gave the
one-by-one outputs.

    python bench/run.py --work /tmp/bench               # once: data, model, trainings, eval
    PYTHONPATH=src python bench/ab_eval.py /tmp/bench --batch-size 16
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import read_spec, set_threads  # noqa: E402
from worker_eval import one_by_one  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("work", type=Path, help="a `run.py --work` directory whose eval worker has run")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    set_threads(args.threads)
    from vlmtune.config import apply_overrides
    from vlmtune.data.schema import load_samples
    from vlmtune.evaluate.generate import Generator
    from vlmtune.evaluate.run import generate_all
    from vlmtune.model.trained import load_trained

    spec = read_spec(str(args.work / "eval.spec.json"))
    model, processor, family, cfg = load_trained(Path(spec["run"]))
    cfg = apply_overrides(cfg, [f"eval.batch_size={args.batch_size}", f"eval.max_new_tokens={args.max_new_tokens}",
                                "eval.shots=0"])
    samples = load_samples(spec["eval"], root=spec["root"])
    variants = {"plain": {"share_prefix": False, "share_images": False, "rounds": False},
                "text_prefix": {"share_images": False, "rounds": False},  # the default before issue 20 item 3
                "rounds": {"share_images": False},  # + length-sorted starts, finished rows dropped
                "default": {}}  # + the image tokens prefilled once per image
    gens = {name: Generator(model, processor, family, max_new_tokens=args.max_new_tokens, **kw)
            for name, kw in variants.items()}
    kwargs = gens["plain"].kwargs
    one_by_one(model, processor, family, samples[:1], kwargs)  # warm-up, untimed

    def run(name: str) -> list[str]:
        if name == "one_by_one":
            return one_by_one(model, processor, family, samples, kwargs)
        return [r["prediction"] for r in generate_all(gens[name], samples, [], cfg, name)]

    cpu: dict[str, list[float]] = {"one_by_one": [], **{name: [] for name in gens}}
    reference, identical = None, True
    for rep in range(args.reps):
        for name in (list(cpu) if rep % 2 == 0 else list(cpu)[::-1]):
            start = time.process_time()
            out = run(name)
            cpu[name].append(time.process_time() - start)
            reference = reference if reference is not None or name != "one_by_one" else out
            identical &= reference is None or out == reference
            print(f"{name:10s} cpu {cpu[name][-1]:6.2f} s  load {os.getloadavg()[0]:.1f}", flush=True)
    best = {k: min(v) for k, v in cpu.items()}
    result = {"best_cpu_s": best, **{f"speedup_{k}": best["one_by_one"] / best[k] for k in gens},
              "identical": identical,
              "batch_size": args.batch_size, "prompts": len(samples)}
    print(result)
    return result


if __name__ == "__main__":
    main()
