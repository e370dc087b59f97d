"""Typed verdicts and the Verifier interface every evaluation signal O implements."""

from __future__ import annotations

import abc
import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


class Status(str, enum.Enum):
    """Why a verdict has its score. Only ``CORRECT`` is a success; ``TIMEOUT`` and ``ERROR``
    are failures of grading, not wrong answers, and must be counted apart from them."""

    CORRECT = "correct"
    INCORRECT = "incorrect"
    UNPARSABLE = "unparsable"
    TIMEOUT = "timeout"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Verdict:
    """The outcome of grading one completion."""

    score: float
    status: Status
    extracted: str | None
    reason: str
    elapsed_s: float = field(default=0.0, compare=False)
    """Wall time of the grading itself; not part of equality (two gradings of the same
    answer are the same verdict)."""

    def __post_init__(self) -> None:
        if not isinstance(self.status, Status):
            object.__setattr__(self, "status", Status(self.status))
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"Verdict.score must lie in [0, 1], got {self.score}")

    @property
    def correct(self) -> bool:
        return self.status is Status.CORRECT

    @property
    def failed_to_grade(self) -> bool:
        """True for timeouts and errors: the answer was never judged."""
        return self.status in (Status.TIMEOUT, Status.ERROR)

    def to_dict(self) -> dict[str, object]:
        return {
            "score": self.score,
            "status": self.status.value,
            "extracted": self.extracted,
            "reason": self.reason,
            "elapsed_s": self.elapsed_s,
        }


class Verifier(abc.ABC):
    """An evaluation signal O: grades a completion against a reference.

    Subclasses implement :meth:`verify`. They must never raise for bad *completions*;
    anything that goes wrong while grading becomes a Verdict with status ``error`` or
    ``timeout``.
    """

    name: str = "verifier"

    @abc.abstractmethod
    def verify(self, completion: str, reference: str) -> Verdict:
        """Grade one completion; the gold reference is the second argument."""

    def verify_many(self, completions: Sequence[str], references: Sequence[str]) -> list[Verdict]:
        """Grade many completions, keeping the order. Subclasses may parallelise."""
        if len(completions) != len(references):
            raise ValueError(
                f"verify_many got {len(completions)} completions but {len(references)} references"
            )
        return [self.verify(c, r) for c, r in zip(completions, references, strict=True)]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release worker processes, if any."""


def timed_verdict(
    start: float, score: float, status: Status, extracted: str | None, reason: str
) -> Verdict:
    """Build a verdict whose elapsed_s runs from ``start`` (a perf_counter reading)."""
    return Verdict(score, status, extracted, reason, time.perf_counter() - start)
