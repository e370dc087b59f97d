"""ChoiceVerifier: multiple-choice letters, with option-text matching when options are known.

The reference is a letter ("B") or a JSON object string
``{"answer": "B", "options": {"A": "...", "B": "...", ...}}`` (what the GPQA task passes), so a
completion that states the option's text instead of its letter can still be graded. Runs
in-process: extraction is linear-time regex.
"""

from __future__ import annotations

import functools
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
from verifiers.extract import Extraction, extract_choice, parse_choice_reference

__all__ = ["ChoiceConfig", "ChoiceVerifier"]

VERSION = "2"


@dataclass(frozen=True)
class ChoiceConfig:
    """Options of :class:`ChoiceVerifier`.

    strict: only ``\\boxed{B}``, "the answer is B"/"Answer: B" and the option text count
        (no guessing from a last ``(B)`` or a line starting ``B)``).
    """

    strict: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.strict, bool):
            raise VerifierConfigError(f"strict must be a bool, got {self.strict!r}")


@functools.lru_cache(maxsize=1024)
def _parse_reference(reference: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    letter, options = parse_choice_reference(reference)
    return letter, tuple(options.items())


class ChoiceVerifier(InProcessVerifier):
    """Grades a multiple-choice answer: correct only when exactly one letter is chosen and it
    is the reference's. ``ChoiceVerifier(strict=True)``."""

    name = "choice"

    def __init__(self, config: ChoiceConfig | None = None, **kwargs: Any) -> None:
        self.config: ChoiceConfig = config_from(config, kwargs, ChoiceConfig)

    def extract(
        self,
        completion: str,
        options: dict[str, str] | None = None,
        question: str | None = None,
    ) -> Extraction | None:
        return extract_choice(
            completion, options=options, strict=self.config.strict, question=question
        )

    def _verify(
        self, completion: str, reference: str, t0: float, *, question: str | None = None
    ) -> Verdict:
        try:
            letter, opts = _parse_reference(reference)
        except ValueError as e:
            return Verdict(0.0, Status.ERROR, None, f"bad reference: {e}", elapsed(t0))
        options = dict(opts) or None
        ext = self.extract(completion, options, question)
        if ext is None:
            return no_answer_verdict(
                completion, question, t0, "no choice found", lambda c: self.extract(c, options)
            )
        if ext.hedged:
            return Verdict(
                0.0,
                Status.INCORRECT,
                ext.answer,
                f"{ext.rule}; hedged: {', '.join(ext.candidates)}",
                elapsed(t0),
            )
        if ext.answer == letter:
            return Verdict(1.0, Status.CORRECT, ext.answer, f"{ext.rule}; match", elapsed(t0))
        return Verdict(0.0, Status.INCORRECT, ext.answer, f"{ext.rule}; different", elapsed(t0))
