"""Video clips for samples with ``{"type": "video"}`` parts: decode with PyAV, sample frames.

Why we sample here and not in the processor: the frames a sample trains on must not depend
on the family (Qwen's video processor samples by fps, SmolVLM's by its own rule, LLaVA's
not at all), and the pre-pass must count the same tokens the collator later feeds. So
frames are taken at ``data.video_fps`` frames per second of video, at most
``data.video_max_frames`` (spread evenly over the clip when capped), by the rule of
transformers' ``default_sample_indices_fn`` (frame ``i * n // k``); the processor is then
told not to sample again (``do_sample_frames=False``) and gets the clip's metadata (fps and
the indices taken), from which Qwen3-VL and SmolVLM2 write frame timestamps into the prompt.

Example:
    >>> clip = read_clip(Path("clip.mp4"), VideoSampling(fps=2.0, max_frames=8))  # doctest: +SKIP
    >>> clip.frames.shape  # (frames, height, width, 3), uint8 RGB
    (4, 64, 64, 3)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class VideoSampling:
    fps: float = 2.0  # frames taken per second of video
    max_frames: int = 32  # cap; above it, frames spread evenly over the whole clip

    @classmethod
    def of(cls, data: Any) -> "VideoSampling":
        """From a run's ``data`` section (``video_fps``, ``video_max_frames``)."""
        return cls(data.video_fps, data.video_max_frames)


@dataclass
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    metadata: dict[str, Any]  # transformers VideoMetadata fields (fps, total_num_frames, frames_indices...)


def frame_indices(total: int, native_fps: float, sampling: VideoSampling) -> list[int]:
    """Indices of the frames to keep: ``fps`` per second of video, at most ``max_frames``, at least one.

    >>> frame_indices(30, 10.0, VideoSampling(fps=2.0, max_frames=32))  # 3 s at 10 fps -> 6 frames
    [0, 5, 10, 15, 20, 25]
    """
    if total <= 0:
        return []
    wanted = int(total / native_fps * sampling.fps) if native_fps > 0 else total
    count = max(1, min(wanted, sampling.max_frames, total))
    return [k * total // count for k in range(count)]


def read_clip(path: Path, sampling: VideoSampling) -> Clip:
    """Decode the first video stream of ``path`` and keep the sampled frames.

    Raises ``ValueError`` (the caller names the sample) for a file PyAV cannot decode or
    one without video frames.
    """
    try:
        import av
    except ImportError:
        raise ValueError("video samples need PyAV: pip install 'vlmtune[video]'") from None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream")
            stream = container.streams.video[0]
            native_fps = float(stream.average_rate or stream.guessed_rate or 0)
            total = stream.frames or _count_frames(path)
            keep = frame_indices(total, native_fps, sampling)
            frames = _decode(container, stream, set(keep))
    except av.error.FFmpegError as err:
        raise ValueError(f"cannot decode video {path}: {err}") from None
    if not frames:
        raise ValueError(f"{path}: no decodable video frames")
    keep = [i for i in keep if i in frames]
    metadata = {"total_num_frames": total, "fps": native_fps or None, "frames_indices": keep,
                "duration": total / native_fps if native_fps else None, "video_backend": "pyav",
                "height": frames[keep[0]].shape[0], "width": frames[keep[0]].shape[1]}
    return Clip(np.stack([frames[i] for i in keep]), metadata)


def _decode(container: Any, stream: Any, keep: set[int]) -> dict[int, np.ndarray]:
    frames: dict[int, np.ndarray] = {}
    last = max(keep, default=-1)
    for index, frame in enumerate(container.decode(stream)):
        if index in keep:
            frames[index] = frame.to_ndarray(format="rgb24")
        if index >= last:
            break
    return frames


def _count_frames(path: Path) -> int:
    """Frame count for containers that do not store it (some GIF/WebM): decode once."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))
