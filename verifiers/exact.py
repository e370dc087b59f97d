"""ExactMatchVerifier: normalised string equality, for answers that have one spelling
(the procedural arithmetic task's integers such as "-42" or "1234").

It needs no sympy and runs in-process: extraction is linear-time regex and comparison is a
string equality, so there is nothing that could hang.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from verifiers.base import (
    InProcessVerifier,
    Status,
    Verdict,
    config_from,
    elapsed,
    no_answer_verdict,
)
from verifiers.errors import VerifierConfigError
from verifiers.extract import Extraction, extract_math, is_hedge, normalize_exact

__all__ = ["ExactConfig", "ExactMatchVerifier"]

VERSION = "2"


@dataclass(frozen=True)
class ExactConfig:
    """Options of :class:`ExactMatchVerifier`.

    strict: only a boxed answer or an explicit answer phrase counts (no last-number guess).
    case_sensitive: compare letters exactly (default: case-insensitive).
    """

    strict: bool = False
    case_sensitive: bool = False

    def __post_init__(self) -> None:
        for name in ("strict", "case_sensitive"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise VerifierConfigError(f"{name} must be a bool, got {value!r}")


class ExactMatchVerifier(InProcessVerifier):
    """Extracts like the math verifier (boxed / answer-is / Answer:, flexible mode: last
    number), normalises both sides (no spaces, ``$``, thousands commas, final period) and
    compares them as strings.

    ``ExactMatchVerifier(strict=True)`` or ``ExactMatchVerifier(config=ExactConfig(...))``.
    """

    name = "exact"

    def __init__(self, config: ExactConfig | None = None, **kwargs: Any) -> None:
        self.config: ExactConfig = config_from(config, kwargs, ExactConfig)

    def extract(self, completion: str, question: str | None = None) -> Extraction | None:
        return extract_math(completion, strict=self.config.strict, question=question)

    def _norm(self, s: str) -> str:
        s = normalize_exact(s)
        return s if self.config.case_sensitive else s.lower()

    def _verify(
        self, completion: str, reference: str, t0: float, *, question: str | None = None
    ) -> Verdict:
        if not normalize_exact(reference):
            return Verdict(0.0, Status.ERROR, None, f"reference must be non-empty: {reference!r}")
        ext = self.extract(completion, question)
        if ext is None:
            return no_answer_verdict(completion, question, t0, extract_plain=self.extract)
        gold = self._norm(reference)
        pred = self._norm(ext.answer)
        if not pred:
            return _no(ext, "empty answer", t0)
        if is_hedge(ext.answer, reference):
            return _no(ext, "hedged answer", t0)
        if ext.hedged and len({self._norm(c) for c in ext.candidates}) > 1:
            return _no(ext, f"hedged: {len(ext.candidates)} different answers", t0)
        if pred == gold:
            return Verdict(1.0, Status.CORRECT, ext.answer, f"{ext.rule}; exact", elapsed(t0))
        return _no(ext, "different", t0)


def _no(ext: Extraction, why: str, t0: float) -> Verdict:
    return Verdict(0.0, Status.INCORRECT, ext.answer, f"{ext.rule}; {why}", elapsed(t0))
