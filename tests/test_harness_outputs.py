"""How a program's process hashes a large output (the harness's ``_HashingSink``): streamed
through the pickler into the hash, never held whole, and to exactly the bytes
``pickle.dumps`` gives, which the expected outputs' hashes are of. A difference would make a
right answer's hash miss and, for a string, fail it."""

from __future__ import annotations

import hashlib
import pickle

import pytest

from sandbox.code_harness import DIGEST_MIN_BYTES, _HashingSink, _may_be_large

LARGE = [
    " ".join(str(i) for i in range(200_000)),  # HumanEval/15's kind: one ASCII string
    "é✓" * 60_000,  # not ASCII: UTF-8 encoded by the pickler
    bytes(range(256)) * 400,
    [float(i) / 3 for i in range(100_000)],  # HumanEval/130's kind
    [[i, str(i), (i, None)] for i in range(20_000)],
    {str(i): [i, i * 0.5] for i in range(20_000)},
    ("x" * 70_000, "y"),  # a large payload in a short container (pickled whole, then hashed)
]
SMALL = [[1, 2, 3] * 700, "abc" * 6_000, {i: i for i in range(2_100)}, (1.5,) * 2_048]


def _stream(value: object) -> _HashingSink:
    sink = _HashingSink()
    pickle.Pickler(sink, protocol=4).dump(value)
    return sink


@pytest.mark.parametrize("value", LARGE, ids=lambda v: type(v).__name__)
def test_a_large_output_hashes_to_its_dumps_bytes(value: object) -> None:
    blob = pickle.dumps(value, protocol=4)
    assert len(blob) >= DIGEST_MIN_BYTES
    sink = _stream(value)
    assert sink.sha is not None
    assert sink.sha.digest() == hashlib.sha256(blob).digest()  # type: ignore[attr-defined]
    assert sink.size == len(blob)
    assert not sink.head  # nothing kept once hashing started


@pytest.mark.parametrize("value", SMALL, ids=lambda v: type(v).__name__)
def test_a_small_output_is_kept_whole_as_dumps_gives_it(value: object) -> None:
    blob = pickle.dumps(value, protocol=4)
    assert len(blob) < DIGEST_MIN_BYTES and _may_be_large(value)
    sink = _stream(value)
    assert sink.sha is None
    assert bytes(sink.head) == blob and sink.size == len(blob)


def test_only_long_values_are_streamed() -> None:
    # Most outputs are pickled whole, as before: streaming costs more for a small value.
    assert not _may_be_large([1, 2, 3])
    assert not _may_be_large("x" * 100)
    assert not _may_be_large(10**100)
    assert _may_be_large("x" * (DIGEST_MIN_BYTES // 4))
    assert _may_be_large(list(range(DIGEST_MIN_BYTES // 32)))
