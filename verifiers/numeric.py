"""GSM8KVerifier: numeric comparison of a final number, exact for integers.

Runs in-process: extraction is linear-time regex and the comparison is exact rational
arithmetic (``fractions.Fraction``), so nothing can hang and no worker is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
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
from verifiers.extract import Extraction, extract_gsm8k, parse_number

__all__ = ["GSM8KConfig", "GSM8KVerifier", "numbers_equal"]

VERSION = "2"


@dataclass(frozen=True)
class GSM8KConfig:
    """Options of :class:`GSM8KVerifier`.

    strict: only ``#### N``, ``\\boxed{N}`` or "The answer is N" count (no last-number guess).
    rel_tol: relative tolerance used when either side is not an integer (integers compare
        exactly); 0 makes every comparison exact.
    """

    strict: bool = False
    rel_tol: float = 1e-6

    def __post_init__(self) -> None:
        if not isinstance(self.strict, bool):
            raise VerifierConfigError(f"strict must be a bool, got {self.strict!r}")
        if (
            isinstance(self.rel_tol, bool)
            or not isinstance(self.rel_tol, (int, float))
            or not 0 <= self.rel_tol < 1
        ):
            raise VerifierConfigError(f"rel_tol must be a number in [0, 1), got {self.rel_tol!r}")


def _to_fraction(canon: str) -> Fraction | None:
    """A canonical number ("-12.5", "3/4") as a Fraction; None if it is not one."""
    num, _, den = canon.partition("/")
    try:
        value = Fraction(num)
        if den:
            value /= int(den)
    except (ValueError, ZeroDivisionError):
        return None
    return value


def numbers_equal(pred: str, gold: str, rel_tol: float = 1e-6) -> bool:
    """Exact equality when both are integers, else ``|p - g| <= rel_tol * max(1, |g|)``."""
    p, g = _to_fraction(pred), _to_fraction(gold)
    if p is None or g is None:
        return False
    if p.denominator == 1 and g.denominator == 1:
        return p == g
    return abs(p - g) <= Fraction(rel_tol) * max(Fraction(1), abs(g))


class GSM8KVerifier(InProcessVerifier):
    """Reads the final number (``#### N``, ``\\boxed{N}``, "The answer is N", flexible mode:
    the last number; ``$``, ``1,234``, units, ``.00`` and negatives accepted) and compares it
    numerically with the reference (e.g. "1234", the text after ``####`` of GSM8K).

    ``GSM8KVerifier(strict=True)`` or ``GSM8KVerifier(config=GSM8KConfig(...))``.
    """

    name = "gsm8k"

    def __init__(self, config: GSM8KConfig | None = None, **kwargs: Any) -> None:
        self.config: GSM8KConfig = config_from(config, kwargs, GSM8KConfig)

    def extract(self, completion: str, question: str | None = None) -> Extraction | None:
        return extract_gsm8k(completion, strict=self.config.strict, question=question)

    def _verify(
        self, completion: str, reference: str, t0: float, *, question: str | None = None
    ) -> Verdict:
        gold = parse_number(reference)
        if gold is None:
            return Verdict(0.0, Status.ERROR, None, f"reference is not a number: {reference!r}")
        ext = self.extract(completion, question)
        if ext is None:
            return no_answer_verdict(completion, question, t0, "no number found", self.extract)
        if parse_number(ext.answer) is None:
            reason = f"{ext.rule}; not a number" if ext.answer else f"{ext.rule}; empty answer"
            return Verdict(0.0, Status.INCORRECT, ext.answer, reason, elapsed(t0))
        tol = self.config.rel_tol
        if ext.hedged and not all(numbers_equal(c, ext.candidates[0], tol) for c in ext.candidates):
            return Verdict(
                0.0,
                Status.INCORRECT,
                ext.answer,
                f"{ext.rule}; hedged: {len(ext.candidates)} different numbers",
                elapsed(t0),
            )
        if numbers_equal(ext.answer, gold, tol):
            return Verdict(1.0, Status.CORRECT, ext.answer, f"{ext.rule}; equal", elapsed(t0))
        return Verdict(0.0, Status.INCORRECT, ext.answer, f"{ext.rule}; different", elapsed(t0))
