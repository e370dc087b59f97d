"""Spaces that admit real LLM text and token sequences.

Gymnasium's ``Text`` space defaults to an alphanumeric charset, which rejects spaces,
newlines, LaTeX and every non-ASCII character a model writes. ``UnicodeText`` accepts any
string up to a length; ``TokenIds`` is a bounded sequence of token ids. Both subclass the
Gymnasium spaces that the vector utilities know, so batching works unchanged.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np
from gymnasium import spaces

# Characters used only for *sampling* (the env checker samples random actions);
# membership accepts any str.
_SAMPLE_CHARSET = (
    string.ascii_letters + string.digits + string.punctuation + " \n\t" + "πθ∑√≤≥±×÷°∞αβγ→é中"
)


class UnicodeText(spaces.Text):
    """Any Python string of ``min_length`` to ``max_length`` characters."""

    def __init__(
        self,
        max_length: int,
        *,
        min_length: int = 0,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(
            max_length=max_length, min_length=min_length, charset=_SAMPLE_CHARSET, seed=seed
        )

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        # Keep samples short: the checker only needs valid members, not 100k-char strings.
        if mask is None and probability is None:
            length = int(self.np_random.integers(self.min_length, min(self.max_length, 64) + 1))
            return super().sample(mask=(length, None))
        return super().sample(mask=mask, probability=probability)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, UnicodeText)
            and self.min_length == other.min_length
            and self.max_length == other.max_length
        )

    __hash__ = spaces.Text.__hash__


class TokenSequence(Sequence[int]):
    """An immutable token-id sequence: a length-bounded, read-only window on a buffer whose
    written prefix never changes.

    Token-mode envs return one per step. Building it is O(1) (no copy of the ids so far),
    yet it is safe to keep: nothing can write through it, and the env only appends past its
    end. ``np.asarray(seq)`` gives a read-only int64 view; ``seq.ids`` the same.
    """

    __slots__ = ("_ids",)

    def __init__(self, buffer: np.ndarray, length: int) -> None:
        view = buffer[:length]
        view.flags.writeable = False
        self._ids = view

    @property
    def ids(self) -> np.ndarray:
        return self._ids

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    @overload
    def __getitem__(self, i: int) -> int: ...
    @overload
    def __getitem__(self, i: slice) -> np.ndarray: ...
    def __getitem__(self, i: int | slice) -> int | np.ndarray:
        if isinstance(i, slice):
            return self._ids[i]
        return int(self._ids[i])

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids.tolist())

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy or (dtype is not None and np.dtype(dtype) != self._ids.dtype):
            return np.array(self._ids, dtype=dtype, copy=True)
        return self._ids

    def tolist(self) -> list[int]:
        return self._ids.tolist()  # type: ignore[no-any-return]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TokenSequence):
            other = other._ids
        if isinstance(other, (np.ndarray, list, tuple)):
            return bool(np.array_equal(self._ids, np.asarray(other)))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        head = self._ids[:8].tolist()
        more = ", ..." if len(self) > 8 else ""
        return f"TokenSequence(len={len(self)}, ids={head}{more})"


class TokenBatch(Sequence[TokenSequence]):
    """N token sequences as one immutable object: ``batch[i]`` is env i's
    :class:`TokenSequence`; ``tokens`` (read-only ``(N, width)``, right-padded) and
    ``lengths`` give the whole batch as arrays. Built in O(1) Python work per step."""

    __slots__ = ("_lengths", "_tokens")

    def __init__(self, buffer: np.ndarray, lengths: np.ndarray) -> None:
        tokens = buffer.view()
        tokens.flags.writeable = False
        lengths = lengths.copy()
        lengths.flags.writeable = False
        self._tokens = tokens
        self._lengths = lengths

    @property
    def tokens(self) -> np.ndarray:
        return self._tokens

    @property
    def lengths(self) -> np.ndarray:
        return self._lengths

    def __len__(self) -> int:
        return int(self._lengths.shape[0])

    def __getitem__(self, i: int) -> TokenSequence:  # type: ignore[override]
        return TokenSequence(self._tokens[i], int(self._lengths[i]))

    def __repr__(self) -> str:
        return f"TokenBatch(n={len(self)}, lengths={self._lengths.tolist()[:8]})"


class TokenIds(spaces.Sequence):
    """1 to ``max_length`` token ids, each in ``[0, vocab_size)``: a :class:`TokenSequence`
    (what envs return) or a 1-D integer array (what ``sample()`` returns)."""

    def __init__(
        self, vocab_size: int, max_length: int, *, seed: int | np.random.Generator | None = None
    ) -> None:
        if vocab_size < 2:
            raise ValueError(f"TokenIds.vocab_size must be >= 2, got {vocab_size}")
        if max_length < 1:
            raise ValueError(f"TokenIds.max_length must be >= 1, got {max_length}")
        self.vocab_size = int(vocab_size)
        self.max_length = int(max_length)
        super().__init__(spaces.Discrete(self.vocab_size), seed=seed, stack=True)

    def sample(self, mask: Any = None, probability: Any = None) -> np.ndarray:
        length = int(self.np_random.integers(1, min(self.max_length, 64) + 1))
        return self.np_random.integers(0, self.vocab_size, size=length, dtype=np.int64)

    def contains(self, x: Any) -> bool:
        if isinstance(x, TokenSequence):
            x = x.ids
        if not isinstance(x, np.ndarray) or x.ndim != 1 or not np.issubdtype(x.dtype, np.integer):
            return False
        if not 1 <= x.shape[0] <= self.max_length:
            return False
        return bool(x.min() >= 0 and x.max() < self.vocab_size)

    def __repr__(self) -> str:
        return f"TokenIds(vocab_size={self.vocab_size}, max_length={self.max_length})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TokenIds)
            and self.vocab_size == other.vocab_size
            and self.max_length == other.max_length
        )

    __hash__ = spaces.Sequence.__hash__
