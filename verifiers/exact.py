"""ExactMatchVerifier: normalised string equality, for answers that have one spelling
(the procedural arithmetic task's integers such as "-42" or "1234").

It needs no sympy and runs in-process: extraction is linear-time regex and comparison is a
string equality, so there is nothing that could hang.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from verifiers.base import Status, Verdict, Verifier
from verifiers.errors import VerifierConfigError
from verifiers.extract import Extraction, extract_math, is_hedge, normalize_exact

__all__ = ["ExactConfig", "ExactMatchVerifier"]

VERSION = "1"


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


def config_from(config: Any, kwargs: dict[str, Any], cls: type) -> Any:
    """Build ``cls`` from keyword options, or check a ready-made config (not both)."""
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


class ExactMatchVerifier(Verifier):
    """Extracts like the math verifier (boxed / answer-is / Answer:, flexible mode: last
    number), normalises both sides (no spaces, ``$``, thousands commas, final period) and
    compares them as strings.

    ``ExactMatchVerifier(strict=True)`` or ``ExactMatchVerifier(config=ExactConfig(...))``.
    """

    name = "exact"

    def __init__(self, config: ExactConfig | None = None, **kwargs: Any) -> None:
        self.config: ExactConfig = config_from(config, kwargs, ExactConfig)

    def extract(self, completion: str) -> Extraction | None:
        return extract_math(completion, strict=self.config.strict)

    def verify(self, completion: str, reference: str) -> Verdict:
        t0 = time.perf_counter()
        try:
            return self._verify(completion, reference, t0)
        except Exception as e:  # a bug of ours; never blame the completion
            return Verdict(0.0, Status.ERROR, None, f"{type(e).__name__}: {e}", _dt(t0))

    def _norm(self, s: str) -> str:
        s = normalize_exact(s)
        return s if self.config.case_sensitive else s.lower()

    def _verify(self, completion: Any, reference: Any, t0: float) -> Verdict:
        if not isinstance(completion, str):
            return Verdict(
                0.0, Status.ERROR, None, f"completion must be a str, got {type(completion)}", 0.0
            )
        if not isinstance(reference, str) or not normalize_exact(reference):
            return Verdict(0.0, Status.ERROR, None, f"reference must be non-empty: {reference!r}")
        ext = self.extract(completion)
        if ext is None:
            return Verdict(0.0, Status.UNPARSABLE, None, "no answer found", _dt(t0))
        gold = self._norm(reference)
        pred = self._norm(ext.answer)
        if not pred:
            return _no(ext, "empty answer", t0)
        if is_hedge(ext.answer, reference):
            return _no(ext, "hedged answer", t0)
        if ext.hedged and len({self._norm(c) for c in ext.candidates}) > 1:
            return _no(ext, f"hedged: {len(ext.candidates)} different answers", t0)
        if pred == gold:
            return Verdict(1.0, Status.CORRECT, ext.answer, f"{ext.rule}; exact", _dt(t0))
        return _no(ext, "different", t0)


def _dt(t0: float) -> float:
    return time.perf_counter() - t0


def _no(ext: Extraction, why: str, t0: float) -> Verdict:
    return Verdict(0.0, Status.INCORRECT, ext.answer, f"{ext.rule}; {why}", _dt(t0))
