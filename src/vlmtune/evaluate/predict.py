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
from vlmtune.errors import InputError
from vlmtune.evaluate.generate import Generator
from vlmtune.model.load import attach_adapter, load_base
# Function-level imports: PIL loads only when images are opened.


def _message(prompt: str, n_images: int) -> list[dict]:
    content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": prompt}]
    return [{"role": "user", "content": content}]


def _open(paths: list[str]) -> list:
    from PIL import Image

    images = []
    for path in paths:
        if not Path(path).is_file():
            raise InputError("image not found", file=path, field="--image")
        with Image.open(path) as img:
            images.append(img.convert("RGB"))
    return images


def predict(model_path: str, adapters: list[str], images: list[str], prompt: str, *,
            max_new_tokens: int = 64, trust_remote_code: bool = False) -> dict[str, str]:
    """Answers keyed by ``base`` and by each adapter's name (its directory name)."""
    model, processor, family = load_base(ModelConfig(path=model_path, trust_remote_code=trust_remote_code))
    model.eval()
    conversation, pictures = _message(prompt, len(images)), _open(images)
    answers = {"base": Generator(model, processor, family, max_new_tokens=max_new_tokens)(
        [conversation], [pictures])[0].text}
    names: list[str] = []
    for path in adapters:
        name = Path(path).resolve().parent.name if Path(path).name == "adapter" else Path(path).name
        while name in names or name == "base":
            name += "'"
        names.append(name)
        model = attach_adapter(model, path, name)
    model.eval()
    for name in names:
        model.set_adapter(name)
        generator = Generator(model, processor, family, max_new_tokens=max_new_tokens)
        answers[name] = generator([conversation], [pictures])[0].text
    return answers
