"""Labels by token overlap: a token straddling the answer's start is labelled (byte-level
``Ġgreen`` and SentencePiece ``▁green``), labels are checked against the answers after
encoding, and ``{% generation %}`` masks agree with the spans."""

from __future__ import annotations

import pytest
from PIL import Image
from transformers import AutoProcessor

from vlmtune.data.chat_template import template_info
from vlmtune.data.encode import IGNORE, Rendered, call_processor, encode_sample, labelled_tokens, prompt_text
from vlmtune.data.label_check import labelled_runs
from vlmtune.data.schema import Sample
from vlmtune.errors import DataError
from vlmtune.families import get_family
from vlmtune.testing.templates import LLAVA_TRAILING_SPACE as TRAILING_SPACE

LLAVA = get_family("llava")


def _sample(*turns: str, image: bool = True) -> Sample:
    messages = []
    for k in range(0, len(turns), 2):
        content = [{"type": "image"}] if image and k == 0 else []
        messages.append({"role": "user", "content": [*content, {"type": "text", "text": turns[k]}]})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": turns[k + 1]}]})
    return Sample("s", [], messages, answers=[turns[-1]], file="train.jsonl", line=3)


def _image():
    return Image.new("RGB", (32, 32), "green")


@pytest.fixture(scope="module")
def bpe_llava(tiny_factory):
    processor = AutoProcessor.from_pretrained(tiny_factory("llava"))
    processor.chat_template = TRAILING_SPACE
    return processor


def _metaspace_tokenizer():
    """A SentencePiece-style (``▁word``) BPE with Llama's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import TokenizersBackend

    from vlmtune.testing.corpus import default_corpus

    specials = ["<unk>", "<s>", "</s>", "<image>", "<pad>"]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    backend.train_from_iterator(default_corpus(), trainers.BpeTrainer(vocab_size=800, special_tokens=specials,
                                                                      show_progress=False))
    return TokenizersBackend(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                             pad_token="<pad>", image_token="<image>", add_bos_token=True)


@pytest.fixture(scope="module")
def spm_llava(bpe_llava):
    from transformers import LlavaProcessor

    return LlavaProcessor(image_processor=bpe_llava.image_processor, tokenizer=_metaspace_tokenizer(),
                          patch_size=8, vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=TRAILING_SPACE)


@pytest.mark.parametrize("which,glued", [("bpe_llava", "Ġgreen"), ("spm_llava", "▁green")])
def test_a_token_straddling_the_answer_start_is_labelled(which, glued, request):
    processor = request.getfixturevalue(which)
    sample = _sample("What color is the square?", "green")
    text = processor.apply_chat_template(sample.messages, tokenize=False)
    assert text == "USER: <image>\nWhat color is the square?\nASSISTANT: green\n"
    plain = processor.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    tokens = processor.tokenizer.convert_ids_to_tokens(plain["input_ids"])
    k = tokens.index(glued)  # the space is glued to the answer: the token starts before "green"
    assert plain["offset_mapping"][k][0] < text.index("green")
    ids = {processor.tokenizer.convert_tokens_to_ids("<image>")}
    enc = encode_sample(processor, LLAVA, sample, [_image()], ids)
    labelled = [t for t in enc.labels if t != IGNORE]
    assert processor.tokenizer.convert_ids_to_tokens(labelled)[0] == glued
    assert "".join(processor.tokenizer.decode(labelled).split()) == "green"
    # the prompt served for this conversation is the training sequence up to the first label
    first = next(i for i, t in enumerate(enc.labels) if t != IGNORE)
    prompt = prompt_text(processor, LLAVA, sample.prompt_messages)
    served = call_processor(processor, [Rendered(prompt)], [[_image()]])["input_ids"][0].tolist()
    assert served == enc.input_ids[:first]
    assert prompt.endswith("ASSISTANT:")
    note = template_info(processor).note
    assert "ASSISTANT: '" in note and "ASSISTANT:'" in note and "joins ' '" in note


def test_overlap_rule():
    offsets = [(0, 0), (0, 10), (10, 16), (16, 17), (17, 27)]  # BOS, prompt, "Ġgreen", "\n", next turn
    assert labelled_tokens(offsets, [(11, 17)]) == [2, 3]
    assert labelled_tokens(offsets, [(10, 16)]) == [2]
    assert labelled_tokens(offsets, [(16, 16)]) == []


def test_every_answer_of_a_multi_turn_sample_is_labelled(bpe_llava):
    sample = _sample("What color is the square?", "green", "And the circle?", "red [1, 2]")
    enc = encode_sample(bpe_llava, LLAVA, sample, [_image()], set())
    runs = [bpe_llava.tokenizer.decode(run) for run in labelled_runs(enc.labels)]
    assert [r.strip() for r in runs] == ["green", "red [1, 2]"]


def test_a_wrong_label_is_an_error_naming_the_sample(bpe_llava, monkeypatch):
    from vlmtune.data import encode

    sample = _sample("What color is the square?", "green")
    real = encode.labelled_tokens
    monkeypatch.setattr(encode, "labelled_tokens", lambda offsets, spans: [k - 1 for k in real(offsets, spans)])
    with pytest.raises(DataError) as err:
        encode_sample(bpe_llava, LLAVA, sample, [_image()], set())
    assert str(err.value) == ("train.jsonl:3: messages: answer 1: the labelled tokens decode to ':', "
                              "expected ' green'")
    monkeypatch.setattr(encode, "labelled_tokens", lambda offsets, spans: real(offsets, spans)[1:])
    with pytest.raises(DataError, match=r"train.jsonl:3: messages: labels cover 0 stretch\(es\) for 1 answer"):
        encode_sample(bpe_llava, LLAVA, sample, [_image()], set())


def test_generation_mask_agrees_with_spans(tiny_factory, corpus_dir):
    """LLaVA-1.5 and LLaVA-OneVision carry {% generation %}: transformers' assistant mask
    covers the same answer tokens as the spans (the spans add the end-of-turn)."""
    from vlmtune.data.label_check import check_generation_mask
    from vlmtune.data.encode import render_chat

    for name, family in (("llava-1.5-7b-hf.jinja", "llava"), ("llava-onevision-qwen2-hf.jinja", "llava_onevision")):
        processor = AutoProcessor.from_pretrained(tiny_factory(family))
        processor.chat_template = (corpus_dir / name).read_text()
        assert template_info(processor).generation_tags
        sample = _sample("What color is the square?", "green", "And the circle?", "red [1, 2]")
        check_generation_mask(processor, sample, render_chat(processor, sample.messages))
        enc = encode_sample(processor, get_family(family), sample, [_image()], set())
        assert len(labelled_runs(enc.labels)) == 2


def test_a_generation_mask_that_disagrees_is_an_error(bpe_llava, corpus_dir):
    """A template whose {% generation %} block also covers the question: the mask and the
    spans disagree, and encoding says so for the sample."""
    template = (corpus_dir / "llava-1.5-7b-hf.jinja").read_text()
    template = template.replace("{% if message['role'] != 'assistant' %}{% for content",
                                "{% if message['role'] != 'assistant' %}{% generation %}{% for content", 1)
    template = template.replace("{% endfor %}{% else %}", "{% endfor %}{% endgeneration %}{% else %}", 1)
    processor = AutoProcessor.from_pretrained(bpe_llava.tokenizer.name_or_path)
    processor.chat_template = template
    sample = _sample("What color is the square?", "green")
    with pytest.raises(DataError, match=r"train.jsonl:3: messages: .*generation.*disagrees"):
        encode_sample(processor, LLAVA, sample, [_image()], set())
