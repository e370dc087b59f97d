"""The core value types: a problem and its metadata."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, TypedDict

Role = Literal["system", "user", "assistant"]


class ChatMessage(TypedDict):
    """One chat turn, in the format Hugging Face chat templates take."""

    role: Role
    content: str


def _frozen(mapping: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class ProblemMeta:
    """Where a problem comes from and how hard it is; used for per-subject/level breakdowns."""

    source: str
    """Dataset name, e.g. ``"gsm8k"`` or ``"arith"``."""
    index: int
    """Position of the record in its source split (0-based)."""
    split: str = "test"
    subject: str | None = None
    level: str | None = None
    extra: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Small string-valued extras a task wants to keep (urls, record ids)."""

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(f"ProblemMeta.index must be >= 0, got {self.index}")
        object.__setattr__(self, "extra", _frozen(self.extra))

    # mappingproxy cannot be pickled; envs are pickled by gymnasium's AsyncVectorEnv.
    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["extra"] = dict(self.extra)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        state["extra"] = _frozen(state["extra"])  # type: ignore[arg-type]
        self.__dict__.update(state)


@dataclass(frozen=True)
class Problem:
    """One benchmark item: what the policy sees, and what O grades against.

    ``reference`` is the gold answer y*: it is what the hinted prompt shows the thinking
    policy and what answer verifiers compare with. When the verifier needs something other
    than the answer (unit tests for code), the task puts it in ``grading_reference``.
    """

    id: str
    question: str
    reference: str
    meta: ProblemMeta
    rationale: str | None = None
    """A human-written worked solution (GSM8K/MATH), for the SFT-on-human-rationales baseline."""
    choices: tuple[str, ...] | None = None
    """Answer options, for multiple-choice tasks; the reference is then a letter."""
    grading_reference: str | None = None

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("Problem.id must be a non-empty string")
        if not isinstance(self.question, str) or not self.question.strip():
            raise ValueError(f"Problem {self.id!r}: question must be a non-empty string")
        if not isinstance(self.reference, str):
            raise ValueError(
                f"Problem {self.id!r}: reference must be a string, got {type(self.reference)}"
            )

    @property
    def verifier_reference(self) -> str:
        """What the verifier receives as ``reference``."""
        return self.grading_reference if self.grading_reference is not None else self.reference
