"""Typed verdicts and the Verifier interface every evaluation signal O implements."""

from __future__ import annotations

import abc
import enum
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


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

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Verdict:
        """The inverse of :meth:`to_dict`, for verdicts read back from files (eval samples).
        Raises ``ValueError`` naming the missing or bad key; ``elapsed_s`` is optional."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a verdict must be a mapping (Verdict.to_dict()), got {data!r}")
        keys = ("score", "status", "extracted", "reason", "elapsed_s")
        missing = [k for k in keys[:4] if k not in data]
        if missing:
            raise ValueError(f"verdict is missing key(s) {missing}; a verdict has keys {keys}")
        unknown = sorted(str(k) for k in data if k not in keys)
        if unknown:
            raise ValueError(f"verdict has unknown key(s) {unknown}; a verdict has keys {keys}")
        score = data["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1:
            raise ValueError(f"verdict key 'score' must be a number in [0, 1], got {score!r}")
        status = data["status"]
        allowed = [s.value for s in Status]
        if status not in allowed:
            raise ValueError(f"verdict key 'status' must be one of {allowed}, got {status!r}")
        extracted = data["extracted"]
        if extracted is not None and not isinstance(extracted, str):
            raise ValueError(f"verdict key 'extracted' must be a str or null, got {extracted!r}")
        reason = data["reason"]
        if not isinstance(reason, str):
            raise ValueError(f"verdict key 'reason' must be a str, got {reason!r}")
        elapsed_s = data.get("elapsed_s", 0.0)
        if (
            isinstance(elapsed_s, bool)
            or not isinstance(elapsed_s, (int, float))
            or not elapsed_s >= 0
        ):
            raise ValueError(f"verdict key 'elapsed_s' must be a number >= 0, got {elapsed_s!r}")
        return cls(float(score), Status(status), extracted, reason, float(elapsed_s))


class Verifier(abc.ABC):
    """An evaluation signal O: grades a completion against a reference.

    Subclasses implement :meth:`verify`. They must never raise for bad *completions*;
    anything that goes wrong while grading becomes a Verdict with status ``error`` or
    ``timeout``.

    ``question`` (keyword-only, optional) is the problem's text, and part of the interface:
    every verifier accepts it. Answer verifiers use it to reject an echo of the question and
    to ignore numbers that only appear in a verbatim restatement of it; verifiers with no use
    for it (code) ignore it.
    """

    name: str = "verifier"

    @abc.abstractmethod
    def verify(self, completion: str, reference: str, *, question: str | None = None) -> Verdict:
        """Grade one completion; the gold reference is the second argument."""

    def verify_many(
        self,
        completions: Sequence[str],
        references: Sequence[str],
        *,
        questions: Sequence[str | None] | None = None,
    ) -> list[Verdict]:
        """Grade many completions, keeping the order. Subclasses may parallelise."""
        check_lengths(completions, references, questions)
        qs = questions if questions is not None else [None] * len(completions)
        triples = zip(completions, references, qs, strict=True)
        return [self.verify(c, r, question=q) for c, r, q in triples]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release worker processes, if any."""


def check_lengths(
    completions: Sequence[Any], references: Sequence[Any], questions: Sequence[Any] | None = None
) -> None:
    """The argument-length check every ``verify_many`` does (a caller error, so it raises)."""
    if len(completions) != len(references):
        raise ValueError(
            f"verify_many got {len(completions)} completions but {len(references)} references"
        )
    if questions is not None and len(questions) != len(completions):
        raise ValueError(
            f"verify_many got {len(completions)} completions but {len(questions)} questions"
        )


def elapsed(t0: float) -> float:
    """Seconds since ``t0``, a ``time.perf_counter()`` reading."""
    return time.perf_counter() - t0


RESTATED_ONLY = "answer only in the restated question"


def no_answer_verdict(
    completion: str,
    question: str | None,
    t0: float,
    reason: str = "no answer found",
    extract_plain: Callable[[str], Any] | None = None,
) -> Verdict:
    """The verdict when extraction (which skips verbatim restatements of the question) found
    no answer. With a question, it is ``incorrect`` rather than ``unparsable`` when the
    completion is (nearly) just the question restated ("echo of the question") or when
    ``extract_plain`` (the same extraction, question-blind) does find an answer: that answer
    came from the restated question. Otherwise ``unparsable`` with ``reason``."""
    if question:
        from verifiers.extract import is_echo, strip_think

        if is_echo(strip_think(completion), question):
            return Verdict(0.0, Status.INCORRECT, None, "echo of the question", elapsed(t0))
        found = extract_plain(completion) if extract_plain is not None else None
        if found is not None:
            return Verdict(0.0, Status.INCORRECT, found.answer, RESTATED_ONLY, elapsed(t0))
    return Verdict(0.0, Status.UNPARSABLE, None, reason, elapsed(t0))


class InProcessVerifier(Verifier):
    """A verifier cheap enough to run in the caller's process (regex and arithmetic).

    ``verify`` checks the argument types and turns any exception of the grading code into
    a Verdict with status ``error``: a bug in grading is never scored as a wrong answer.
    Subclasses implement :meth:`_verify`.
    """

    def verify(self, completion: str, reference: str, *, question: str | None = None) -> Verdict:
        t0 = time.perf_counter()
        if not isinstance(completion, str):
            return Verdict(0.0, Status.ERROR, None, f"completion must be a str, got {completion!r}")
        if not isinstance(reference, str):
            return Verdict(0.0, Status.ERROR, None, f"reference must be a str, got {reference!r}")
        if question is not None and not isinstance(question, str):
            return Verdict(
                0.0, Status.ERROR, None, f"question must be a str or None, got {question!r}"
            )
        try:
            return self._verify(completion, reference, t0, question=question or None)
        except Exception as e:  # a bug of ours; never blame the completion
            return Verdict(0.0, Status.ERROR, None, f"{type(e).__name__}: {e}", elapsed(t0))

    @abc.abstractmethod
    def _verify(
        self, completion: str, reference: str, t0: float, *, question: str | None = None
    ) -> Verdict:
        """Grade; ``t0`` is when grading started, for ``elapsed_s``."""


def config_from(config: Any, kwargs: dict[str, Any], cls: type) -> Any:
    """Build ``cls`` from keyword options, or check a ready-made config (not both)."""
    from verifiers.errors import VerifierConfigError

    if config is not None and kwargs:
        raise VerifierConfigError("pass either config= or keyword options, not both")
    if config is None:
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise VerifierConfigError(f"bad option for {cls.__name__}: {e}") from e
    if not isinstance(config, cls):
        raise VerifierConfigError(f"config must be a {cls.__name__}, got {type(config).__name__}")
    return config
