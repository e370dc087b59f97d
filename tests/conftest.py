"""Shared fixtures. Benchmark data comes from $BRITE_DATA_DIR, defaulting to ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

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
