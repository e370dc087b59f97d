"""MathVerifier: symbolic equivalence of a final math answer with math-verify, in killable
worker processes.

Extraction (regex, cheap) runs in the caller; the sympy/math-verify equivalence check runs in
a :class:`~verifiers._pool.WorkerPool` so a pathological answer (``10^{10^{10^{10}}}``) is a
``timeout`` verdict instead of a hung trainer. math-verify's own ``signal.alarm`` timeouts are
disabled (``parsing_timeout=None``, ``timeout_seconds=None``): they break outside the main
thread, and the pool enforces the limit instead.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from verifiers._pool import JobResult, LRUCache, WorkerPool
from verifiers.base import Status, Verdict, Verifier, check_lengths, config_from, no_answer_verdict
from verifiers.errors import VerifierConfigError
from verifiers.extract import Extraction, extract_math, is_hedge, normalize_latex

__all__ = ["MathConfig", "MathVerifier", "grade_math"]

VERSION = "2"


@dataclass(frozen=True)
class MathConfig:
    """Options of :class:`MathVerifier`.

    strict: only a boxed answer or an explicit answer phrase counts (no last-number guess).
    timeout_s: run-time limit of one equivalence check; past it the verdict is ``timeout``.
    workers: worker processes (None: min(2, cpu count)).
    float_rounding / numeric_precision: passed to math-verify's numeric comparison.
    cache_size: verdicts kept in the LRU cache (0 disables it).
    memory_limit_mb: address-space limit of a worker (None: unlimited).
    max_batch: most jobs sent to a worker per message.
    string_match: accept answers whose normalised LaTeX equals the reference's without a
        worker; False sends every answer to math-verify (for benchmarks and debugging).
    """

    strict: bool = False
    timeout_s: float = 5.0
    workers: int | None = None
    float_rounding: int = 6
    numeric_precision: int = 15
    cache_size: int = 10_000
    memory_limit_mb: int | None = 4096
    max_batch: int = 16
    string_match: bool = True

    def __post_init__(self) -> None:
        for name in ("strict", "string_match"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise VerifierConfigError(f"{name} must be a bool, got {value!r}")
        if not isinstance(self.timeout_s, (int, float)) or not self.timeout_s > 0:
            raise VerifierConfigError(
                f"timeout_s must be a positive number, got {self.timeout_s!r}"
            )
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise VerifierConfigError(
                f"workers must be a positive int or None, got {self.workers!r}"
            )
        if not isinstance(self.float_rounding, int) or not 0 <= self.float_rounding <= 30:
            raise VerifierConfigError(
                f"float_rounding must be an int in [0, 30], got {self.float_rounding!r}"
            )
        if not isinstance(self.numeric_precision, int) or not 1 <= self.numeric_precision <= 100:
            raise VerifierConfigError(
                f"numeric_precision must be an int in [1, 100], got {self.numeric_precision!r}"
            )
        if not isinstance(self.cache_size, int) or self.cache_size < 0:
            raise VerifierConfigError(f"cache_size must be an int >= 0, got {self.cache_size!r}")
        if self.memory_limit_mb is not None and (
            not isinstance(self.memory_limit_mb, int) or self.memory_limit_mb < 256
        ):
            raise VerifierConfigError(
                f"memory_limit_mb must be an int >= 256 or None, got {self.memory_limit_mb!r}"
            )
        if not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise VerifierConfigError(f"max_batch must be an int >= 1, got {self.max_batch!r}")


class MathVerifier(Verifier):
    """Grades a final math answer (boxed, "the answer is", "Answer:") against a LaTeX
    reference by symbolic equivalence (math-verify, gold first), with string-normalisation
    fallbacks for percentages, degrees, units and text answers.

    ``MathVerifier(strict=True, timeout_s=2.0)`` or ``MathVerifier(config=MathConfig(...))``.
    """

    name = "math"

    def __init__(self, config: MathConfig | None = None, **kwargs: Any) -> None:
        self.config: MathConfig = config_from(config, kwargs, MathConfig)
        self._pool: WorkerPool | None = None
        self._pool_lock = threading.Lock()
        self._cache: LRUCache = LRUCache(self.config.cache_size)
        self._key_prefix = (self.name, VERSION, tuple(sorted(asdict(self.config).items())))

    # ------------------------------------------------------------------ plumbing

    @property
    def pool(self) -> WorkerPool:
        """The worker pool, started on first use."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = self._make_pool()
            return self._pool

    def _make_pool(self) -> WorkerPool:
        return WorkerPool(
            self.config.workers,
            preload=("verifiers.math", "math_verify", "sympy"),
            memory_limit_mb=self.config.memory_limit_mb,
            max_batch=self.config.max_batch,
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> MathVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ grading

    def extract(self, completion: str, question: str | None = None) -> Extraction | None:
        """The answer this verifier would grade (pure regex; no worker involved)."""
        return extract_math(completion, strict=self.config.strict, question=question)

    def verify(self, completion: str, reference: str, *, question: str | None = None) -> Verdict:
        questions = None if question is None else [question]
        return self.verify_many([completion], [reference], questions=questions)[0]

    def verify_many(
        self,
        completions: Sequence[str],
        references: Sequence[str],
        *,
        questions: Sequence[str | None] | None = None,
    ) -> list[Verdict]:
        """Grade in parallel across the workers, keeping the order."""
        check_lengths(completions, references, questions)
        qs: Sequence[str | None] = questions if questions is not None else [None] * len(completions)
        starts: list[float] = []
        out: list[Verdict | None] = []
        jobs: list[tuple[int, tuple[Any, ...], Extraction, Any]] = []
        for i, (c, r, q) in enumerate(zip(completions, references, qs, strict=True)):
            t0 = time.perf_counter()
            starts.append(t0)
            try:
                verdict, job = self._prepare(c, r, q, t0)
            except Exception as e:  # a bug of ours, never the completion's fault
                verdict, job = _error(t0, None, f"extraction failed: {type(e).__name__}: {e}"), None
            out.append(verdict)
            if job is not None:
                jobs.append((i, *job))
        if jobs:
            results = self.pool.map(grade_math, [j[1] for j in jobs], self.config.timeout_s)
            for (i, _, ext, key), res in zip(jobs, results, strict=True):
                out[i] = self._finish(res, ext, key, starts[i])
        return [v for v in out if v is not None]

    def _prepare(
        self, completion: Any, reference: Any, question: Any, t0: float
    ) -> tuple[Verdict | None, tuple[tuple[Any, ...], Extraction, Any] | None]:
        if not isinstance(completion, str):
            return _error(
                t0, None, f"completion must be a str, got {type(completion).__name__}"
            ), None
        if not isinstance(reference, str) or not reference.strip():
            return _error(t0, None, f"reference must be a non-empty str, got {reference!r}"), None
        if question is not None and not isinstance(question, str):
            return _error(t0, None, f"question must be a str or None, got {question!r}"), None
        ext = self.extract(completion, question)
        if ext is None:
            return no_answer_verdict(completion, question, t0, extract_plain=self.extract), None
        gold = reference.strip()
        if not ext.answer.strip():
            return _verdict(t0, False, ext, "empty answer"), None
        if is_hedge(ext.answer, gold):
            return _verdict(t0, False, ext, "hedged answer"), None
        cands = ext.candidates or (ext.answer,)
        ngold = normalize_latex(gold)
        if self.config.string_match and all(normalize_latex(c) == ngold for c in cands):
            return _verdict(t0, True, ext, "string-equal"), None
        key = (*self._key_prefix, tuple(normalize_latex(c) for c in cands), gold)
        hit = self._cache.get(key)
        if hit is not None:
            return _verdict(t0, hit[0], ext, hit[1] + ", cached"), None
        job = (cands, gold, self.config.float_rounding, self.config.numeric_precision)
        return None, (job, ext, key)

    def _finish(self, res: JobResult, ext: Extraction, key: Any, t0: float) -> Verdict:
        if res.status == "timeout":
            return Verdict(0.0, Status.TIMEOUT, ext.answer, f"{ext.rule}; {res.error}", _dt(t0))
        if res.status == "error":
            return _error(t0, ext, f"{ext.rule}; worker error: {res.error}")
        status, detail = res.value
        if status == "error":
            return _error(t0, ext, f"{ext.rule}; {detail}")
        ok = status == "correct"
        self._cache.put(key, (ok, detail))
        return _verdict(t0, ok, ext, detail)


def _dt(t0: float) -> float:
    return time.perf_counter() - t0


def _verdict(t0: float, ok: bool, ext: Extraction, detail: str) -> Verdict:
    if ok:
        return Verdict(1.0, Status.CORRECT, ext.answer, f"{ext.rule}; {detail}", _dt(t0))
    if ext.hedged and not detail.startswith("hedged"):
        detail = f"hedged: {len(ext.candidates)} different answers; {detail}"
    return Verdict(0.0, Status.INCORRECT, ext.answer, f"{ext.rule}; {detail}", _dt(t0))


def _error(t0: float, ext: Extraction | None, reason: str) -> Verdict:
    return Verdict(0.0, Status.ERROR, ext.answer if ext else None, reason, _dt(t0))


# --------------------------------------------------------------------------- worker side
# Everything below runs inside worker processes (imported there by name).

_UNIT_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox|textnormal)\s*\{\s*([^{}]*)\}")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\^\s*\\circ|°|\\degree")
_PERCENT = re.compile(r"\\?%")
_VAR_PREFIX = re.compile(r"^\s*[A-Za-z](?:_\{?\w+\}?)?\s*(?:=|\\in)\s*(?!.*(?:=|\\in))")


def _variants(s: str) -> list[str]:
    """Textual rewrites tried when the plain comparison fails: no percent/degree signs, no
    trailing text units, no ``x =`` prefix, ``\\text{}`` unwrapped."""
    out: list[str] = []

    def add(v: str) -> None:
        v = v.strip().rstrip(".").strip()
        if v and v not in out and v != s:
            out.append(v)

    a = _PERCENT.sub("", _DEGREES.sub("", s))
    add(a)
    b = _VAR_PREFIX.sub("", a)
    add(b)
    # drop a trailing text unit ("5 \text{ cm}", "12\mbox{ inches}") when a number precedes it
    c = re.sub(r"(?<=[\d}])\s*(?:\\\s|~)*\\(?:text|mbox|mathrm|textnormal)\{[^{}]*\}\s*$", "", b)
    add(c)
    d = _UNIT_TEXT.sub(r"\1", b)
    add(d)
    e = re.sub(r"(?<=\d)\\?,\s*(?=\d{3}(?!\d))|\{,\}", "", c)
    add(e)
    return out


def _mv():  # type: ignore[no-untyped-def]
    import logging

    import math_verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    logging.getLogger("latex2sympy2_extended").setLevel(logging.ERROR)
    return math_verify


_SCI = re.compile(r"^[-+]?\d+(?:\.\d+)?[eE][-+]?\d+$")
_PLAIN_EXPR = re.compile(r"^[\w\s.+\-*/^()=,<>%]+$")


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


@functools.lru_cache(maxsize=4096)
def _parse(s: str) -> tuple[Any, ...]:
    """math-verify parse of one bare answer as inline math (``$s$``), so the LaTeX parser
    sees it whole. A parse of only *part* of the answer is dropped (math-verify's extractor
    otherwise turns ``\\frac{1}{3} E_{1}+\\frac{2}{3} E_{2}`` into ``2/3``): then the raw
    string is compared. Plain ASCII expressions ("1/2", "3x+1") are also tried as such."""
    mv = _mv()
    if _SCI.match(s):  # "1.5e3": LaTeX would read e as Euler's number
        import sympy

        return sympy.Rational(s.replace("E", "e")), s
    latex_cfg = [mv.LatexExtractionConfig(boxed_match_priority=0)]
    parsed = mv.parse(
        "$" + s + "$", extraction_config=latex_cfg, parsing_timeout=None, raise_on_error=True
    )
    if len(parsed) == 2 and not isinstance(parsed[0], str):
        return tuple(parsed)
    if _PLAIN_EXPR.match(s):
        expr = mv.parse(
            s,
            extraction_config=[mv.ExprExtractionConfig()],
            parsing_timeout=None,
            raise_on_error=True,
        )
        if len(expr) == 2 and _squash(str(expr[1])) == _squash(s):
            return tuple(expr)
    return (s,)


def _mv_equal(gold: str, pred: str, rounding: int, precision: int) -> bool:
    mv = _mv()
    g, p = _parse(gold), _parse(pred)
    if not g or not p:
        return False
    same = bool(
        mv.verify(
            list(g),
            list(p),
            float_rounding=rounding,
            numeric_precision=precision,
            timeout_seconds=None,
            raise_on_error=True,
        )
    )
    if same:
        # 1/2004! and 1/2005! agree to 6 places; exact values never lie. Nor do tiny decimals
        # (1e-7 and 2e-7 both round to 0).
        return not (_exact_rationals_differ(g[0], p[0]) or _relative_gap(g[0], p[0]) > _REL_SAME)
    # 6.02\times10^{23} (a float mantissa) and 6.02e23 (exact) differ in the last digits
    return 0.0 <= _relative_gap(g[0], p[0]) <= _REL_FLOAT_NOISE


_REL_SAME = 1e-4
"""Largest relative gap between two decimal numbers that math-verify's rounding may call
equal (1/3 and 0.333333 differ by 1e-6); beyond it they only agree because both round to 0."""
_REL_FLOAT_NOISE = 1e-12
"""Relative gap below which two numbers, one written with a decimal mantissa, are the same
number (binary floats cannot hold 6.02 exactly)."""


def _relative_gap(g: Any, p: Any) -> float:
    """|g - p| / max(|g|, |p|) when both are plain numbers and at least one is written as a
    decimal (the only case where math-verify compares by rounding); ``-1.0`` otherwise, so
    the callers' checks never fire on symbols, exact values or anything unevaluable."""
    try:
        import sympy

        if not all(isinstance(x, sympy.Expr) and x.is_number for x in (g, p)):
            return -1.0
        if not (g.atoms(sympy.Float) or p.atoms(sympy.Float)):
            return -1.0
        gv, pv = sympy.N(g, 30), sympy.N(p, 30)
        scale = max(abs(complex(gv)), abs(complex(pv)))
        if scale == 0.0:
            return 0.0
        return float(sympy.Abs(gv - pv)) / scale
    except Exception:
        return -1.0


def _exact_rationals_differ(g: Any, p: Any) -> bool:
    """True when both parses are exact rational numbers (no floats, no symbols) that differ:
    math-verify compares numbers to ``float_rounding`` places, so 1/2004! equals 1/2005!."""
    try:
        import sympy

        if not all(isinstance(x, sympy.Expr) and x.is_number for x in (g, p)):
            return False
        if g.atoms(sympy.Float) or p.atoms(sympy.Float):
            return False
        gd, pd = g.doit(), p.doit()
        return bool(gd.is_Rational and pd.is_Rational and gd != pd)
    except Exception:
        return False


_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})\s*(?:\\text\{\s*([ap])\.?\s*m\.?\s*\})?$", re.I)


def _clock_time(s: str) -> tuple[int, int, str] | None:
    """(hours, minutes, am/pm) of a clock time such as ``8\\!:\\!34 \\text{ p.m.}``."""
    m = _CLOCK.match(re.sub(r"\\[!,;: ]|\s", "", s).replace("\\text{", " \\text{").strip())
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), (m.group(3) or "").lower()


_BASED = re.compile(r"^(-?)([0-9A-Za-z]+(?:\.[0-9A-Za-z]+)?)(?:_\{?(\d+)\}?)?\.?$")
_UNIT_POWER = re.compile(r"\\(?:text|mbox|mathrm)\s*\{[^{}]*\}\s*\^\s*\{?\s*(\d+)")


def _based(s: str, default_base: int | None = None) -> tuple[Fraction, int] | None:
    """(value, base) of a numeral written with a base subscript such as ``52_8``,
    ``-221_3``, ``0.0011_{2}``; without a subscript it is read in ``default_base`` (only when
    given). None if it is not such a numeral."""
    m = _BASED.match(re.sub(r"\\text\{([^{}]*)\}|\s", lambda k: k.group(1) or "", s))
    if not m:
        return None
    base = int(m.group(3)) if m.group(3) else default_base
    if base is None or not 2 <= base <= 36:
        return None
    whole, _, frac = m.group(2).partition(".")
    try:
        value = Fraction(int(whole, base))
        if frac:
            value += Fraction(int(frac, base), base ** len(frac))
    except ValueError:
        return None
    return (-value if m.group(1) else value), base


_CHAIN = re.compile(r"=|\\approx")


def _equal(gold: str, pred: str, rounding: int, precision: int) -> tuple[bool, str]:
    """(equal, which rule decided). If math-verify raised on the plain pair and no fallback
    found the answers equal, the exception propagates: an error is not a wrong answer."""
    tg, tp = _clock_time(gold), _clock_time(pred)
    if tg is not None or tp is not None:  # "5:00": math-verify reads a ratio and divides by 0
        return tg == tp, "clock-time"
    bg = _based(gold)
    if bg is not None:
        bp = _based(pred, bg[1])
        return bp is not None and bp == bg, "base-number"
    gparts, pparts = _CHAIN.split(gold), _CHAIN.split(pred)
    if len(gparts) > 1 and len(pparts) > 1 and not _VAR_PREFIX.match(pred):
        # "0.56 = 56\\%" against "0.56 = 57\\%": every part must agree
        if len(gparts) != len(pparts):
            return False, "different equation chains"
        pairs = zip(gparts, pparts, strict=True)
        oks = [_equal(g.strip(), q.strip(), rounding, precision)[0] for g, q in pairs]
        return all(oks), "equation chain"
    ug, up = _UNIT_POWER.findall(gold), _UNIT_POWER.findall(pred)
    if ug and up and ug != up:
        return False, "different unit powers"
    primary_error: Exception | None = None
    try:
        if _mv_equal(gold, pred, rounding, precision):
            return True, "math-verify"
    except Exception as e:
        primary_error = e
    gvars, pvars = _variants(gold), _variants(pred)
    ng = {normalize_latex(x) for x in [gold, *gvars]}
    if any(normalize_latex(x) in ng for x in [pred, *pvars]):
        return True, "normalised-string"
    for gv in [gold, *gvars]:
        for pv in [pred, *pvars]:
            if gv == gold and pv == pred:
                continue
            with contextlib.suppress(Exception):
                if _mv_equal(gv, pv, rounding, precision):
                    return True, "math-verify after normalisation"
    if primary_error is not None:
        raise primary_error
    return False, "not equivalent"


def grade_math(job: tuple[tuple[str, ...], str, int, int]) -> tuple[str, str]:
    """Worker entry: grade every candidate answer against the gold one; all must match
    (several different answers are a hedge). Returns (status, detail)."""
    cands, gold, rounding, precision = job
    try:
        results = [_equal(gold, c, rounding, precision) for c in cands]
    except Exception as e:
        return "error", f"math-verify raised {type(e).__name__}: {e}"[:500]
    if all(ok for ok, _ in results):
        return "correct", results[-1][1]
    if len(cands) > 1 and any(ok for ok, _ in results):
        return "incorrect", "hedged: boxed answers disagree"
    return "incorrect", results[-1][1]
