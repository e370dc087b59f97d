"""Rubrics: a reward as a weighted sum of named signals.

An env's reward is by default O's score. A :class:`Rubric` combines named signals instead:
correctness (O's score), format (the completion shows its answer the way the verifier reads
it), a length penalty, or any callable. Every component is reported on its own, so a
weight-0 entry is a metric: logged, never rewarded.

    rubric = Rubric.from_weights({"correctness": 1.0, "format": 0.1, "length": 0.0})
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from verifiers.base import Status, Verdict
from verifiers.errors import VerifierConfigError


@runtime_checkable
class Signal(Protocol):
    """One reward component: a score for a graded completion."""

    def __call__(self, completion: str, verdict: Verdict, num_tokens: int | None) -> float: ...


@dataclass(frozen=True)
class Correctness:
    """O's score: 1.0 for a correct answer (partial credit where the verifier gives it)."""

    def __call__(self, completion: str, verdict: Verdict, num_tokens: int | None) -> float:
        return verdict.score


@dataclass(frozen=True)
class AnswerFormat:
    """1.0 when the completion states its final answer in the expected form, else 0.0.

    By default: the verifier extracted a non-empty answer and judged it (correct or
    incorrect); an echo of the question, an empty answer, or a timeout earns nothing. With
    ``pattern``: the regex matches the completion.
    """

    pattern: str | None = None

    def __post_init__(self) -> None:
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise VerifierConfigError(f"format pattern {self.pattern!r}: {exc}") from exc

    def __call__(self, completion: str, verdict: Verdict, num_tokens: int | None) -> float:
        if self.pattern is not None:
            return 1.0 if re.search(self.pattern, completion, re.S) else 0.0
        judged = verdict.status in (Status.CORRECT, Status.INCORRECT)
        return 1.0 if judged and bool(verdict.extracted) else 0.0


@dataclass(frozen=True)
class LengthPenalty:
    """0 up to ``budget`` tokens (characters when the token count is unknown), then falling
    linearly to -1 at ``2 * budget`` and staying there."""

    budget: int = 1024

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise VerifierConfigError(f"length budget must be >= 1, got {self.budget}")

    def __call__(self, completion: str, verdict: Verdict, num_tokens: int | None) -> float:
        n = num_tokens if num_tokens is not None else len(completion)
        over = max(0, n - self.budget)
        return -min(1.0, over / self.budget)


BUILTIN_SIGNALS: Mapping[str, Callable[[], Signal]] = MappingProxyType(
    {"correctness": Correctness, "format": AnswerFormat, "length": LengthPenalty}
)


@dataclass(frozen=True)
class RubricScore:
    """The total reward and each named component (unweighted)."""

    total: float
    components: Mapping[str, float]


@dataclass(frozen=True)
class Rubric:
    """Named signals with weights; the reward is ``sum(weight * signal)``."""

    entries: tuple[tuple[str, float, Signal], ...]

    def __post_init__(self) -> None:
        if not self.entries:
            raise VerifierConfigError("a rubric needs at least one signal")
        names = [name for name, _, _ in self.entries]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise VerifierConfigError(f"rubric signal names must be unique, repeated: {dupes}")
        for name, weight, signal in self.entries:
            if not isinstance(weight, (int, float)) or weight != weight:  # NaN check
                raise VerifierConfigError(
                    f"rubric weight of {name!r} must be a number, got {weight!r}"
                )
            if not callable(signal):
                raise VerifierConfigError(f"rubric signal {name!r} is not callable: {signal!r}")

    @classmethod
    def from_weights(
        cls, weights: Mapping[str, float], signals: Mapping[str, Signal] | None = None
    ) -> Rubric:
        """Build from ``{name: weight}``; names are built-ins (correctness, format, length)
        or keys of ``signals``."""
        custom = dict(signals or {})
        entries = []
        for name, weight in weights.items():
            if name in custom:
                signal = custom[name]
            elif name in BUILTIN_SIGNALS:
                signal = BUILTIN_SIGNALS[name]()
            else:
                known = sorted({*BUILTIN_SIGNALS, *custom})
                raise VerifierConfigError(
                    f"unknown rubric signal {name!r}; known signals: {', '.join(known)}"
                )
            entries.append((name, float(weight), signal))
        return cls(tuple(entries))

    def score(
        self, completion: str, verdict: Verdict, num_tokens: int | None = None
    ) -> RubricScore:
        """Every component, and their weighted sum. A grading failure (timeout, error)
        earns no correctness, but is still reported as what it is in the verdict."""
        components = {
            name: float(signal(completion, verdict, num_tokens)) for name, _, signal in self.entries
        }
        total = sum(weight * components[name] for name, weight, _ in self.entries)
        return RubricScore(total=total, components=MappingProxyType(components))


def as_rubric(spec: Rubric | Mapping[str, float] | None) -> Rubric | None:
    """A Rubric from a Rubric, a ``{name: weight}`` mapping (e.g. from Hydra), or None."""
    if spec is None or isinstance(spec, Rubric):
        return spec
    if isinstance(spec, Mapping):
        return Rubric.from_weights(spec)
    raise VerifierConfigError(
        f"rubric must be a Rubric or a {{name: weight}} mapping, got {type(spec).__name__}"
    )
