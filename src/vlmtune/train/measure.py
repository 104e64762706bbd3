"""What a run costs: peak memory, wall time, throughput, FLOPs and MFU. Functions return plain data.

FLOPs per step are model FLOPs (vlmtune.train.flops), counted from the batch's shapes and the
model's real layer sizes; MFU divides the achieved rate by a matmul peak measured here.

Peak memory is the CUDA allocator's max allocated bytes on a GPU, and the process's peak
resident set size (``ru_maxrss``) on CPU, which includes the Python interpreter and the
loaded libraries, so CPU numbers compare runs with each other, not with GPU numbers.

Example:
    >>> peak_memory()["kind"] in ("cuda_max_allocated", "rss_peak")
    True
"""

from __future__ import annotations

import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache

import torch
# Function-level imports: transformers loads only to read a model's config during measurement.


@lru_cache(maxsize=None)
def _peak_flops(device: str, threads: int, dtype: torch.dtype) -> float:
    size = 1024 if device == "cpu" else 4096
    gen = torch.Generator(device).manual_seed(0)  # never the global RNG: training draws from it
    a = torch.randn(size, size, device=device, dtype=dtype, generator=gen)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=gen)
    torch.matmul(a, b)  # warm-up
    best_wall = best_cpu = float("inf")
    for _ in range(5):
        if device != "cpu":
            torch.cuda.synchronize()
        start, cpu = time.perf_counter(), time.process_time()
        torch.matmul(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        best_wall = min(best_wall, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    rate = 2 * size**3 / best_wall
    if device == "cpu" and best_cpu > 0:
        # Another process holding a core during these few milliseconds stretches the wall time
        # but not this process's CPU time: the rate per CPU-second times the threads is the
        # peak the cores give when they are ours (otherwise a run on a busy machine could
        # report an MFU above 100%).
        rate = max(rate, 2 * size**3 * threads / best_cpu)
    return rate


def peak_flops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> dict:
    """This machine's measured matmul peak (the MFU denominator): the best of five square
    matmuls (1024 on CPU, timed by wall clock and by this process's CPU time), measured once
    per process, thread count and dtype (~0.1 s on CPU).

    Why measured, not a datasheet number: CPUs here are shared and throttled, and a
    spec-sheet peak would make every MFU look like noise."""
    device = str(torch.device(device).type)
    threads = torch.get_num_threads()
    return {"flops_per_s": _peak_flops(device, threads, dtype), "threads": threads, "dtype": str(dtype),
            "device": device}


def peak_memory(device: torch.device | None = None) -> dict:
    if device is not None and device.type == "cuda":
        return {"kind": "cuda_max_allocated", "bytes": int(torch.cuda.max_memory_allocated(device))}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # Linux reports KiB
    return {"kind": "rss_peak", "bytes": int(rss * scale)}


def current_rss() -> int:
    """Resident set size now (bytes), from /proc on Linux; 0 where unavailable."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def reset_peak(device: torch.device | None = None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def machine_info(device: torch.device | None = None) -> dict:
    import transformers

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "platform": platform.platform(),
            "cpu_threads": torch.get_num_threads(), "device": str(device or "cpu")}
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


@dataclass
class Throughput:
    """Counts samples, non-pad tokens and model FLOPs over timed intervals (time spent
    outside ``step`` calls, such as validation and checkpointing, is not counted)."""

    samples: int = 0
    tokens: int = 0
    seconds: float = 0.0
    flops: float = 0.0
    steps: int = 0
    world: int = 1  # processes whose samples, tokens and FLOPs are counted (the peak scales with them)
    cpu_seconds: float = 0.0  # process CPU time (all threads) inside steps: steadier than wall on a shared machine
    _start: float | None = field(default=None, repr=False)
    _cpu_start: float = field(default=0.0, repr=False)

    def start(self) -> None:
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()

    def stop(self, samples: int, tokens: int, flops: float = 0.0) -> None:
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self.cpu_seconds += time.process_time() - self._cpu_start
            self._start = None
        self.samples += samples
        self.tokens += tokens
        self.flops += flops
        self.steps += 1

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.seconds if self.seconds else 0.0

    @property
    def peak_flops_per_s(self) -> float:
        return peak_flops()["flops_per_s"] * self.world

    @property
    def mfu(self) -> float:
        """Model FLOPs utilisation: achieved model FLOPs/s over this machine's matmul peak."""
        peak = self.peak_flops_per_s
        return self.flops_per_s / peak if peak else 0.0
