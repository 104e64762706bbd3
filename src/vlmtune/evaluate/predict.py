"""``vlmtune predict``: a quick look at what a model (and each of several adapters) answers.

All adapters load onto one base (PEFT ``load_adapter``) and are switched with
``set_adapter``, so comparing five adapters costs one base model in memory.

Example:
    >>> predict("vlmtune/tiny-shapes", ["runs/a/adapter"], ["x.png"], "What colour?")  # doctest: +SKIP
    {'base': 'red', 'a': 'red'}
"""

from __future__ import annotations

from pathlib import Path

from vlmtune.config import ModelConfig
from vlmtune.data.images import open_image
from vlmtune.errors import InputError
from vlmtune.evaluate.generate import Generator
from vlmtune.model.load import attach_adapter, load_base
from vlmtune.rundir import ADAPTER, MODEL, RunDir


def _message(prompt: str, n_images: int) -> list[dict]:
    content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": prompt}]
    return [{"role": "user", "content": content}]


def _open(paths: list[str]) -> list:
    images = []
    for path in paths:
        if not Path(path).is_file():
            raise InputError("image not found", file=path, field="--image")
        try:
            images.append(open_image(Path(path))[0])  # capped at the default data.max_image_pixels
        except (OSError, ValueError) as err:  # not an image, truncated, a decompression bomb
            raise InputError(f"not a readable image: {err}", file=path, field="--image") from None
    return images


def resolve_model(path: str) -> tuple[str, str]:
    """(directory to load, label for its answers): a run dir means its ``model/`` (full
    fine-tune); a ``vlmtune merge`` output is labelled ``merged:<run>``, a full fine-tune
    ``<run>``, anything else (hub id, zoo name, base dir) ``base``.

    Example:
        >>> resolve_model("vlmtune/tiny-shapes")
        ('vlmtune/tiny-shapes', 'base')
    """
    import json

    local = Path(path)
    if RunDir(local).config.is_file() and RunDir(local).model.is_dir():
        local = RunDir(local).model
    report = local / "merge_report.json"
    if report.is_file():
        run = json.loads(report.read_text()).get("run") or local.name
        return str(local), f"merged:{Path(run).name}"
    if local.name == MODEL and RunDir(local.parent).config.is_file():
        return str(local), local.parent.name
    return (str(local) if local.is_dir() else path), "base"


def resolve_adapter(path: str) -> tuple[Path, str]:
    """(adapter dir, name): ``runs/X`` and ``runs/X/adapter`` both mean run X's adapter."""
    local = Path(path)
    if not (local / "adapter_config.json").is_file() and (RunDir(local).adapter / "adapter_config.json").is_file():
        local = RunDir(local).adapter
    name = local.resolve().parent.name if local.name == ADAPTER else local.name
    return local, name


def predict(model_path: str, adapters: list[str], images: list[str], prompt: str, *,
            max_new_tokens: int = 64, trust_remote_code: bool = False) -> dict[str, str]:
    """Answers keyed by the model's label (``base``, ``merged:<run>``, ``<run>``; see
    :func:`resolve_model`) and by each adapter's name (its run's or directory's name)."""
    conversation, pictures = _message(prompt, len(images)), _open(images)  # bad input fails before loading
    model_dir, label = resolve_model(model_path)
    model, processor, family = load_base(ModelConfig(path=model_dir, trust_remote_code=trust_remote_code))
    model.eval()
    answers = {label: Generator(model, processor, family, max_new_tokens=max_new_tokens)(
        [conversation], [pictures])[0].text}
    names: list[str] = []
    for path in adapters:
        path, name = resolve_adapter(path)
        while name in names or name == label:
            name += "'"
        names.append(name)
        model = attach_adapter(model, path, name)
    model.eval()
    for name in names:
        model.set_adapter(name)
        generator = Generator(model, processor, family, max_new_tokens=max_new_tokens)
        answers[name] = generator([conversation], [pictures])[0].text
    return answers
