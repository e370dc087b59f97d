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


# -- the expected outputs (the reference's process) -------------------------------------------


class _Same:
    """Equal to a fresh copy of itself (as Fraction is), but not a built-in value."""

    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.x == self.x

    __hash__ = None  # type: ignore[assignment]


class _Never:
    """Equal to nothing, not even itself: equal bytes must not pass it (NaN's way)."""

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = None  # type: ignore[assignment]


def _entry(value: object) -> tuple[str, object]:
    """What the judge keeps: ('P', fast) or ('H', its hash or None)."""
    from sandbox.code_harness import _expected_entry

    raw, fast = _expected_entry(value, True)
    if raw[:1] == b"P":
        assert raw[5:] == pickle.dumps(value, protocol=4)
        return "P", fast
    info = pickle.loads(raw[5:])
    return "H", info["sha256"]


def _sha(value: object) -> str:
    return hashlib.sha256(pickle.dumps(value, protocol=4)).hexdigest()


NAN = float("nan")
# Ints whose 4-byte pickles hold b"G\xff\xf5": bytes that look like a NaN float.
LOOKALIKE = [0xF5FF47 + (i << 24) for i in range(100)] * 300


@pytest.mark.parametrize(
    "value",
    [
        " ".join(str(i) for i in range(200_000)),
        [i // 2 if i % 2 else i / 2 for i in range(100_000)],  # HumanEval/130's kind
        LOOKALIKE,
        [[i, str(i), (i, None)] for i in range(20_000)],
        [float("inf"), float("-inf"), *range(30_000)],  # sums to NaN: checked exactly
        [_Same(i) for i in range(20_000)],
        [bytearray(b"G\x7f\xf8" * 30_000), 1],
    ],
    ids=["str", "numbers", "lookalike", "nested", "infinities", "reflexive-class", "bytearray"],
)
def test_a_large_expected_output_keeps_the_hash_a_right_answer_sends(value: object) -> None:
    assert _entry(value) == ("H", _sha(value))


def test_bytes_that_look_like_a_nan_are_told_apart() -> None:
    from sandbox.code_harness import _may_hold_nan

    assert _may_hold_nan(pickle.dumps(LOOKALIKE, protocol=4))  # so the sum decides
    assert _may_hold_nan(pickle.dumps([-NAN], protocol=4))
    assert not _may_hold_nan(pickle.dumps([1e308, -0.0, 2.5, -1e-300], protocol=4))


@pytest.mark.parametrize(
    "value",
    [
        [1.5, 1.5, 1.5, NAN, *range(30_000)],
        [[i, float(i)] for i in range(20_000)] + [[NAN]],
        {str(i): i for i in range(20_000)} | {"x": -NAN},
        [complex(1, i) for i in range(10_000)] + [complex(NAN, 0)],
        [_Never(), *range(30_000)],
    ],
    ids=["flat", "nested", "dict", "complex", "never-equal"],
)
def test_a_large_expected_output_holding_a_nan_keeps_no_hash(value: object) -> None:
    """Equal bytes would pass a program returning the same NaN, which evalplus's ``==``
    fails: without a hash every program's output is computed again and compared."""
    assert _entry(value) == ("H", None)


def test_small_expected_outputs_pass_on_equal_bytes_unless_they_hold_a_nan() -> None:
    assert _entry([1, 2.5, "x"]) == ("P", True)
    assert _entry([1, NAN]) == ("P", False)
    assert _entry(float("inf")) == ("P", True)
    assert _entry([_Never()]) == ("P", False)
