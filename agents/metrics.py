"""Evaluation metrics over graded samples: accuracy, unbiased pass@k, maj@k, status counts,
breakdowns by subject and level, and bootstrap confidence intervals.

Why here and not in a spreadsheet: every number in a report or a comparison table comes from
these functions, over the same ``samples.jsonl`` records, so two runs are always measured the
same way. Only a verdict with status ``correct`` is a pass; timeouts and grading errors count
as failures and are reported apart in ``status_counts`` so they are never mistaken for wrong
answers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.errors import EvalDataError
from verifiers.base import Status, Verdict

_NONE_GROUP = "(none)"
"""The breakdown group of records without a subject (or level) when others have one."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- samples ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SampleRecord:
    """One graded sample; one JSON line of ``samples.jsonl``."""

    env: str
    """Env alias, e.g. ``"gsm8k"`` or ``"arith"``."""
    problem_id: str
    sample_index: int
    """0..n-1 within its problem."""
    prompt: str
    """The rendered prompt text the policy saw (``""`` only if unknown)."""
    completion: str
    verdict: Verdict
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finished: bool | None = None
    """The completion ended with EOS; None when graded from a file."""
    subject: str | None = None
    level: str | None = None

    def __post_init__(self) -> None:
        for name in ("env", "problem_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"SampleRecord.{name} must be a non-empty str, got {value!r}")
        for name in ("prompt", "completion"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"SampleRecord.{name} must be a str, got {value!r}")
        if not _is_int(self.sample_index) or self.sample_index < 0:
            raise ValueError(
                f"SampleRecord.sample_index must be an int >= 0, got {self.sample_index!r}"
            )
        if not isinstance(self.verdict, Verdict):
            raise ValueError(f"SampleRecord.verdict must be a Verdict, got {self.verdict!r}")
        for name in ("prompt_tokens", "completion_tokens"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 0):
                raise ValueError(f"SampleRecord.{name} must be an int >= 0 or None, got {value!r}")
        if self.finished is not None and not isinstance(self.finished, bool):
            raise ValueError(f"SampleRecord.finished must be a bool or None, got {self.finished!r}")
        for name in ("subject", "level"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"SampleRecord.{name} must be a str or None, got {value!r}")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; the verdict as ``Verdict.to_dict()``."""
        return {
            "env": self.env,
            "problem_id": self.problem_id,
            "sample_index": self.sample_index,
            "prompt": self.prompt,
            "completion": self.completion,
            "verdict": self.verdict.to_dict(),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "finished": self.finished,
            "subject": self.subject,
            "level": self.level,
        }

    @classmethod
    def from_json(cls, row: Mapping[str, Any], *, where: str) -> SampleRecord:
        """Parse one row of ``samples.jsonl``; ``where`` (``"file:line"``) starts every error
        message. Unknown keys are an error: a misspelt optional field would otherwise vanish."""
        if not isinstance(row, Mapping):
            raise EvalDataError(
                f"{where}: a sample must be a JSON object (SampleRecord.to_json()), "
                f"got {type(row).__name__}"
            )
        known = list(_SAMPLE_FIELDS)
        missing = [k for k in _REQUIRED_FIELDS if k not in row]
        if missing:
            raise EvalDataError(
                f"{where}: sample is missing field(s) {missing}; "
                f"required: {list(_REQUIRED_FIELDS)}; fix or remove the line"
            )
        unknown = sorted(str(k) for k in row if k not in known)
        if unknown:
            raise EvalDataError(
                f"{where}: sample has unknown field(s) {unknown}; known fields: {known}"
            )
        try:
            verdict = Verdict.from_dict(row["verdict"])
        except ValueError as e:
            raise EvalDataError(f"{where}: bad field 'verdict': {e}") from e
        try:
            return cls(
                env=row["env"],
                problem_id=row["problem_id"],
                sample_index=row["sample_index"],
                prompt=row["prompt"],
                completion=row["completion"],
                verdict=verdict,
                prompt_tokens=row.get("prompt_tokens"),
                completion_tokens=row.get("completion_tokens"),
                finished=row.get("finished"),
                subject=row.get("subject"),
                level=row.get("level"),
            )
        except ValueError as e:
            raise EvalDataError(f"{where}: {e}; fix or remove the line") from e


_SAMPLE_FIELDS = (
    "env",
    "problem_id",
    "sample_index",
    "prompt",
    "completion",
    "verdict",
    "prompt_tokens",
    "completion_tokens",
    "finished",
    "subject",
    "level",
)
_REQUIRED_FIELDS = _SAMPLE_FIELDS[:6]


@dataclass(frozen=True)
class Timing:
    """Wall time of one env's eval, split into generation and verification."""

    generation_s: float = 0.0
    verification_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("generation_s", "verification_s"):
            value = getattr(self, name)
            if not _is_number(value) or not value >= 0:
                raise ValueError(f"Timing.{name} must be a number >= 0, got {value!r}")

    def to_dict(self) -> dict[str, float]:
        return {"generation_s": self.generation_s, "verification_s": self.verification_s}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Timing:
        return cls(float(data["generation_s"]), float(data["verification_s"]))


# -- estimators ------------------------------------------------------------------------------------
def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``c`` correct out of ``n`` samples (Chen et al.,
    2021): ``1 - C(n-c, k) / C(n, k)``, in the product form that does not overflow."""
    if not _is_int(n) or n < 1:
        raise ValueError(f"pass_at_k: n must be an int >= 1, got {n!r}")
    if not _is_int(c) or not 0 <= c <= n:
        raise ValueError(f"pass_at_k: c must be an int in [0, n={n}], got {c!r}")
    if not _is_int(k) or not 1 <= k <= n:
        raise ValueError(f"pass_at_k: k must be an int in [1, n={n}], got {k!r}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority_vote(answers: Sequence[str | None]) -> int | None:
    """Index of the first sample carrying the most frequent answer. Answers are compared after
    ``.strip()``; None and empty answers do not vote; a tie goes to the answer seen first.
    None when no sample has an answer."""
    keys = [a.strip() if isinstance(a, str) else None for a in answers]
    counts = Counter(k for k in keys if k)
    if not counts:
        return None
    best = max(counts.values())
    # Counter keeps first-seen order, so the first key with the top count was seen first.
    winner = next(k for k, v in counts.items() if v == best)
    return keys.index(winner)


def _one_problem(records: Sequence[SampleRecord]) -> list[SampleRecord]:
    """The records of one problem sorted by sample_index; an error for mixed problems."""
    if not records:
        raise ValueError("no records: a problem needs at least one sample")
    ids = {(r.env, r.problem_id) for r in records}
    if len(ids) > 1:
        raise ValueError(f"records of more than one problem: {sorted(ids)[:5]}")
    return sorted(records, key=lambda r: r.sample_index)


def maj_at_k(records_of_one_problem: Sequence[SampleRecord], k: int) -> float:
    """maj@k of one problem: vote over the extracted answers of the ``k`` samples with the
    lowest sample_index; 1.0 iff the winning sample's verdict is correct (0.0 with no vote)."""
    records = _one_problem(records_of_one_problem)
    if not _is_int(k) or not 1 <= k <= len(records):
        raise ValueError(
            f"maj_at_k: k must be an int in [1, {len(records)}] "
            f"(samples of {records[0].problem_id!r}), got {k!r}"
        )
    first = records[:k]
    winner = majority_vote([r.verdict.extracted for r in first])
    return 1.0 if winner is not None and first[winner].verdict.correct else 0.0


# -- metrics of one env ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Breakdown:
    """Metrics of one subject or level."""

    problems: int
    samples: int
    accuracy: float
    pass_at_1: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "problems": self.problems,
            "samples": self.samples,
            "accuracy": self.accuracy,
            "pass_at_1": self.pass_at_1,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Breakdown:
        return cls(
            int(data["problems"]),
            int(data["samples"]),
            float(data["accuracy"]),
            float(data["pass_at_1"]),
        )


@dataclass(frozen=True)
class EnvMetrics:
    """Every metric of one env's eval; ``metrics.json`` holds its ``to_dict()``."""

    env: str
    problems: int
    samples: int
    n: int
    """Samples per problem (the minimum over problems)."""
    accuracy: float
    """Mean score over all samples."""
    pass_at_k: dict[int, float]
    """Unbiased pass@k for every k in 1..n, averaged over problems."""
    maj_at_k: dict[int, float]
    """maj@k for every k in 1..n, averaged over problems."""
    status_counts: dict[str, int]
    """Samples per verdict status; every Status value, zeros included."""
    by_subject: dict[str, Breakdown]
    by_level: dict[str, Breakdown]
    mean_completion_tokens: float | None
    mean_completion_chars: float
    timing: Timing = field(default_factory=Timing)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the k keys of pass@k and maj@k become strings."""
        return {
            "env": self.env,
            "problems": self.problems,
            "samples": self.samples,
            "n": self.n,
            "accuracy": self.accuracy,
            "pass_at_k": {str(k): v for k, v in self.pass_at_k.items()},
            "maj_at_k": {str(k): v for k, v in self.maj_at_k.items()},
            "status_counts": dict(self.status_counts),
            "by_subject": {k: v.to_dict() for k, v in self.by_subject.items()},
            "by_level": {k: v.to_dict() for k, v in self.by_level.items()},
            "mean_completion_tokens": self.mean_completion_tokens,
            "mean_completion_chars": self.mean_completion_chars,
            "timing": self.timing.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "metrics") -> EnvMetrics:
        """The inverse of :meth:`to_dict`; ``where`` names the file in errors."""
        try:
            tokens = data["mean_completion_tokens"]
            return cls(
                env=str(data["env"]),
                problems=int(data["problems"]),
                samples=int(data["samples"]),
                n=int(data["n"]),
                accuracy=float(data["accuracy"]),
                pass_at_k={int(k): float(v) for k, v in data["pass_at_k"].items()},
                maj_at_k={int(k): float(v) for k, v in data["maj_at_k"].items()},
                status_counts={str(k): int(v) for k, v in data["status_counts"].items()},
                by_subject={k: Breakdown.from_dict(v) for k, v in data["by_subject"].items()},
                by_level={k: Breakdown.from_dict(v) for k, v in data["by_level"].items()},
                mean_completion_tokens=None if tokens is None else float(tokens),
                mean_completion_chars=float(data["mean_completion_chars"]),
                timing=Timing.from_dict(data["timing"]),
            )
        except KeyError as e:
            raise EvalDataError(
                f"{where}: missing key {e}; write it with EnvMetrics.to_dict()"
            ) from e
        except (TypeError, ValueError, AttributeError) as e:
            raise EvalDataError(
                f"{where}: bad value ({e}); write it with EnvMetrics.to_dict()"
            ) from e


def group_by_problem(records: Sequence[SampleRecord]) -> dict[str, list[SampleRecord]]:
    """Records of one env grouped by problem_id (first-seen order), each sorted by
    sample_index; an error for mixed envs or a duplicate (problem_id, sample_index)."""
    envs = sorted({r.env for r in records})
    if len(envs) > 1:
        raise EvalDataError(f"records of one env expected, got envs {envs}; split them by env")
    groups: dict[str, list[SampleRecord]] = {}
    seen: set[tuple[str, int]] = set()
    for r in records:
        key = (r.problem_id, r.sample_index)
        if key in seen:
            raise EvalDataError(
                f"duplicate sample: problem {r.problem_id!r} sample_index {r.sample_index} "
                f"appears twice in env {r.env!r}; keep one of them"
            )
        seen.add(key)
        groups.setdefault(r.problem_id, []).append(r)
    return {pid: sorted(rs, key=lambda r: r.sample_index) for pid, rs in groups.items()}


def _breakdown(groups: Mapping[str, Sequence[SampleRecord]]) -> Breakdown:
    recs = [r for rs in groups.values() for r in rs]
    return Breakdown(
        problems=len(groups),
        samples=len(recs),
        accuracy=float(np.mean([r.verdict.score for r in recs])),
        pass_at_1=float(
            np.mean([sum(r.verdict.correct for r in rs) / len(rs) for rs in groups.values()])
        ),
    )


def _breakdowns(groups: Mapping[str, Sequence[SampleRecord]], attr: str) -> dict[str, Breakdown]:
    """Per-value breakdown by a problem attribute (subject/level); empty when no record has
    one. A problem's value is its first sample's (a problem has one subject)."""
    values = {pid: getattr(rs[0], attr) for pid, rs in groups.items()}
    if all(v is None for v in values.values()):
        return {}
    by_value: dict[str, dict[str, Sequence[SampleRecord]]] = {}
    for pid, rs in groups.items():
        key = values[pid] if values[pid] is not None else _NONE_GROUP
        by_value.setdefault(key, {})[pid] = rs
    return {key: _breakdown(by_value[key]) for key in sorted(by_value, key=natural_key)}


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders "Level 2" before "Level 10"."""
    parts: list[Any] = []
    for chunk in _split_digits(text):
        parts.append((0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk.lower()))
    return tuple(parts)


def _split_digits(text: str) -> list[str]:
    out: list[str] = []
    for ch in text:
        if out and out[-1][-1].isdigit() == ch.isdigit():
            out[-1] += ch
        else:
            out.append(ch)
    return out


def compute_metrics(
    records: Sequence[SampleRecord],
    timing: Timing = Timing(),
) -> EnvMetrics:
    """All metrics of one env's records. pass@k and maj@k use each problem's own sample count
    and are averaged over problems; k runs over 1..n with n the smallest sample count."""
    if not records:
        raise EvalDataError("no samples to compute metrics on; run the eval first")
    groups = group_by_problem(records)
    n = min(len(rs) for rs in groups.values())
    correct = {pid: sum(r.verdict.correct for r in rs) for pid, rs in groups.items()}
    pass_k = {
        k: float(np.mean([pass_at_k(len(rs), correct[pid], k) for pid, rs in groups.items()]))
        for k in range(1, n + 1)
    }
    maj_k = {
        k: float(np.mean([maj_at_k(rs, k) for rs in groups.values()])) for k in range(1, n + 1)
    }
    statuses = Counter(r.verdict.status.value for r in records)
    tokens = [r.completion_tokens for r in records if r.completion_tokens is not None]
    return EnvMetrics(
        env=records[0].env,
        problems=len(groups),
        samples=len(records),
        n=n,
        accuracy=float(np.mean([r.verdict.score for r in records])),
        pass_at_k=pass_k,
        maj_at_k=maj_k,
        status_counts={s.value: statuses.get(s.value, 0) for s in Status},
        by_subject=_breakdowns(groups, "subject"),
        by_level=_breakdowns(groups, "level"),
        mean_completion_tokens=float(np.mean(tokens)) if tokens else None,
        mean_completion_chars=float(np.mean([len(r.completion) for r in records])),
        timing=timing,
    )


def problem_scores(records: Sequence[SampleRecord]) -> dict[str, float]:
    """Mean score per problem_id (records of one env): the unit a bootstrap resamples."""
    return {
        pid: float(np.mean([r.verdict.score for r in rs]))
        for pid, rs in group_by_problem(records).items()
    }


# -- bootstrap -------------------------------------------------------------------------------------
def _check_bootstrap_args(n_boot: int, level: float) -> None:
    if not _is_int(n_boot) or n_boot < 1:
        raise ValueError(f"n_boot must be an int >= 1, got {n_boot!r}")
    if not _is_number(level) or not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")


def bootstrap_means(values: Sequence[float], *, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """``n_boot`` means of resamples (with replacement) of ``values``, drawn from
    ``numpy.random.default_rng(seed)``: the same seed gives the same replicates."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"bootstrap needs a non-empty 1-d sequence of values, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("bootstrap values must be finite (got NaN or inf)")
    _check_bootstrap_args(n_boot, 0.5)
    rng = np.random.default_rng(seed)
    m = arr.size
    out = np.empty(n_boot)
    rows = max(1, 4_000_000 // m)  # bounded memory for large benchmarks
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        out[start:stop] = arr[rng.integers(0, m, size=(stop - start, m))].mean(axis=1)
    return out


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap replicates."""
    _check_bootstrap_args(1, level)
    lo, hi = np.percentile(replicates, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def bootstrap_ci(
    values: Sequence[float], *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (one value per problem)."""
    _check_bootstrap_args(n_boot, level)
    return percentile_interval(bootstrap_means(values, n_boot=n_boot, seed=seed), level)


def paired_differences(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    """``a[id] - b[id]`` over the ids both share, sorted by id; an error when none are."""
    common = sorted(set(a) & set(b))
    if not common:
        raise EvalDataError(
            f"no problem id in common between the two runs ({len(a)} and {len(b)} problems, "
            f"e.g. {sorted(a)[:3]} vs {sorted(b)[:3]}); compare evals of the same benchmark"
        )
    return {pid: float(a[pid]) - float(b[pid]) for pid in common}


def paired_bootstrap_diff(
    a: Mapping[str, float],
    b: Mapping[str, float],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """``(mean(a) - mean(b), lo, hi)`` over the problem ids both share, with a percentile
    bootstrap interval that resamples problems (paired: both runs on the same problems)."""
    diffs = list(paired_differences(a, b).values())
    lo, hi = bootstrap_ci(diffs, n_boot=n_boot, seed=seed, level=level)
    return float(np.mean(diffs)), lo, hi
