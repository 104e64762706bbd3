"""``data split``: train/val/test by sample or by image (no image in two splits), and the
CLI end to end with ``data convert --task`` from a peer's file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from vlmtune.data.split import split_file
from vlmtune.errors import ConfigError, DataError


def _dataset(tmp_path, n_images=20, per_image=5):
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(n_images):
        Image.new("RGB", (4, 4), (i, 0, 0)).save(tmp_path / "img" / f"{i}.png")
        for q in range(per_image):
            rows.append({"id": f"{i}-{q}", "images": [f"img/{i}.png"], "messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"q{q}"}]},
                {"role": "assistant", "content": [{"type": "text", "text": f"a{q}"}]}]})
    rows.append({"id": "pair", "images": ["img/0.png", "img/1.png"], "messages": [  # links images 0 and 1
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "same"}]}]})
    src = tmp_path / "all.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return src, rows


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("by", ["image", "id"])
def test_split_sizes_disjoint_and_deterministic(tmp_path, by, check_canonical):
    src, rows = _dataset(tmp_path)
    counts = split_file(src, tmp_path, val=0.1, test=0.2, by=by, seed=3)
    assert sum(counts.values()) == len(rows)
    parts = {name: check_canonical(tmp_path / f"{name}.jsonl") for name in counts}
    assert sorted(r["id"] for p in parts.values() for r in p) == sorted(r["id"] for r in rows)
    assert abs(counts["test"] - round(0.2 * len(rows))) <= (11 if by == "image" else 0)  # a group may overshoot
    images = {name: {i for r in p for i in r["images"]} for name, p in parts.items()}
    if by == "image":
        assert not images["train"] & images["val"] and not images["train"] & images["test"]
        assert not images["val"] & images["test"]
    else:
        assert images["train"] & images["test"]  # by id, pictures are shared (that is the point of --by image)
    first = (tmp_path / "test.jsonl").read_text()
    split_file(src, tmp_path, val=0.1, test=0.2, by=by, seed=3)
    assert (tmp_path / "test.jsonl").read_text() == first
    split_file(src, tmp_path, val=0.1, test=0.2, by=by, seed=4)
    assert (tmp_path / "test.jsonl").read_text() != first


def test_split_refuses_images_outside_out_and_bad_fractions(tmp_path):
    src, _ = _dataset(tmp_path, n_images=2, per_image=2)
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(DataError, match="outside the output folder"):
        split_file(src, tmp_path / "elsewhere" / "s")
    assert not (tmp_path / "elsewhere" / "s").exists()
    with pytest.raises(ConfigError, match="val \\+ test < 1"):
        split_file(src, tmp_path, val=0.5, test=0.5)


def test_cli_convert_with_task_then_split(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "b.png")
    recs = [{"query": "<image>Colour?", "response": "black", "images": [f"{c}.png"]} for c in "aabb"]
    (tmp_path / "swift.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))

    def run(*args):
        return subprocess.run([sys.executable, "-m", "vlmtune.cli", *map(str, args)], capture_output=True,
                              text=True, timeout=300)

    done = run("data", "convert", tmp_path / "swift.jsonl", tmp_path / "all.jsonl", "--task", "vqa")
    assert done.returncode == 0, done.stderr
    assert {json.loads(line)["task"] for line in (tmp_path / "all.jsonl").read_text().splitlines()} == {"vqa"}
    done = run("data", "split", tmp_path / "all.jsonl", "--out", tmp_path, "--val", "0", "--test", "0.5",
               "--by", "image")
    assert done.returncode == 0, done.stderr
    train, test = _read(tmp_path / "train.jsonl"), _read(tmp_path / "test.jsonl")
    assert len(train) == len(test) == 2 and not (tmp_path / "val.jsonl").exists()
    assert {i for r in train for i in r["images"]}.isdisjoint({i for r in test for i in r["images"]})
    bad = run("data", "split", tmp_path / "all.jsonl", "--out", tmp_path, "--by", "pixel")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--by" in bad.stderr


def test_split_keeps_clips_together_and_rewrites_video_paths(tmp_path):
    (tmp_path / "data" / "clips").mkdir(parents=True)
    rows = []
    for c in range(6):
        (tmp_path / "data" / "clips" / f"{c}.mp4").write_bytes(b"clip")  # not decoded by split
        for q in range(4):
            rows.append({"id": f"{c}-{q}", "videos": [f"clips/{c}.mp4"], "messages": [
                {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": f"q{q}"}]},
                {"role": "assistant", "content": [{"type": "text", "text": f"a{q}"}]}]})
    src = tmp_path / "data" / "all.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    counts = split_file(src, tmp_path, val=0.2, test=0.2, by="image", seed=1)
    assert sum(counts.values()) == len(rows)
    clips = {}
    for name in ("train", "val", "test"):
        for line in (tmp_path / f"{name}.jsonl").read_text().splitlines():
            row = json.loads(line)
            assert row["videos"][0].startswith("data/clips/")  # relative to the output folder
            clips.setdefault(row["videos"][0], set()).add(name)
    assert all(len(names) == 1 for names in clips.values()), clips  # no clip in two splits
