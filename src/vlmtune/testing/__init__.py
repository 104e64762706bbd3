"""Test support: tiny real-architecture VLM checkpoints built offline.

Example:
    >>> from vlmtune.testing import TINY_FAMILIES, build_tiny
    >>> "qwen2_vl" in TINY_FAMILIES
    True
"""

from vlmtune.testing.tiny import (
    DEFAULT_IMAGE_SIZE,
    IMAGE_TOKENS,
    MULTI_IMAGE_OK,
    TEXT_ONLY_BATCH_OK,
    TEXT_ONLY_OK,
    TINY_FAMILIES,
    build_tiny,
)
from vlmtune.testing.tokenizer import train_tokenizer

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "IMAGE_TOKENS",
    "MULTI_IMAGE_OK",
    "TEXT_ONLY_BATCH_OK",
    "TEXT_ONLY_OK",
    "TINY_FAMILIES",
    "build_tiny",
    "train_tokenizer",
]
