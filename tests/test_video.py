"""Video samples end to end: a clip generated here (PyAV), frames sampled by fps/max_frames
as transformers samples them, and a video sample training on tiny Qwen2-VL and LLaVA-OneVision."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vlmtune.data.schema import load_samples
from vlmtune.data.video import VideoSampling, frame_indices, read_clip
from vlmtune.errors import DataError

N_FRAMES, FPS, SIDE, SQUARE = 20, 10, 32, 8

# llava-hf/llava-onevision-qwen2-0.5b-ov-hf's chat template (images, then videos, then text per turn)
ONEVISION_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\n' }}{% endfor %}"
    "{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', "
    "'text') %}{{ content['text'] }}{% endfor %}{% else %}{% for content in message['content'] | "
    "selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}"
    "{% endif %}{{'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)


def square_x(t: int) -> int:
    return round(t * (SIDE - SQUARE) / (N_FRAMES - 1))


def write_clip(path: Path) -> Path:
    """A white square moving left to right over 2 s at 10 fps (MPEG-4 part 2 in .mp4)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=FPS)
        stream.width = stream.height = SIDE
        stream.pix_fmt = "yuv420p"
        for t in range(N_FRAMES):
            image = np.zeros((SIDE, SIDE, 3), np.uint8)
            image[12:12 + SQUARE, square_x(t):square_x(t) + SQUARE] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def video_data(tmp_path_factory):
    """A clip, two video samples and one image sample (mixed batches), as canonical JSONL."""
    from PIL import Image

    root = tmp_path_factory.mktemp("video")
    write_clip(root / "clip.mp4")
    Image.new("RGB", (32, 32), (200, 30, 30)).save(root / "red.png")

    def turn(kind: str, question: str, answer: str) -> list[dict]:
        return [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": question}]},
                {"role": "assistant", "content": [{"type": "text", "text": answer}]}]

    rows = [{"id": "v1", "videos": ["clip.mp4"], "messages": turn("video", "Where does the square go?", "right")},
            {"id": "v2", "videos": ["clip.mp4"], "messages": turn("video", "What moves?", "a square")},
            {"id": "i1", "images": ["red.png"], "messages": turn("image", "Which colour?", "red")}]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.mark.parametrize("fps,max_frames", [(2.0, 32), (1.0, 32), (4.0, 3), (30.0, 64), (0.1, 8)])
def test_frame_indices_match_transformers(fps, max_frames):
    from transformers.video_utils import VideoMetadata, default_sample_indices_fn

    meta = VideoMetadata(total_num_frames=N_FRAMES, fps=FPS)
    wanted = max(1, int(N_FRAMES / FPS * fps))
    reference = default_sample_indices_fn(meta, num_frames=min(wanted, max_frames, N_FRAMES))
    assert frame_indices(N_FRAMES, FPS, VideoSampling(fps, max_frames)) == reference.tolist()


def test_read_clip_samples_the_right_frames(video_data):
    clip = read_clip(video_data / "clip.mp4", VideoSampling(fps=2.0, max_frames=32))
    assert clip.frames.shape == (4, SIDE, SIDE, 3) and clip.frames.dtype == np.uint8
    assert clip.metadata["frames_indices"] == [0, 5, 10, 15] and clip.metadata["fps"] == FPS
    for frame, t in zip(clip.frames, clip.metadata["frames_indices"]):
        bright = np.nonzero(frame[12:12 + SQUARE, :, 0].mean(0) > 127)[0]  # columns the (lossy) square covers
        assert abs(bright.mean() - (square_x(t) + (SQUARE - 1) / 2)) <= 1.0, (t, bright)


def test_schema_counts_video_parts(video_data, tmp_path):
    samples = load_samples(video_data / "train.jsonl", video=VideoSampling(1.0, 2))
    assert samples[0].videos == [(video_data / "clip.mp4").resolve()] and samples[0].video_sampling.max_frames == 2
    bad = {"id": "x", "videos": ["clip.mp4", "clip.mp4"], "messages": [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "?"}]},
        {"role": "assistant", "content": "a"}]}
    (video_data / "bad.jsonl").write_text(json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: messages: 1 video placeholder\(s\) but 2 video\(s\)"):
        load_samples(video_data / "bad.jsonl")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    shutil.copy(video_data / "bad.jsonl", tmp_path / "b.jsonl")
    (tmp_path / "b.jsonl").write_text(json.dumps({**bad, "videos": ["broken.mp4"]}) + "\n")
    [sample] = load_samples(tmp_path / "b.jsonl")
    with pytest.raises(DataError, match=r"b.jsonl:1: videos\[0\]: cannot decode video"):
        sample.load_videos()


def _model(tiny_factory, family: str, tmp_path: Path) -> Path:
    path = tiny_factory(family)
    if family != "llava_onevision":
        return path
    from transformers import AutoProcessor

    copy = Path(shutil.copytree(path, tmp_path / "onevision"))  # the real template renders videos
    processor = AutoProcessor.from_pretrained(copy)
    processor.chat_template = ONEVISION_TEMPLATE
    processor.save_pretrained(copy)
    return copy


@pytest.mark.slow
@pytest.mark.parametrize("family,video_key", [("qwen2_vl", "pixel_values_videos"),
                                              ("llava_onevision", "pixel_values_videos")])
def test_video_sample_trains(family, video_key, tiny_factory, video_data, tmp_path, run_config):
    from vlmtune.data.collate import Collator
    from vlmtune.train import train

    cfg = run_config(_model(tiny_factory, family, tmp_path), name=f"video-{family}",
                     data={"train": str(video_data / "train.jsonl"), "val": None, "video_fps": 2.0,
                           "video_max_frames": 3},
                     train={"max_steps": 6, "batch_size": 3, "checkpoint_every": 6})
    seen = []
    real_call = Collator.__call__

    def spy(self, examples):
        batch = real_call(self, examples)
        seen.append({k: tuple(v.shape) for k, v in batch.items() if hasattr(v, "shape")})
        return batch

    Collator.__call__ = spy
    try:
        run = train(cfg)
    finally:
        Collator.__call__ = real_call
    data = json.loads((run / "data.json").read_text())
    assert data["train"]["samples"] == 3 and data["train"]["skipped"] == {}
    assert all(video_key in batch for batch in seen), seen[0]
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.2, losses  # LoRA at lr 2e-2 learns

    from vlmtune.evaluate import evaluate

    scores = evaluate(cfg.model_copy(update={"eval": cfg.eval.model_copy(update={
        "test": str(video_data / "train.jsonl")})}), run=run, out=run)
    assert scores["tasks"]["default"]["n"] == 3
    predictions = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert {p["id"] for p in predictions} == {"v1", "v2", "i1"}


def test_video_labels_cover_the_answer_only(tiny_factory, video_data):
    """InternVL replaces <video> by per-frame image blocks (text + image tokens), which the
    label alignment must step over; the labelled tokens are still exactly the answer."""
    from vlmtune.data.dataset import EncodedDataset
    from vlmtune.data.encode import IGNORE, image_token_ids
    from vlmtune.model.load import load_base
    from vlmtune.config import ModelConfig

    model, processor, family = load_base(ModelConfig(path=str(tiny_factory("internvl"))))
    samples = load_samples(video_data / "train.jsonl", video=VideoSampling(2.0, 3))
    data = EncodedDataset(samples[:1], processor, family, image_token_ids(processor, model.config), 2048)
    [example] = data.examples
    labelled = [t for t in example.encoded.labels if t != IGNORE]
    assert processor.tokenizer.decode(labelled).strip() == "right<|im_end|>"
    assert "Frame1:" in processor.tokenizer.decode(example.encoded.input_ids)

    from vlmtune.data.preview import preview_sample

    shown = preview_sample(processor, family, samples[0], image_token_ids(processor, model.config), 2048)
    assert shown.n_answer_tokens == len(labelled) and shown.labelled_text.strip() == "right<|im_end|>"


def test_family_without_video_is_refused(tiny_factory, video_data, run_config):
    from vlmtune.train import train

    cfg = run_config(tiny_factory("llava"), name="no-video", data={"train": str(video_data / "train.jsonl"),
                                                                   "val": None})
    with pytest.raises(DataError, match=r"train.jsonl:1: videos: LLaVA-1.5 takes no video input "
                                        r"\(video families: .*Qwen2-VL"):
        train(cfg)
    assert not cfg.run_dir.exists()
