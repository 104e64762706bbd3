"""The shapes world: deterministic, split-disjoint, and its answers match the pixels."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmtune.data.synth import split_counts, synth
from vlmtune.data.synth_scene import COLOURS, KINDS, WORDS
from vlmtune.data.synth_tasks import TASKS

ALL = ("caption", "vqa", "mc", "mc_text", "grounding", "where", "text", "detail")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    out = tmp_path_factory.mktemp("shapes")
    return out, synth(out, tasks=ALL, n=60, seed=3, image_size=64)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def test_same_seed_gives_byte_identical_output(tmp_path):
    a = synth(tmp_path / "a", n=20, seed=7, image_size=80)
    synth(tmp_path / "b", n=20, seed=7, image_size=80)
    synth(tmp_path / "c", n=20, seed=8, image_size=80)
    assert _tree_hash(tmp_path / "a") == _tree_hash(tmp_path / "b")
    assert _tree_hash(tmp_path / "a") != _tree_hash(tmp_path / "c")
    assert Image.open(tmp_path / "a" / _read(a["train"])[0]["images"][0]).size == (80, 80)


def test_layout_and_counts(world):
    out, files = world
    counts = split_counts(60, (0.8, 0.1, 0.1))
    assert counts == {"train": 48, "val": 6, "test": 6}
    assert set(files) == {s for s in counts} | {f"{s}_{t}" for s in counts for t in ALL}
    for split, k in counts.items():
        assert files[split] == out / f"{split}.jsonl"
        for task in ALL:
            samples = _read(files[f"{split}_{task}"])
            assert len(samples) == k and {s["task"] for s in samples} == {task}
        assert len(_read(files[split])) == k * len(ALL)
    manifest = json.loads((out / "synth.json").read_text())
    assert manifest["counts"] == counts and manifest["tasks"] == list(ALL)


def test_every_sample_is_canonical(world, check_canonical):
    _, files = world
    for path in files.values():
        check_canonical(path)


def test_no_image_shared_between_splits(world):
    out, files = world
    paths = {s: {p for x in _read(files[s]) for p in x["images"]} for s in ("train", "val", "test")}
    pixels = {s: {hashlib.sha256(Image.open(out / p).tobytes()).hexdigest() for p in ps}
              for s, ps in paths.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not paths[a] & paths[b] and not pixels[a] & pixels[b]
    on_disk = {p.relative_to(out).as_posix() for p in (out / "images").iterdir()}
    assert on_disk == paths["train"] | paths["val"] | paths["test"]


FILL = {"square": (1.0, 1.0), "circle": (0.70, 0.86), "triangle": (0.40, 0.65)}


def test_boxes_are_tight_and_hold_the_named_shape(world):
    out, files = world
    samples = [s for split in ("train", "val", "test") for s in _read(files[f"{split}_grounding"])]
    for sample in samples:
        colour, kind = re.match(r"Where is the (\w+) (\w+)\?", _prompt(sample)).groups()
        x1, y1, x2, y2 = json.loads(sample["answers"][0])
        image = np.asarray(Image.open(out / sample["images"][0]).convert("RGB"))
        assert 0 <= x1 < x2 <= image.shape[1] and 0 <= y1 < y2 <= image.shape[0]
        mask = (image == COLOURS[colour]).all(-1)
        inside = mask[y1:y2, x1:x2]
        # Tight: the colour touches all four edges of the box.
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        low, high = FILL[kind]
        assert low <= inside.mean() <= high, (sample["id"], inside.mean())
        # Nothing else drawn inside the box: only the colour and the background.
        background = image[0, 0] if not mask[0, 0] else image[-1, -1]
        crop = image[y1:y2, x1:x2]
        assert (inside | (crop == background).all(-1)).all(), sample["id"]
        # The named shape is unique, so no other pixel of this colour touches the box.
        assert not mask[max(0, y1 - 1):y2 + 1, max(0, x1 - 1):x2 + 1].sum() > inside.sum()


def _prompt(sample: dict) -> str:
    return "".join(c.get("text", "") for c in sample["messages"][0]["content"])


def test_multiple_choice_letters_and_options(world):
    _, files = world
    for split in ("train", "val", "test"):
        mc, mc_text = _read(files[f"{split}_mc"]), _read(files[f"{split}_mc_text"])
        for letter, text in zip(mc, mc_text, strict=True):
            options = letter["options"]
            assert 2 <= len(options) <= 4 and len(set(options)) == len(options)
            lines = _prompt(letter).split("\n")
            assert lines[1:-1] == [f"{chr(65 + i)}. {o}" for i, o in enumerate(options)]
            assert lines[-1] == "Answer with the option's letter from the given choices directly."
            assert re.fullmatch(r"[A-D]", letter["answers"][0])
            chosen = options[ord(letter["answers"][0]) - 65]
            # mc_text: same image, question and options; the answer is the option text.
            assert text["images"] == letter["images"] and text["options"] == options
            assert _prompt(text).split("\n")[:-1] == lines[:-1]
            assert text["answers"] == [chosen]


def test_vqa_and_caption_answers_agree_with_the_image(world):
    out, files = world
    for sample in _read(files["train_vqa"]):
        question, answers = _prompt(sample).split("\n")[0], sample["answers"]
        image = np.asarray(Image.open(out / sample["images"][0]).convert("RGB"))
        if m := re.fullmatch(r"What color is the (\w+)\?", question):
            assert (image == COLOURS[answers[0]]).all(-1).any() and m.group(1) in KINDS
        elif m := re.fullmatch(r"How many (\w+) shapes are there\?", question):
            present = (image == COLOURS[m.group(1)]).all(-1).any()
            assert answers[0] in ("0", "1", "2", "3") and (answers[0] == "0") != present
    for sample in _read(files["train_caption"]):
        assert len(sample["answers"]) >= 3 and all(a.endswith(".") for a in sample["answers"])


def test_where_answers_name_the_third_of_the_image_holding_the_shape(world):
    from vlmtune.data.synth import split_scenes

    out, files = world
    answers = set()
    for split in ("train", "test"):
        scenes = split_scenes(split, 60, seed=3, image_size=64)
        for sample in _read(files[f"{split}_where"]):
            m = re.fullmatch(r"Where is the (\w+) (\w+)\?", _prompt(sample).split("\n")[0])
            scene = scenes[int(sample["id"].split("-")[1])]
            (shape,) = [s for s in scene.shapes if (s.colour, s.kind) == m.groups()]  # named shapes are unique
            image = np.asarray(Image.open(out / sample["images"][0]).convert("RGB"))
            x1, y1, x2, y2 = shape.box
            assert (image[y1:y2, x1:x2] == COLOURS[shape.colour]).all(-1).any()
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            row = "top" if cy < 64 / 3 else "bottom" if cy >= 128 / 3 else ""
            col = "left" if cx < 64 / 3 else "right" if cx >= 128 / 3 else ""
            assert sample["answers"] == [f"{row} {col}".strip() or "center"]
            answers.add(sample["answers"][0])
    assert len(answers) >= 5  # the nine regions are all in use, not one constant


def test_text_task_words_are_drawn(world):
    out, files = world
    for sample in _read(files["train_text"]):
        assert sample["answers"][0] in WORDS and _prompt(sample) == "What word is written?"
        image = np.asarray(Image.open(out / sample["images"][0]).convert("L"))
        ink = image < 100
        ys, xs = np.nonzero(ink)
        assert ink.any() and ys.max() - ys.min() >= 8  # at least the 11-px glyph height


def test_detail_answer_is_the_kind_the_small_shape_is_drawn_as(world):
    """One shape DETAIL_SIDE px wide in the colour the question names; of the three kinds drawn into
    its pixel box, only the answer's mask reproduces its pixels exactly."""
    from vlmtune.data.synth_scene import BACKGROUNDS, DETAIL_SIDE, _mask

    out, files = world
    kinds = set()
    for split in ("train", "val", "test"):
        for sample in _read(files[f"{split}_detail"]):
            colour = _prompt(sample).split("What shape is the ")[1].split(" object?")[0]
            image = np.asarray(Image.open(out / sample["images"][0]).convert("RGB"))
            drawn = (image == COLOURS[colour]).all(axis=-1)
            background = ~drawn & ~np.any([(image == v).all(axis=-1) for v in BACKGROUNDS.values()], axis=0)
            assert not background.any()  # nothing but the background and the one shape
            ys, xs = np.nonzero(drawn)
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            lo, hi = DETAIL_SIDE
            assert lo <= box[2] - box[0] <= hi and lo <= box[3] - box[1] <= hi
            fits = [k for k in KINDS if (np.asarray(_mask(k, box, 64)) > 0).tolist() == drawn.tolist()]
            assert fits == sample["answers"], (sample["id"], fits)
            kinds.add(fits[0])
    assert kinds == set(KINDS)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown"):
        synth(tmp_path, tasks=("ocr",), n=5)
    with pytest.raises(ValueError, match="splits"):
        synth(tmp_path, n=5, splits=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="image_size"):
        synth(tmp_path, n=5, image_size=16)
    assert set(ALL) == set(TASKS)


def test_split_scenes_replays_the_written_images(world):
    from vlmtune.data.synth import split_scenes
    from vlmtune.data.synth_scene import render_scene

    root, files = world
    for split in ("train", "val", "test"):
        scenes = split_scenes(split, 60, seed=3, image_size=64)
        assert len(scenes) == split_counts(60, (0.8, 0.1, 0.1))[split]
        for i, scene in enumerate(scenes):
            written = Image.open(root / "images" / f"{split}_scene_{i:05d}.png").convert("RGB")
            assert written.tobytes() == render_scene(scene).tobytes(), (split, i)
    with pytest.raises(ValueError, match="unknown split"):
        split_scenes("dev", 60, seed=3)
