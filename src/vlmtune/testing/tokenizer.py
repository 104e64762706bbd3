"""Locally trained byte-level BPE tokenizers for the tiny test models.

Why: no tokenizer can be downloaded in tests, yet the processors, chat templates and
label masking must see the *family's* special tokens as single ids (``<|image_pad|>``,
``<start_of_turn>``, ``<|eot_id|>``...). We train a small byte-level BPE with the
``tokenizers`` library on a built-in corpus and register the family's special tokens
first, so they get the lowest ids and are never split.

Example:
    >>> tok = train_tokenizer(["a red circle", "a blue square"], vocab_size=300,
    ...                       special_tokens=["<pad>", "<image>"])
    >>> tok.token_to_id("<image>"), len(tok.encode("<image>red").ids) >= 2
    (1, True)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from vlmtune.testing.corpus import default_corpus

_N_BYTES = 256  # byte-level alphabet: every byte is a base token

# Pre-split into chunks BPE never merges across: runs of newlines (with the spaces before
# them) as one chunk, words with one leading space, single digits, punctuation runs.
# Keeping "\n\n" whole makes a generation prompt ending in "\n\n" tokenize as a prefix of
# the full conversation, as in Llama 3 / Qwen tokenizers.
_SPLIT = r"\s*[\r\n]+| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def train_tokenizer(
    corpus: Iterable[str], *, vocab_size: int = 1024, special_tokens: list[str]
) -> Tokenizer:
    """Train a byte-level BPE whose first ids are ``special_tokens`` (each a single id).

    Digits are split one per token (as Llama/Gemma do), which keeps box coordinates such
    as ``[12, 40, 56, 84]`` cheap to learn. The vocabulary may end up smaller than
    ``vocab_size`` when the corpus has too few distinct pairs to merge.
    """
    specials = list(dict.fromkeys(special_tokens))
    if vocab_size < len(specials) + _N_BYTES:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: need at least {len(specials) + _N_BYTES} "
            f"({len(specials)} special tokens + {_N_BYTES} bytes)"
        )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return tokenizer


@dataclass(frozen=True)
class TokenPlan:
    """Which special tokens a family has, and which roles they play.

    ``tokens`` lists every special token in id order; ``named`` maps processor-visible
    attribute names (``image_token``, ``boi_token``...) to tokens, which become
    ``tokenizer.image_token`` / ``tokenizer.image_token_id`` after loading.
    ``add_bos`` mirrors tokenizers that prepend BOS themselves (Llama/Mistral SentencePiece).

    Example:
        >>> TokenPlan(tokens=("<s>", "</s>"), bos="<s>", eos="</s>", pad="</s>").all_tokens()
        ['<s>', '</s>']
    """

    tokens: tuple[str, ...]
    eos: str
    pad: str
    bos: str | None = None
    unk: str | None = None
    named: dict[str, str] = field(default_factory=dict)
    add_bos: bool = False

    def all_tokens(self) -> list[str]:
        """Every special token, role and named ones included, without duplicates."""
        roles = [t for t in (self.pad, self.eos, self.bos, self.unk) if t]
        return list(dict.fromkeys([*self.tokens, *roles, *self.named.values()]))


def build_hf_tokenizer(plan: TokenPlan, corpus: Iterable[str] | None = None, vocab_size: int = 1024):
    """Train a tokenizer for ``plan`` and wrap it as a transformers ``TokenizersBackend``.

    Saved with ``save_pretrained`` it reloads through ``AutoTokenizer`` unchanged
    (``tokenizer_class`` is the generic backend, so no family class rebuilds the
    pre-tokenizer). Named tokens become attributes with ``_id`` twins.

    Example:
        >>> plan = TokenPlan(tokens=("<pad>", "<image>"), eos="<pad>", pad="<pad>",
        ...                  named={"image_token": "<image>"})
        >>> build_hf_tokenizer(plan, ["hello"], 300).image_token_id
        1
    """
    from transformers import TokenizersBackend

    specials = plan.all_tokens()
    lines = default_corpus() if corpus is None else list(corpus)
    backend = train_tokenizer(lines, vocab_size=vocab_size, special_tokens=specials)
    named_or_role = {plan.pad, plan.eos, plan.bos, plan.unk, *plan.named.values()}
    others = [t for t in specials if t not in named_or_role]
    kwargs = {key: value for key, value in (("bos_token", plan.bos), ("unk_token", plan.unk)) if value}
    if plan.add_bos:
        kwargs["add_bos_token"] = True
    return TokenizersBackend(
        tokenizer_object=backend,
        eos_token=plan.eos,
        pad_token=plan.pad,
        extra_special_tokens=others,
        **kwargs,
        **plan.named,
    )
