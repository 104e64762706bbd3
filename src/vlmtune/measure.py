"""What a run costs: peak memory, wall time, throughput. Every function returns plain data.

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

import torch


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
    """Counts samples and non-pad tokens over timed intervals (time spent outside
    ``step`` calls, such as validation and checkpointing, is not counted)."""

    samples: int = 0
    tokens: int = 0
    seconds: float = 0.0
    _start: float | None = field(default=None, repr=False)

    def start(self) -> None:
        self._start = time.perf_counter()

    def stop(self, samples: int, tokens: int) -> None:
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self._start = None
        self.samples += samples
        self.tokens += tokens

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0
