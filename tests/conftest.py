"""Shared fixtures. Benchmark data comes from $BRITE_DATA_DIR, defaulting to ../shared/data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
_DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"

if "BRITE_DATA_DIR" not in os.environ and _DEFAULT_DATA.is_dir():
    os.environ["BRITE_DATA_DIR"] = str(_DEFAULT_DATA)
# Never wait on the hub from tests: it cannot be reached on CI machines.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared benchmark data folder; tests that need it skip, saying why, without it."""
    value = os.environ.get("BRITE_DATA_DIR")
    if not value or not Path(value).is_dir():
        pytest.skip(f"benchmark data not found (BRITE_DATA_DIR={value!r}); set BRITE_DATA_DIR")
    return Path(value)


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    """A fresh tiny random Llama (eval mode) and its locally trained tokenizer, per module."""
    pytest.importorskip("torch")
    from agents.tiny import build_tiny

    model, tokenizer = build_tiny(seed=0)
    model.eval()
    return model, tokenizer


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """The tiny model gains nothing from more threads, and on a busy machine OpenMP
    threads waiting on each other make it many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
