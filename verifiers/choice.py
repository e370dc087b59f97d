"""ChoiceVerifier: multiple-choice letters, with option-text matching when options are known.

The reference is a letter ("B") or a JSON object string
``{"answer": "B", "options": {"A": "...", "B": "...", ...}}`` (what the GPQA task passes), so a
completion that states the option's text instead of its letter can still be graded. Runs
in-process: extraction is linear-time regex.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

from verifiers.base import Status, Verdict, Verifier
from verifiers.errors import VerifierConfigError
from verifiers.exact import config_from
from verifiers.extract import Extraction, extract_choice, parse_choice_reference

__all__ = ["ChoiceConfig", "ChoiceVerifier"]

VERSION = "1"


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


class ChoiceVerifier(Verifier):
    """Grades a multiple-choice answer: correct only when exactly one letter is chosen and it
    is the reference's. ``ChoiceVerifier(strict=True)``."""

    name = "choice"

    def __init__(self, config: ChoiceConfig | None = None, **kwargs: Any) -> None:
        self.config: ChoiceConfig = config_from(config, kwargs, ChoiceConfig)

    def extract(self, completion: str, options: dict[str, str] | None = None) -> Extraction | None:
        return extract_choice(completion, options=options, strict=self.config.strict)

    def verify(self, completion: str, reference: str) -> Verdict:
        t0 = time.perf_counter()
        try:
            return self._verify(completion, reference, t0)
        except Exception as e:  # a bug of ours; never blame the completion
            return Verdict(0.0, Status.ERROR, None, f"{type(e).__name__}: {e}", _dt(t0))

    def _verify(self, completion: Any, reference: Any, t0: float) -> Verdict:
        if not isinstance(completion, str):
            return Verdict(0.0, Status.ERROR, None, f"completion must be a str, got {completion!r}")
        if not isinstance(reference, str):
            return Verdict(0.0, Status.ERROR, None, f"reference must be a str, got {reference!r}")
        try:
            letter, opts = _parse_reference(reference)
        except ValueError as e:
            return Verdict(0.0, Status.ERROR, None, f"bad reference: {e}", _dt(t0))
        ext = self.extract(completion, dict(opts) or None)
        if ext is None:
            return Verdict(0.0, Status.UNPARSABLE, None, "no choice found", _dt(t0))
        if ext.hedged:
            return Verdict(
                0.0,
                Status.INCORRECT,
                ext.answer,
                f"{ext.rule}; hedged: {', '.join(ext.candidates)}",
                _dt(t0),
            )
        if ext.answer == letter:
            return Verdict(1.0, Status.CORRECT, ext.answer, f"{ext.rule}; match", _dt(t0))
        return Verdict(0.0, Status.INCORRECT, ext.answer, f"{ext.rule}; different", _dt(t0))


def _dt(t0: float) -> float:
    return time.perf_counter() - t0
