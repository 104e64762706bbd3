"""The synthetic "shapes world": a tiny, deterministic dataset for every task type.

Why: tests, the offline demo and method comparisons need data whose answers are known
exactly, that a small model can learn on CPU in minutes, and that covers each metric
(captioning, VQA, multiple choice, grounding, OCR/ANLS). Same arguments -> byte-identical
files: all randomness comes from ``random.Random`` seeded by (seed, split, image index),
PNGs carry no timestamps, JSON is written with a fixed key order.

Layout written under ``out_dir`` (the dataset root; image paths in samples are relative
to it)::

    images/{split}_scene_{i:05d}.png   shapes scenes, shared by the scene tasks of a split
    images/{split}_word_{i:05d}.png    rendered words (task "text")
    images/{split}_detail_{i:05d}.png  one small shape (task "detail")
    {split}_{task}.jsonl               one task of one split, e.g. train_grounding.jsonl
    {split}.jsonl                      all requested tasks of a split, interleaved per image
    synth.json                         the arguments and counts (for provenance)

with ``split`` in train/val/test. Images are generated per split and deduplicated by
content across splits, so no image appears in two splits. ``n`` is the number of samples
per task before splitting: each scene image yields one sample of every requested scene
task (caption, vqa, mc, mc_text, grounding, where), each word image one ``text`` sample,
each small-shape image one ``detail`` sample.

Tasks and answers:

- ``caption``: "Describe the image in one sentence."; several reference captions in
  ``answers``, the assistant turn holds the first.
- ``vqa``: colour / shape / count / relative-position questions with short answers
  (``answers`` lists synonyms, e.g. ``["2", "two"]``).
- ``mc``: question, lettered options "A. red\\nB. blue...", and "Answer with the option's
  letter from the given choices directly."; answer is the letter, option texts are in the
  sample's ``options`` list. ``mc_text`` asks the same question with the same options
  (for the same image) but says "Answer with the option's text ..." and its answer is
  the option text: train on it, test on ``mc`` to reproduce answer-format drift. Not in
  the defaults.
- ``grounding``: "Where is the red triangle? ..." -> ``"[x1, y1, x2, y2]"``, asked only
  about shapes whose colour+kind is unique in the scene.
- ``where``: "Where is the red triangle?" -> the 3x3 region of its box centre ("top
  left", "top", ..., "center", ..., "bottom right"; exact match). A coarse position word,
  never a box: the zoo model is pretrained on it so that it knows where things are,
  while grounding (boxes) stays a skill to fine-tune in. Not in the defaults.
- ``text``: "What word is written?" -> the word (scored by ANLS).
- ``detail``: "What shape is the red object?" about the one shape of an image, drawn 9-11 px
  wide at any image size (scene shapes in a 64-px image are 11 px and up): smaller than
  anything a vision tower pretrained on the scenes has seen. Exact match; not in the
  defaults.

Box convention (grounding): integer pixel coordinates of the image as stored
(``image_size`` square), xyxy, like torchvision: ``x1, y1`` inclusive, ``x2, y2``
exclusive, so width = ``x2 - x1`` and the shape's pixels are exactly those with
``x1 <= x < x2`` and ``y1 <= y < y2`` that have its colour. Boxes are tight.

Example:
    >>> import tempfile
    >>> files = synth(Path(tempfile.mkdtemp()), n=10, tasks=("vqa",))
    >>> sorted(files)
    ['test', 'test_vqa', 'train', 'train_vqa', 'val', 'val_vqa']
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from vlmtune.data.synth_scene import Scene, render_scene, render_word, sample_detail, sample_scene
from vlmtune.data.synth_tasks import SCENE_TASKS, TASKS, build_detail_sample, build_sample, build_text_sample

SPLITS = ("train", "val", "test")
DEFAULT_TASKS = ("caption", "vqa", "mc", "grounding", "text")


def split_counts(n: int, splits: Sequence[float]) -> dict[str, int]:
    """Samples per split: val and test are floored, train takes the rest.

    Example:
        >>> split_counts(2000, (0.8, 0.1, 0.1))
        {'train': 1600, 'val': 200, 'test': 200}
    """
    if len(splits) != 3 or any(f < 0 for f in splits) or abs(sum(splits) - 1) > 1e-6:
        raise ValueError(f"splits must be three fractions (train, val, test) summing to 1, "
                         f"got {tuple(splits)}")
    val, test = int(n * splits[1] + 1e-9), int(n * splits[2] + 1e-9)
    return {"train": n - val - test, "val": val, "test": test}


def _check_args(tasks: Sequence[str], n: int, image_size: int) -> None:
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise ValueError(f"unknown or no tasks {unknown}; choose from {TASKS}")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks repeated: {list(tasks)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 48 <= image_size <= 512:
        raise ValueError(f"image_size must be in [48, 512] (64-128 recommended), got {image_size}")


def _save_unique(image, path: Path, seen: set[str]) -> bool:
    """Write ``image`` as PNG unless identical pixels were already written (any split)."""
    digest = hashlib.sha256(image.tobytes()).hexdigest()
    if digest in seen:
        return False
    seen.add(digest)
    image.save(path, format="PNG", compress_level=6)
    return True


def _unique_scene(split: str, i: int, seed: int, size: int, seen: set[str]) -> tuple[Scene, Image.Image]:
    """Scene ``i`` of ``split``: redrawn (same rng) while its pixels were already used."""
    rng = random.Random(f"vlmtune-synth/{seed}/{split}/scene/{i}")
    while True:
        scene = sample_scene(rng, size)
        image = render_scene(scene)
        digest = hashlib.sha256(image.tobytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            return scene, image


def split_scenes(split: str, n: int, *, seed: int = 0, image_size: int = 64,
                 splits: Sequence[float] = (0.8, 0.1, 0.1)) -> list[Scene]:
    """The scenes (geometry, not files) that ``synth(n=n, seed=seed, ...)`` draws for ``split``,
    in file order: ``split_scenes("train", ...)[i]`` is ``images/train_scene_{i:05d}.png``.

    Replays the sampler, including the redraws of duplicate images of earlier splits, so
    scene-level labels (e.g. the zoo's vision-tower pretraining targets) can be derived
    for exactly the images of one split. Word images never equal scene images and do not
    change the replay.

    Example:
        >>> scenes = split_scenes("val", 30, seed=1)
        >>> len(scenes), all(1 <= len(s.shapes) <= 3 for s in scenes)
        (3, True)
    """
    _check_args(("caption",), n, image_size)
    counts = split_counts(n, splits)
    seen: set[str] = set()
    for name in SPLITS:
        scenes = [_unique_scene(name, i, seed, image_size, seen)[0] for i in range(counts[name])]
        if name == split:
            return scenes
    raise ValueError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")


def _scene_samples(split: str, i: int, seed: int, size: int, tasks: Sequence[str],
                   root: Path, seen: set[str]) -> list[dict]:
    rel = f"images/{split}_scene_{i:05d}.png"
    scene, image = _unique_scene(split, i, seed, size, seen)
    image.save(root / rel, format="PNG", compress_level=6)
    samples = []
    for task in tasks:
        key = "mc" if task == "mc_text" else task  # same question and options as `mc`
        task_rng = random.Random(f"vlmtune-synth/{seed}/{split}/scene/{i}/{key}")
        samples.append(build_sample(task, scene, rel, f"{split}-{i:05d}-{task}", task_rng))
    return samples


def _word_sample(split: str, i: int, seed: int, size: int, root: Path,
                 seen: set[str]) -> dict:
    rng = random.Random(f"vlmtune-synth/{seed}/{split}/word/{i}")
    rel = f"images/{split}_word_{i:05d}.png"
    while True:
        image, word = render_word(rng, size)
        if _save_unique(image, root / rel, seen):
            return build_text_sample(word, rel, f"{split}-{i:05d}-text")


def _detail_sample(split: str, i: int, seed: int, size: int, root: Path,
                   seen: set[str]) -> dict:
    rng = random.Random(f"vlmtune-synth/{seed}/{split}/detail/{i}")
    rel = f"images/{split}_detail_{i:05d}.png"
    while True:
        scene = sample_detail(rng, size)
        if _save_unique(render_scene(scene), root / rel, seen):
            return build_detail_sample(scene, rel, f"{split}-{i:05d}-detail")


def _write_jsonl(path: Path, samples: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for sample in samples:
            f.write(json.dumps(sample, ensure_ascii=False) + "\n")


def synth(out_dir: Path, *, tasks: Sequence[str] = DEFAULT_TASKS, n: int = 2000,
          seed: int = 0, image_size: int = 64,
          splits: Sequence[float] = (0.8, 0.1, 0.1)) -> dict[str, Path]:
    """Write the shapes-world dataset under ``out_dir``; return its JSONL files by stem.

    Keys are ``"{split}"`` and ``"{split}_{task}"`` (e.g. ``"train_grounding"``). Files
    of ours are overwritten, nothing else in ``out_dir`` is touched. Takes ~1 ms per image.

    Example:
        >>> import tempfile
        >>> files = synth(Path(tempfile.mkdtemp()), n=10, tasks=("grounding",), seed=1)
        >>> sum(1 for _ in files["train_grounding"].open())
        8
    """
    tasks = tuple(tasks)
    _check_args(tasks, n, image_size)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    counts = split_counts(n, splits)
    scene_tasks = [t for t in tasks if t in SCENE_TASKS]
    seen: set[str] = set()
    files: dict[str, Path] = {}
    for split in SPLITS:
        per_task: dict[str, list[dict]] = {t: [] for t in tasks}
        combined: list[dict] = []
        for i in range(counts[split]):
            samples = []
            if scene_tasks:
                samples += _scene_samples(split, i, seed, image_size, scene_tasks, out_dir, seen)
            if "text" in tasks:
                samples.append(_word_sample(split, i, seed, image_size, out_dir, seen))
            if "detail" in tasks:
                samples.append(_detail_sample(split, i, seed, image_size, out_dir, seen))
            for sample in samples:
                per_task[sample["task"]].append(sample)
            combined += samples
        for task in tasks:
            files[f"{split}_{task}"] = out_dir / f"{split}_{task}.jsonl"
            _write_jsonl(files[f"{split}_{task}"], per_task[task])
        files[split] = out_dir / f"{split}.jsonl"
        _write_jsonl(files[split], combined)
    manifest = {"generator": "vlmtune.data.synth", "seed": seed, "n": n,
                "image_size": image_size, "tasks": list(tasks), "splits": list(splits),
                "counts": counts}
    (out_dir / "synth.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return files
