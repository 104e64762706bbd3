"""Seeded random init and generation defaults shared by every tiny build (recipes and generated).

Example:
    >>> model = init_model(config, seed=0, post_init=None)     # doctest: +SKIP
"""

from __future__ import annotations


def generation_config(tokenizer, stop_tokens: tuple[str, ...]):
    """Generation defaults: stop on EOS and the family's end-of-turn tokens, pad with ``pad_token``."""
    from transformers import GenerationConfig

    stops = [tokenizer.eos_token_id, *(tokenizer.convert_tokens_to_ids(t) for t in stop_tokens)]
    stops = list(dict.fromkeys(stops))
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=stops[0] if len(stops) == 1 else stops,
        pad_token_id=tokenizer.pad_token_id,
    )


def init_model(config, seed: int, post_init):
    """Random-init the model with ``seed`` without disturbing the caller's RNG state."""
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config)
        if post_init is not None:
            post_init(model)
    return model
