"""Video through the peer converters: LLaMA-Factory (sharegpt ``videos`` + ``<video>``, the
``mllm_video_demo`` dataset_info entry, alpaca ``videos`` column, v1 ``video_url`` parts),
ms-swift (``videos`` + ``<video>``, mixed with images), InternVL (``video`` key, meta file),
OpenAI-style ``video_url`` blocks and Qwen/HF ``{"type": "video", "video": ...}`` parts.
Sample files are written here from each peer's documentation (LLaMA-Factory data/README.md
and data/mllm_video_demo.json; ms-swift "Custom Dataset"; InternVL "fine-tune on a custom
dataset", video section); the clip is generated with PyAV."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmtune.data.convert import convert
from vlmtune.data.schema import load_samples
from vlmtune.errors import DataError

av = pytest.importorskip("av")
IMG, VID, TXT = {"type": "image"}, {"type": "video"}, lambda t: {"type": "text", "text": t}


def write_clip(path: Path, frames: int = 10, side: int = 32) -> Path:
    """A white square moving right over 1 s at 10 fps (MPEG-4 part 2 in .mp4)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            image = np.zeros((side, side, 3), np.uint8)
            image[8:16, 2 * t:2 * t + 8] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture
def root(tmp_path) -> Path:
    write_clip(tmp_path / "mllm_demo_data" / "1.mp4")
    write_clip(tmp_path / "mllm_demo_data" / "2.mp4", frames=6)
    Image.new("RGB", (16, 12), "red").save(tmp_path / "mllm_demo_data" / "1.jpg")
    return tmp_path


def _dump(path: Path, obj, *, lines: bool = False) -> Path:
    text = "".join(json.dumps(o) + "\n" for o in obj) if lines else json.dumps(obj, indent=2)
    path.write_text(text, encoding="utf-8")
    return path


LF_VIDEO_DEMO = [  # LLaMA-Factory data/mllm_video_demo.json shape
    {"messages": [{"content": "<video>Why is this video funny?", "role": "user"},
                  {"content": "Because a square moves.", "role": "assistant"}],
     "videos": ["mllm_demo_data/1.mp4"]},
    {"messages": [{"content": "<video>What is it doing?", "role": "user"},
                  {"content": "Moving right.", "role": "assistant"}],
     "videos": ["mllm_demo_data/2.mp4"]},
]
LF_INFO = {
    "mllm_video_demo": {"file_name": "mllm_video_demo.json", "formatting": "sharegpt",
                        "columns": {"messages": "messages", "videos": "videos"},
                        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                 "assistant_tag": "assistant"}},
    "alpaca_video": {"file_name": "alpaca_video.json",
                     "columns": {"prompt": "instruction", "query": "input", "response": "output",
                                 "videos": "clips"}},
    "audio": {"file_name": "mllm_video_demo.json", "formatting": "sharegpt",
              "columns": {"messages": "messages", "videos": "videos", "audios": "audios"}},
}


def _user(sample: dict, turn: int = 0) -> list[dict]:
    return sample["messages"][turn]["content"]


def test_llamafactory_video_demo_and_columns(root, check_canonical):
    _dump(root / "mllm_video_demo.json", LF_VIDEO_DEMO)
    _dump(root / "alpaca_video.json", [{"instruction": "<video>Which way?", "input": "", "output": "Right.",
                                        "clips": ["mllm_demo_data/2.mp4"]}])
    info = _dump(root / "dataset_info.json", LF_INFO)
    assert convert(f"{info}#mllm_video_demo", root / "demo.jsonl") == 2
    first, second = check_canonical(root / "demo.jsonl")
    assert first["videos"] == ["mllm_demo_data/1.mp4"] and first["images"] == []
    assert _user(first) == [VID, TXT("Why is this video funny?")]
    assert second["videos"] == ["mllm_demo_data/2.mp4"]
    loaded = load_samples(root / "demo.jsonl")
    assert loaded[0].videos == [(root / "mllm_demo_data/1.mp4").resolve()]

    assert convert(f"{info}#alpaca_video", root / "alpaca.jsonl") == 1
    (sample,) = check_canonical(root / "alpaca.jsonl")
    assert sample["videos"] == ["mllm_demo_data/2.mp4"] and _user(sample) == [VID, TXT("Which way?")]
    # the same demo file read directly (auto-detected), without dataset_info.json
    assert convert(root / "mllm_video_demo.json", root / "direct.jsonl") == 2
    assert check_canonical(root / "direct.jsonl")[0]["messages"] == first["messages"]
    with pytest.raises(DataError, match=r"audio\.columns\.audios: the audios column is not supported"):
        convert(f"{info}#audio", root / "audio.jsonl")


def test_llamafactory_v1_video_url_parts(root, check_canonical):
    src = _dump(root / "v1.jsonl", [{"messages": [
        {"role": "user", "content": [{"type": "video_url", "value": "mllm_demo_data/1.mp4"},
                                     {"type": "text", "value": "What moves?"}], "loss_weight": 0.0},
        {"role": "assistant", "content": [{"type": "text", "value": "A square."}], "loss_weight": 1.0}]}],
        lines=True)
    assert convert(src, root / "out.jsonl") == 1
    (sample,) = check_canonical(root / "out.jsonl")
    assert sample["videos"] == ["mllm_demo_data/1.mp4"] and _user(sample) == [VID, TXT("What moves?")]


def test_swift_videos_with_images_and_loss(root, check_canonical):
    src = _dump(root / "swift.jsonl", [
        {"messages": [{"role": "system", "content": "You watch videos."},
                      {"role": "user", "content": "<image>This frame, and <video>this clip: same colour?"},
                      {"role": "assistant", "content": "No.", "loss": False},
                      {"role": "user", "content": "And <video>this one?"},
                      {"role": "assistant", "content": "Also no."}],
         "images": ["mllm_demo_data/1.jpg"], "videos": ["mllm_demo_data/1.mp4", "mllm_demo_data/2.mp4"]},
        {"query": "<video>Where does it go?", "response": "Right.", "history": [],
         "videos": ["mllm_demo_data/2.mp4"]},
    ], lines=True)
    assert convert(src, root / "out.jsonl") == 2
    mixed, query = check_canonical(root / "out.jsonl")
    assert mixed["images"] == ["mllm_demo_data/1.jpg"]
    assert mixed["videos"] == ["mllm_demo_data/1.mp4", "mllm_demo_data/2.mp4"]
    assert _user(mixed, 1) == [IMG, TXT("This frame, and "), VID, TXT("this clip: same colour?")]
    assert _user(mixed, 3) == [TXT("And "), VID, TXT("this one?")]
    assert mixed["messages"][2]["train"] is False
    assert query["videos"] == ["mllm_demo_data/2.mp4"] and _user(query) == [VID, TXT("Where does it go?")]


def test_internvl_video_key_and_meta_file(root, check_canonical):
    _dump(root / "video.jsonl", [
        {"id": 0, "video": "1.mp4", "conversations": [
            {"from": "human", "value": "<video>\nWhat happens in the video?"},
            {"from": "gpt", "value": "A square moves right."}]},
        {"id": 1, "video": "2.mp4", "conversations": [  # no marker: one video goes first, as InternVL does
            {"from": "human", "value": "Describe it."}, {"from": "gpt", "value": "A square."}]},
    ], lines=True)
    meta = _dump(root / "meta.json", {"clips": {"root": "mllm_demo_data/", "annotation": "video.jsonl",
                                                "data_augment": False, "repeat_time": 1, "length": 2}})
    assert convert(meta, root / "train.jsonl") == 2
    marked, unmarked = check_canonical(root / "train.jsonl")
    assert marked["videos"] == ["mllm_demo_data/1.mp4"] and _user(marked) == [VID, TXT("What happens in the video?")]
    assert unmarked["videos"] == ["mllm_demo_data/2.mp4"] and _user(unmarked) == [VID, TXT("Describe it.")]
    (root / "frames").mkdir()  # InternVL also reads a folder of frames as a video: refused by name
    _dump(root / "video.jsonl", [{"id": 0, "video": "../frames", "conversations": [
        {"from": "human", "value": "<video>\nWhat?"}, {"from": "gpt", "value": "x"}]}], lines=True)
    with pytest.raises(DataError, match=r"video\.jsonl:1: video: video path is a folder: .*give the video file"):
        convert(meta, root / "frames.jsonl")
    assert not (root / "frames.jsonl").exists()


def test_openai_and_hf_video_parts(root, check_canonical):
    clip = (root / "mllm_demo_data/2.mp4").read_bytes()
    src = _dump(root / "openai.jsonl", [
        {"id": "file", "messages": [
            {"role": "user", "content": [
                {"type": "video_url", "video_url": {"url": (root / "mllm_demo_data/1.mp4").as_uri()}},
                {"type": "text", "text": "What moves?"}]},
            {"role": "assistant", "content": "A square."}]},
        {"id": "qwen", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Which way?"},
                                         {"type": "video", "video": "mllm_demo_data/2.mp4"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Right."}]}]},
        {"id": "inline", "messages": [
            {"role": "user", "content": [
                {"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + base64.b64encode(clip).decode()}},
                {"type": "image_url", "image_url": {"url": "mllm_demo_data/1.jpg"}},
                {"type": "text", "text": "Same?"}]},
            {"role": "assistant", "content": "No."}]},
    ], lines=True)
    assert convert(src, root / "out.jsonl") == 3
    file_s, qwen_s, inline_s = check_canonical(root / "out.jsonl")
    assert file_s["videos"] == ["mllm_demo_data/1.mp4"] and _user(file_s) == [VID, TXT("What moves?")]
    assert qwen_s["videos"] == ["mllm_demo_data/2.mp4"] and _user(qwen_s) == [TXT("Which way?"), VID]
    assert inline_s["videos"][0].startswith("out_images/") and inline_s["videos"][0].endswith(".mp4")
    assert (root / inline_s["videos"][0]).read_bytes() == clip and inline_s["images"] == ["mllm_demo_data/1.jpg"]
    assert _user(inline_s) == [VID, IMG, TXT("Same?")]


def test_video_outside_the_root_follows_the_image_policy(root, tmp_path_factory, check_canonical):
    elsewhere = write_clip(tmp_path_factory.mktemp("elsewhere") / "far.mp4")
    src = _dump(root / "far.jsonl", [{"videos": [str(elsewhere)], "conversations": [
        {"from": "human", "value": "<video>What?"}, {"from": "gpt", "value": "A square."}]}], lines=True)
    out = root / "data" / "train.jsonl"
    with pytest.raises(DataError, match=r"far\.jsonl:1: videos\[0\]: video .* is outside the dataset root"):
        convert(src, out)
    with pytest.raises(DataError, match="--allow-outside-root"):
        convert(src, out, images_outside="keep")
    # copy takes files only from inside the source's folder (issue 14: never ../../etc/passwd):
    # a clip elsewhere is copied once --image-root names a folder that holds it
    with pytest.raises(DataError, match="outside the source dataset's folder"):
        convert(src, out, images_outside="copy")
    assert convert(src, out, images_outside="copy", image_root=elsewhere.parent) == 1
    (sample,) = check_canonical(out)
    assert sample["videos"][0].startswith("train_images/")
    assert (out.parent / sample["videos"][0]).read_bytes() == elsewhere.read_bytes()
    assert convert(src, root / "data" / "kept.jsonl", images_outside="keep", allow_outside_root=True) == 1
    kept = json.loads((root / "data" / "kept.jsonl").read_text())
    assert kept["videos"][0].startswith("../") and (root / "data" / kept["videos"][0]).resolve() == elsewhere


@pytest.mark.parametrize("record,where,message", [
    ({"videos": ["mllm_demo_data/1.mp4"], "conversations": [
        {"from": "human", "value": "<video><video>Which?"}, {"from": "gpt", "value": "x"}]},
     "conversations", r"2 <video> marker\(s\) but 1 video\(s\)"),
    ({"videos": ["mllm_demo_data/1.mp4", "mllm_demo_data/2.mp4"], "conversations": [
        {"from": "human", "value": "Which?"}, {"from": "gpt", "value": "x"}]},
     "conversations", "with several videos, mark each one's place"),
    ({"videos": ["mllm_demo_data/1.mp4"], "conversations": [
        {"from": "human", "value": "What?"}, {"from": "gpt", "value": "<video>x"}]},
     r"conversations\[1\]\.value", "videos are only allowed in user turns"),
    ({"video": "mllm_demo_data/1.mp4", "videos": ["mllm_demo_data/2.mp4"], "conversations": [
        {"from": "human", "value": "<video>What?"}, {"from": "gpt", "value": "x"}]},
     "video", "give either 'video' or 'videos'"),
    ({"videos": ["mllm_demo_data/missing.mp4"], "conversations": [
        {"from": "human", "value": "<video>What?"}, {"from": "gpt", "value": "x"}]},
     r"videos\[0\]", "video not found"),
    ({"videos": ["https://example.com/a.mp4"], "conversations": [
        {"from": "human", "value": "<video>What?"}, {"from": "gpt", "value": "x"}]},
     r"videos\[0\]", "video URL .* not downloaded"),
    ({"messages": [{"role": "user", "content": [
        {"type": "video", "video": ["f1.jpg", "f2.jpg"]}, {"type": "text", "text": "What?"}]},
        {"role": "assistant", "content": "x"}]},
     r"messages\[0\]\.content\[0\]", "a video given as a list .* is not supported"),
])
def test_bad_video_records_name_file_line_and_field(root, record, where, message):
    src = _dump(root / "bad.jsonl", [record], lines=True)
    with pytest.raises(DataError, match=f"bad\\.jsonl:1: {where}: .*{message}"):
        convert(src, root / "out.jsonl")
    assert not (root / "out.jsonl").exists()


def test_hf_messages_column_with_video_parts(root, check_canonical):
    datasets = pytest.importorskip("datasets")
    src = root / "chat.parquet"  # parts as one struct type: absent keys are null
    datasets.Dataset.from_list([{"messages": [
        {"role": "user", "content": [{"type": "video", "video": "mllm_demo_data/1.mp4", "text": None},
                                     {"type": "text", "video": None, "text": "What moves?"}]},
        {"role": "assistant", "content": [{"type": "text", "video": None, "text": "A square."}]}]}]).to_parquet(src)
    assert convert(src, root / "out.jsonl") == 1
    (sample,) = check_canonical(root / "out.jsonl")
    assert sample["videos"] == ["mllm_demo_data/1.mp4"] and _user(sample) == [VID, TXT("What moves?")]


def test_swift_audio_is_refused_not_dropped(root):
    src = _dump(root / "audio.jsonl", [{"messages": [
        {"role": "user", "content": "<video><audio>What is said?"}, {"role": "assistant", "content": "hi"}],
        "videos": ["mllm_demo_data/1.mp4"], "audios": ["a.wav"]}], lines=True)
    with pytest.raises(DataError, match=r"audio\.jsonl:1: audios: is not supported"):
        convert(src, root / "out.jsonl")


@pytest.mark.slow
def test_converted_video_files_train_tiny_qwen2_vl(root, tiny_factory, run_config):
    """LLaMA-Factory's video demo (via dataset_info.json) and an InternVL video record,
    converted, train two LoRA steps on a tiny Qwen2-VL with every sample encoded."""
    _dump(root / "mllm_video_demo.json", LF_VIDEO_DEMO)
    info = _dump(root / "dataset_info.json", LF_INFO)
    assert convert(f"{info}#mllm_video_demo", root / "lf.jsonl") == 2
    _dump(root / "internvl.jsonl", [{"id": "iv", "video": "mllm_demo_data/1.mp4", "conversations": [
        {"from": "human", "value": "<video>\nWhere does it go?"}, {"from": "gpt", "value": "Right."}]}],
        lines=True)
    assert convert(root / "internvl.jsonl", root / "iv.jsonl", fmt="internvl") == 1
    (root / "train.jsonl").write_text((root / "lf.jsonl").read_text() + (root / "iv.jsonl").read_text())
    from vlmtune.train import train

    cfg = run_config(tiny_factory("qwen2_vl"), name="video-convert",
                     data={"train": str(root / "train.jsonl"), "val": None, "video_fps": 2.0,
                           "video_max_frames": 2},
                     train={"max_steps": 2, "batch_size": 3, "checkpoint_every": 2}, eval={"test": None})
    run = train(cfg)
    data = json.loads((run / "data.json").read_text())["train"]
    assert data["samples"] == 3 and not data["skipped"]
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
