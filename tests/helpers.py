"""Test helpers."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from agents.tiny import arith_corpus, train_tokenizer


@lru_cache(maxsize=1)
def tiny_hf_tokenizer() -> Any:
    """A real byte-level BPE tokenizer (vocab ~600) trained locally on Arith text."""
    return train_tokenizer(arith_corpus())
