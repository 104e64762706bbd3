"""Tiny real-architecture VLMs load, train and generate through the ordinary HF path.

Each family is built once per session (``tiny_factory`` in tests/conftest.py), reloaded
with ``AutoProcessor`` / ``AutoModelForImageTextToText`` and driven exactly like a real
checkpoint: chat template -> processor -> forward + backward -> generate. The capability
tables in ``vlmtune.testing.tiny`` are checked both ways: what is marked unsupported must
still fail, so a transformers fix shows up here as a failing xfail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from vlmtune.testing import (
    DEFAULT_IMAGE_SIZE,
    IMAGE_TOKENS,
    MULTI_IMAGE_OK,
    TEXT_ONLY_BATCH_OK,
    TEXT_ONLY_OK,
    TINY_FAMILIES,
    build_tiny,
    train_tokenizer,
)

# PaliGemma's processor builds its BC `labels` with a numpy call that warns under numpy 2.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

ASK = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]}
ASK_TWO = {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Same?"}]}
ASK_TEXT = {"role": "user", "content": [{"type": "text", "text": "Count to three."}]}


def _reply(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def _image(seed: int, height: int = 40, width: int = 48) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _image_token_id(config) -> int:
    """The placeholder id the model replaces with image features (name differs by family)."""
    value = getattr(config, "image_token_id", None)
    return value if value is not None else config.image_token_index


@pytest.fixture(scope="module")
def loaded(tiny_factory):
    """``load(family) -> (processor, model)``, reloaded from disk once per module."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    cache = {}

    def load(family: str):
        if family not in cache:
            path = tiny_factory(family)
            cache[family] = (AutoProcessor.from_pretrained(path), AutoModelForImageTextToText.from_pretrained(path))
        return cache[family]

    return load


def _batch(processor, texts, images):
    kwargs = {"images": images} if images is not None else {}
    batch = processor(text=texts, return_tensors="pt", padding=True, padding_side="left", **kwargs)
    batch.pop("labels", None)  # PaliGemma's processor adds its own (all -100 without suffix=)
    return batch


def _train_step(model, batch) -> torch.Tensor:
    """One forward/backward with labels = non-pad input ids; returns the loss."""
    model.zero_grad(set_to_none=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    loss = model(**batch, labels=labels).loss
    assert torch.isfinite(loss), loss
    loss.backward()
    return loss.detach()


def _vision_grad(model) -> float:
    return sum(
        p.grad.abs().sum().item()
        for name, p in model.named_parameters()
        if p.grad is not None and ("vision" in name or "visual" in name)
    )


def _generate(model, batch) -> torch.Tensor:
    out = model.generate(**batch, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape == (batch["input_ids"].shape[0], batch["input_ids"].shape[1] + 3)
    return out


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_train_step_and_generate(family, loaded):
    processor, model = loaded(family)
    text = processor.apply_chat_template([ASK, _reply("red")], tokenize=False)
    batch = _batch(processor, [text], [[_image(0)]])
    _train_step(model, batch)
    assert _vision_grad(model) > 0, "no gradient reached the vision tower: image not used"

    prompt = processor.apply_chat_template([ASK], tokenize=False, add_generation_prompt=True)
    _generate(model, _batch(processor, [prompt], [[_image(0)]]))


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_image_changes_logits(family, loaded):
    processor, model = loaded(family)
    prompt = processor.apply_chat_template([ASK], tokenize=False, add_generation_prompt=True)
    with torch.no_grad():
        a, b = (model(**_batch(processor, [prompt], [[_image(seed)]])).logits[0, -1] for seed in (1, 2))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_chat_template_and_image_tokens(family, loaded):
    processor, model = loaded(family)
    prompt = processor.apply_chat_template([ASK], tokenize=False, add_generation_prompt=True)
    full = processor.apply_chat_template([ASK, _reply("red")], tokenize=False)
    assert processor.image_token in prompt and full.startswith(prompt) and full != prompt

    side = DEFAULT_IMAGE_SIZE[family]
    ids = _batch(processor, [prompt], [[_image(3, side, side)]])["input_ids"][0].tolist()
    assert ids.count(_image_token_id(model.config)) == IMAGE_TOKENS[family]
    full_ids = _batch(processor, [full], [[_image(3, side, side)]])["input_ids"][0].tolist()
    assert full_ids[: len(ids)] == ids, "prompt tokens are not a prefix of the full conversation"


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_special_tokens_are_single_ids(family, loaded):
    processor, model = loaded(family)
    tok = processor.tokenizer
    assert tok.pad_token is not None and tok.eos_token is not None
    specials = {*tok.all_special_tokens, *tok.extra_special_tokens, processor.image_token}
    for token in specials:
        ids = tok.encode(token, add_special_tokens=False)
        assert ids == [tok.convert_tokens_to_ids(token)], (token, ids)
    config_id = _image_token_id(model.config)
    assert config_id in {processor.image_token_id, getattr(tok, "image_token_id", None)}
    assert model.config.get_text_config().vocab_size >= len(tok)
    eos = model.generation_config.eos_token_id
    assert tok.eos_token_id in (eos if isinstance(eos, list) else [eos])
    assert model.generation_config.pad_token_id == tok.pad_token_id


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_multi_image_batch(family, loaded, request):
    if not MULTI_IMAGE_OK[family]:
        request.applymarker(pytest.mark.xfail(strict=True, reason="MULTI_IMAGE_OK is False"))
    processor, model = loaded(family)
    two = processor.apply_chat_template([ASK_TWO, _reply("no")], tokenize=False)
    one = processor.apply_chat_template([ASK, _reply("red")], tokenize=False)
    _train_step(model, _batch(processor, [two, one], [[_image(4), _image(5, 64, 32)], [_image(6)]]))
    prompt = processor.apply_chat_template([ASK_TWO], tokenize=False, add_generation_prompt=True)
    _generate(model, _batch(processor, [prompt], [[_image(4), _image(5, 64, 32)]]))


def _text_sample_intact(processor, batch, text: str, row: int) -> bool:
    """The text-only row holds exactly the tokenizer's encoding of ``text`` (after left padding)."""
    ids = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
    return ids == processor.tokenizer(text)["input_ids"]


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_text_only_sample_in_image_batch(family, loaded, request):
    if family not in TEXT_ONLY_OK:
        request.applymarker(pytest.mark.xfail(strict=True, reason="not in TEXT_ONLY_OK", raises=Exception))
    processor, model = loaded(family)
    with_image = processor.apply_chat_template([ASK, _reply("red")], tokenize=False)
    text_only = processor.apply_chat_template([ASK_TEXT, _reply("1 2 3")], tokenize=False)
    batch = _batch(processor, [with_image, text_only], [[_image(7)], []])
    assert _text_sample_intact(processor, batch, text_only, row=1)
    _train_step(model, batch)
    prompts = [processor.apply_chat_template([m], tokenize=False, add_generation_prompt=True) for m in (ASK, ASK_TEXT)]
    _generate(model, _batch(processor, prompts, [[_image(7)], []]))


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_text_only_batch(family, loaded, request):
    if family not in TEXT_ONLY_BATCH_OK:
        request.applymarker(pytest.mark.xfail(strict=True, reason="not in TEXT_ONLY_BATCH_OK", raises=ValueError))
    processor, model = loaded(family)
    texts = [processor.apply_chat_template([ASK_TEXT, _reply(a)], tokenize=False) for a in ("1 2 3", "one")]
    _train_step(model, _batch(processor, texts, None))


def test_same_seed_same_weights_and_options_apply(tmp_path):
    a = load_file(build_tiny("gemma3", tmp_path / "a", hidden=16, seed=3) / "model.safetensors")
    b = load_file(build_tiny("gemma3", tmp_path / "b", hidden=16, seed=3) / "model.safetensors")
    c = load_file(build_tiny("gemma3", tmp_path / "c", hidden=16, seed=4) / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    embed = next(v for k, v in a.items() if "embed_tokens" in k)
    assert embed.shape[1] == 16


def test_build_rejects_unknown_family_and_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match="unknown tiny family"):
        build_tiny("blip2", tmp_path)
    with pytest.raises(ValueError, match="hidden"):
        build_tiny("llava", tmp_path, hidden=20)


def test_train_tokenizer_special_tokens_first_and_corpus_override():
    specials = ["<pad>", "<|image_pad|>", "<end_of_turn>"]
    tok = train_tokenizer(["red circle"] * 5, vocab_size=400, special_tokens=specials)
    assert [tok.token_to_id(t) for t in specials] == [0, 1, 2]
    assert tok.encode("<|image_pad|><end_of_turn>").ids == [1, 2]
    assert tok.decode(tok.encode("a red circle at [1, 23]").ids) == "a red circle at [1, 23]"
    assert tok.get_vocab_size() < 400  # tiny corpus: few merges, vocab stops early
    with pytest.raises(ValueError, match="too small"):
        train_tokenizer(["x"], vocab_size=100, special_tokens=specials)
