"""Staged output of a conversion: nothing appears at the destination until it succeeded.

Why: a converter that dies on line 90,000 must not leave a half-written JSONL that a later
training run silently accepts. Samples go to a temporary file next to ``out`` and images
written by the converter (embedded bytes, copies; videos too) to a temporary folder; ``commit`` moves
both into place with renames, ``abort`` deletes them.

Image paths in the output are relative to the dataset root, which is ``out``'s folder
(what :func:`vlmtune.data.schema.load_samples` resolves against). Images the converter
writes live in ``<root>/<out stem>_images/``.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> with Staging(root / "train.jsonl", image_root=root) as st:
    ...     st.write({"id": "a", "messages": []}, file="src.json", line=1)
    ...     st.commit()
    1
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

from vlmtune.errors import ConfigError, DataError
# Function-level imports: PIL loads only when an image is checked.

OUTSIDE_POLICIES = ("error", "copy", "keep")
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp",
              "TIFF": ".tiff"}


class Staging:
    """Collects samples and images for ``out``; use as a context manager, then ``commit``.

    ``images_outside`` says what to do with a referenced image that is not inside the
    dataset root: ``"error"`` (default), ``"copy"`` it into ``<stem>_images/``, or
    ``"keep"`` a ``../`` path, only with ``allow_outside_root=True`` (the same
    acknowledgement the run config's ``data.allow_outside_root`` needs, asked at convert
    time so the file does not fail seconds into training).
    """

    def __init__(self, out: Path, *, image_root: Path, images_outside: str = "error",
                 check_images: bool = True, dedupe_ids: bool = False, allow_outside_root: bool = False):
        if images_outside not in OUTSIDE_POLICIES:
            raise ConfigError(f"must be one of {OUTSIDE_POLICIES}, got {images_outside!r}",
                              field="images_outside")
        self.out, self.root = Path(out), Path(out).parent
        self.image_root = Path(image_root)
        self.images_outside, self.check_images = images_outside, check_images
        self.allow_outside_root = allow_outside_root
        self.dedupe_ids = dedupe_ids
        self.image_dir_name = f"{self.out.stem}_images"
        missing, parent = [], self.root  # folders this conversion creates: removed again on failure
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        self._created_dirs = missing  # deepest first
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{self.out.name}.", suffix=".tmp")
        self._tmp_jsonl = Path(tmp)
        self._handle = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        self._tmp_images: Path | None = None
        self._ids: dict[str, int] = {}
        self.count = 0
        self.transform = None  # optional (sample, file, line) -> sample, e.g. box rewriting

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._handle is not None:  # not committed: error or early exit
            self.abort()

    def _image_dir(self) -> Path:
        if self._tmp_images is None:
            self._tmp_images = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{self.image_dir_name}."))
        return self._tmp_images

    def image_path(self, ref: str, *, file: str | Path, line: int, field: str, what: str = "image") -> str:
        """Output path (relative to the root) for an image (or video: ``what``) referenced as
        ``ref`` in the source; videos follow the images' inside-the-root policy."""
        if not isinstance(ref, str) or not ref.strip():
            raise DataError(f"{what} path must be a non-empty string, got {ref!r}",
                            file=file, line=line, field=field)
        source = Path(os.path.abspath(self.image_root / ref))
        if self.check_images and source.is_dir():
            raise DataError(f"{what} path is a folder: {source}" + (
                " (frames in a folder are not read as a video; give the video file)" if what == "video"
                else ""), file=file, line=line, field=field)
        if self.check_images and not source.is_file():
            raise DataError(f"{what} not found: {source} (relative paths resolve against the image root "
                            f"{self.image_root}, --image-root)", file=file, line=line, field=field)
        root = self.root.resolve()
        if source.resolve().is_relative_to(root):
            rel = os.path.relpath(source, os.path.abspath(self.root))
            return Path(rel if not rel.startswith("..") else source.resolve().relative_to(root)).as_posix()
        if self.images_outside == "keep":
            if not self.allow_outside_root:  # else training would refuse the file, seconds in
                raise DataError(f"{what} {source} is outside the dataset root {root}: training refuses "
                                "it unless the run config sets data.allow_outside_root: true; pass "
                                "--allow-outside-root to keep it that way, or --images-outside copy",
                                file=file, line=line, field=field)
            return Path(os.path.relpath(source, os.path.abspath(self.root))).as_posix()
        if self.images_outside == "error":
            raise DataError(f"{what} {source} is outside the dataset root {root}; write the "
                            "output inside the image folder, pass --images-outside copy (images_outside='copy'), "
                            "or --images-outside keep --allow-outside-root (then the run config needs "
                            "data.allow_outside_root: true)",
                            file=file, line=line, field=field)
        return self._copy(source, file=file, line=line, field=field)

    def _copy(self, source: Path, *, file: str | Path, line: int, field: str) -> str:
        """Copy an image from inside the source dataset's tree (``image_root``) only: a path
        that leaves it (``../../etc/passwd``, an absolute path, a symlink pointing out) is
        refused, so a crafted dataset cannot pull arbitrary files into the output."""
        image_root = self.image_root.resolve()
        if not source.resolve().is_relative_to(image_root):
            raise DataError(f"{source} is outside the source dataset's folder {image_root}; --images-outside "
                            "copy copies only files from inside it (name a wider folder with --image-root)",
                            file=file, line=line, field=field)
        rel = source.resolve().relative_to(image_root)
        target = self._image_dir() / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        return (Path(self.image_dir_name) / rel).as_posix()

    def image_bytes(self, data: bytes, *, file: str | Path, line: int, field: str) -> str:
        """Write embedded image bytes as-is (named by content, so repeats share a file)."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format or "PNG"
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise DataError(f"embedded image is not readable: {err}",
                            file=file, line=line, field=field) from None
        return self.media_bytes(data, EXTENSIONS.get(fmt, f".{fmt.lower()}"))

    def media_bytes(self, data: bytes, suffix: str) -> str:
        """Write a file's bytes as-is, named by content + ``suffix`` (repeats share a file);
        videos come here unchecked: decoding them is the trainer's job (data/video.py)."""
        name = hashlib.sha256(data).hexdigest()[:20] + suffix
        target = self._image_dir() / name
        if not target.exists():
            target.write_bytes(data)
        return f"{self.image_dir_name}/{name}"

    def staged_file(self, rel: str) -> Path:
        """Where an image path written in a sample is now (converter-written images are staged)."""
        head, _, tail = rel.partition("/")
        if head == self.image_dir_name and self._tmp_images is not None and (self._tmp_images / tail).exists():
            return self._tmp_images / tail
        return self.root / rel

    def write(self, sample: dict, *, file: str | Path, line: int) -> None:
        """Append one canonical sample; ids must be unique (or get ``-2``, ``-3``... suffixes)."""
        if self.transform is not None:
            sample = self.transform(sample, file=file, line=line)
        sid = sample["id"]
        if sid in self._ids:
            if not self.dedupe_ids:
                raise DataError(f"duplicate id {sid!r} (first on line {self._ids[sid]}); pass "
                                "dedupe_ids=True to suffix repeats", file=file, line=line, field="id")
            k = 2
            while f"{sid}-{k}" in self._ids:
                k += 1
            sid = sample["id"] = f"{sid}-{k}"
        self._ids[sid] = line
        self._handle.write(json.dumps(sample, ensure_ascii=False) + "\n")
        self.count += 1

    def commit(self) -> int:
        """Move images and the JSONL into place; returns the number of samples."""
        self._handle.close()
        self._handle = None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self._tmp_jsonl, 0o666 & ~umask)  # mkstemp/mkdtemp create owner-only
        if self._tmp_images is not None:
            os.chmod(self._tmp_images, 0o777 & ~umask)
            final = self.root / self.image_dir_name
            old = None
            if final.exists():
                old = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{self.image_dir_name}.old."))
                final.rename(old / "x")
            self._tmp_images.rename(final)
            if old is not None:
                shutil.rmtree(old)
        os.replace(self._tmp_jsonl, self.out)
        return self.count

    def abort(self) -> None:
        """Delete everything staged; the destination is left as it was."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self._tmp_jsonl.unlink(missing_ok=True)
        if self._tmp_images is not None:
            shutil.rmtree(self._tmp_images, ignore_errors=True)
        for folder in self._created_dirs:  # only folders this conversion made, and only if empty
            try:
                folder.rmdir()
            except OSError:
                break
