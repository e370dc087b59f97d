"""Test helpers."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from agents.tiny import arith_corpus, train_tokenizer


@lru_cache(maxsize=1)
def tiny_hf_tokenizer() -> Any:
    """A real byte-level BPE tokenizer (vocab ~600) trained locally on Arith text."""
    return train_tokenizer(arith_corpus())


def plus_reference(
    canonical: str,
    base: list[list[Any]],
    plus: list[list[Any]] | None = None,
    *,
    prompt: str = "def f(x):\n",
    **extra: Any,
) -> str:
    """A HumanEval+ grading reference for an entry point ``f`` (the ``code`` verifier's
    ``humanevalplus`` kind), with these base and plus inputs and exact comparison unless
    ``extra`` says otherwise."""
    return json.dumps(
        {
            "kind": "humanevalplus",
            "prompt": prompt,
            "entry_point": "f",
            "canonical": canonical,
            "base_input": base,
            "plus_input": plus or [],
            "atol": 0,
            **extra,
        }
    )
