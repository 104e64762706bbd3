"""Split one canonical JSONL into train / val / test, by sample or by image.

Why by image: datasets often ask several questions about one picture; if the picture is
in train and test, the test score measures memory of the picture, not the task. With
``by="image"`` samples that share any image (transitively: a two-image sample joins both
pictures' groups) land in the same split.

The groups are shuffled with ``seed`` and dealt out: test first until it holds
``round(n * test)`` samples, then val, the rest is train, so a whole group may push a split
slightly past its share. Lines are written unchanged except image paths, which are
rewritten relative to ``out``; every image must lie inside ``out`` (the dataset root the
loader resolves against), else nothing is written.

Example:
    >>> split_file(Path("data/all.jsonl"), Path("data"), val=0.1, test=0.1, by="image")  # doctest: +SKIP
    {'train': 800, 'val': 100, 'test': 100}
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from vlmtune.atomic import write_jsonl
from vlmtune.data.schema import iter_jsonl, load_samples
from vlmtune.errors import ConfigError, DataError

BY = ("id", "image")


def _groups(samples, by: str) -> list[list[int]]:
    """Indices of samples that must stay together (union of shared images or clips for ``image``)."""
    parent = list(range(len(samples)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if by == "image":
        owner: dict[Path, int] = {}
        for i, sample in enumerate(samples):
            for image in [*sample.images, *sample.videos]:
                j = owner.setdefault(image, i)
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(samples)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def assign(samples, *, val: float, test: float, by: str, seed: int) -> dict[str, list[int]]:
    """Sample indices per split (in input order within a split)."""
    groups = _groups(samples, by)
    random.Random(seed).shuffle(groups)
    want = {"test": round(len(samples) * test), "val": round(len(samples) * val)}
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for group in groups:
        name = next((s for s in ("test", "val") if len(out[s]) < want[s]), "train")
        out[name].extend(group)
    return {name: sorted(idx) for name, idx in out.items()}


def split_file(src: Path, out: Path, *, val: float = 0.1, test: float = 0.1, by: str = "id",
               seed: int = 0, root: Path | None = None, allow_outside_root: bool = False) -> dict[str, int]:
    """Write ``out/{train,val,test}.jsonl`` (empty splits are not written); returns counts."""
    if by not in BY:
        raise ConfigError(f"--by must be one of {BY}, got {by!r}", field="--by")
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ConfigError("--val and --test are fractions with val + test < 1", field="--val")
    src, out = Path(src), Path(out)
    if src.resolve().parent == out.resolve() and src.stem in ("train", "val", "test"):
        raise ConfigError(f"{src.name} would be overwritten by the split it is split into; "
                          "choose another --out", field="--out")
    samples = load_samples(src, root=root, allow_outside_root=allow_outside_root)
    raw = [obj for _, obj in iter_jsonl(src)]
    out_root = out.resolve()
    for sample, obj in zip(samples, raw):
        for key, files in (("images", sample.images), ("videos", sample.videos)):
            paths = []
            for i, path in enumerate(files):
                if not path.is_relative_to(out_root):
                    raise DataError(f"{key[:-1]} {path} would be outside the output folder {out_root}; write "
                                    f"the splits into a folder that contains the {key}",
                                    file=src, line=sample.line, field=f"{key}[{i}]")
                paths.append(Path(os.path.relpath(path, out_root)).as_posix())
            if paths:
                obj[key] = paths
                obj.pop(key[:-1], None)
    parts = assign(samples, val=val, test=test, by=by, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, indices in parts.items():
        if indices:
            write_jsonl(out / f"{name}.jsonl", [raw[i] for i in indices])
    return {name: len(indices) for name, indices in parts.items()}
