"""Competition-math benchmarks graded by the ``math`` verifier: MATH, MATH-500, Minerva
(OCW) math, AIME 2024/2025 and AMC 2023."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from brite_envs.data import DataSource, HubSource, Record, load_records, locate, read_file
from brite_envs.errors import EnvConfigError
from brite_envs.task import PromptTemplate
from brite_envs.tasks._answers import (
    DatasetTask,
    boxed_reference,
    canonical_number,
    text_field,
    wrong_answer,
)
from brite_envs.types import Problem, ProblemMeta
from verifiers import Verifier

MATH_HUB = "EleutherAI/hendrycks_math"
MATH_SUBJECTS: tuple[str, ...] = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)
"""The hub copy of MATH has one config per subject; together they are the whole split."""

MATH_SUBJECT_NAMES: dict[str, str] = {
    "algebra": "Algebra",
    "counting_and_probability": "Counting & Probability",
    "geometry": "Geometry",
    "intermediate_algebra": "Intermediate Algebra",
    "number_theory": "Number Theory",
    "prealgebra": "Prealgebra",
    "precalculus": "Precalculus",
}
"""Hub config name -> the subject as MATH's ``type`` field (and MATH-500's ``subject``) spells
it."""

MATH_LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5)

MATH_ANSWER_FIXES: dict[str, str] = {
    # Both solutions end "... there are $\boxed{}$ primes" / "the answer is $\boxed{}$": the
    # box lost its contents upstream. Each proves that no term is prime, so the answer is 0
    # (option (A) of the multiple-choice original).
    "train/number_theory/7115.json": "0",
    "train/number_theory/7117.json": "0",
}
"""Answers for official MATH records whose solution has an empty ``\\boxed{}``."""


def _level(value: str | None) -> str | None:
    """MATH-500 stores the level as an int; show it like MATH does (``"Level 3"``) so that
    per-level breakdowns of the two line up."""
    if value is None:
        return None
    value = value.strip()
    return f"Level {value}" if value.isdigit() else value


def _subject_key(name: str) -> str:
    """One spelling per subject: "Counting & Probability", "counting_and_probability" and
    "counting and probability" all become the hub config name."""
    key = name.strip().lower().replace("&", " and ")
    return re.sub(r"[\s_\-]+", "_", key).strip("_")


def _as_list(value: Any) -> list[Any]:
    """A single value (``"algebra"``, ``3``) or an iterable of them, as a list."""
    if isinstance(value, (str, int)):
        return [value]
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise TypeError
    return list(value)


def check_subjects(task: str, subjects: Any) -> tuple[str, ...] | None:
    """The selected subjects as MATH spells them (sorted, no duplicates), or None for all.
    Names are case-insensitive and may be hub config names (``"intermediate_algebra"``)."""
    if subjects is None:
        return None
    valid = ", ".join(f"{name!r} ({key})" for key, name in MATH_SUBJECT_NAMES.items())
    try:
        items = _as_list(subjects)
    except TypeError:
        raise EnvConfigError(
            f"task {task!r}: subjects must be None or a list of names, got {subjects!r}; "
            f"valid subjects are: {valid}"
        ) from None
    if not items:
        raise EnvConfigError(
            f"task {task!r}: subjects=[] selects nothing; pass None for every subject or some "
            f"of: {valid}"
        )
    keys = []
    for item in items:
        key = _subject_key(item) if isinstance(item, str) else None
        if key not in MATH_SUBJECT_NAMES:
            raise EnvConfigError(
                f"task {task!r}: unknown subject {item!r}; valid subjects are: {valid} "
                "(case-insensitive)"
            )
        keys.append(key)
    return tuple(MATH_SUBJECT_NAMES[k] for k in sorted(set(keys)))


_LEVEL_RE = re.compile(r"(?:level\s*)?([0-9]+)", re.IGNORECASE)


def _level_number(value: Any) -> int | None:
    """1-5 from ``3``, ``"3"`` or ``"Level 3"``; None for anything else (``"Level ?"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value in MATH_LEVELS else None
    if isinstance(value, str):
        m = _LEVEL_RE.fullmatch(value.strip())
        if m and int(m.group(1)) in MATH_LEVELS:
            return int(m.group(1))
    return None


def check_levels(task: str, levels: Any) -> tuple[int, ...] | None:
    """The selected levels as sorted ints, or None for all. Accepts 1-5 and "Level 3"."""
    if levels is None:
        return None
    valid = "1, 2, 3, 4, 5 (or 'Level 1' ... 'Level 5')"
    try:
        items = _as_list(levels)
    except TypeError:
        raise EnvConfigError(
            f"task {task!r}: levels must be None or a list of levels, got {levels!r}; "
            f"valid levels are: {valid}"
        ) from None
    if not items:
        raise EnvConfigError(
            f"task {task!r}: levels=[] selects nothing; pass None for every level or some of: "
            f"{valid}"
        )
    out = set()
    for item in items:
        number = _level_number(item)
        if number is None:
            raise EnvConfigError(
                f"task {task!r}: unknown level {item!r}; valid levels are: {valid}"
            )
        out.add(number)
    return tuple(sorted(out))


class MathTask(DatasetTask):
    """Base of the tasks graded by the ``math`` verifier (answers compared as expressions)."""

    verifier_name: ClassVar[str] = "math"

    def wrong_completion(self, problem: Problem) -> str:
        return self.format_answer(wrong_answer(problem.reference))


class FilteredMathTask(MathTask):
    """A MATH-style task that can keep only some subjects and difficulty levels.

    ``subjects``: None (all) or names such as ``"Algebra"``, ``"number theory"`` or the hub
    config name ``"intermediate_algebra"``. ``levels``: None (all) or 1-5 / ``"Level 3"``.
    Invalid values raise :class:`EnvConfigError` naming the valid ones. Problem ids and
    ``meta.index`` stay those of the whole split, so a filtered task's problems are the same
    problems, not renumbered copies.
    """

    def __init__(
        self,
        *,
        split: str = "test",
        path: str | os.PathLike[str] | None = None,
        subjects: str | Iterable[str] | None = None,
        levels: int | str | Iterable[int | str] | None = None,
        template: PromptTemplate | None = None,
        verifier_config: Mapping[str, Any] | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.subjects = check_subjects(self.name, subjects)
        self.levels = check_levels(self.name, levels)
        super().__init__(
            split=split,
            path=path,
            template=template,
            verifier_config=verifier_config,
            verifier=verifier,
        )

    def _selected(self, problem: Problem) -> bool:
        if self.subjects is not None:
            subject = problem.meta.subject
            name = MATH_SUBJECT_NAMES.get(_subject_key(subject)) if subject else None
            if name not in self.subjects:
                return False
        return self.levels is None or _level_number(problem.meta.level) in self.levels

    def _filter(self, problems: list[Problem]) -> list[Problem]:
        if self.subjects is None and self.levels is None:
            return problems
        return [p for p in problems if self._selected(p)]

    def __repr__(self) -> str:
        base = super().__repr__()[:-1]
        extra = "".join(
            f", {k}={v!r}" for k, v in (("subjects", self.subjects), ("levels", self.levels)) if v
        )
        return base + extra + ")"


class MATH(FilteredMathTask):
    """Hendrycks MATH, all seven subjects (splits ``train`` 7500 and ``test`` 5000). The
    reference is the last boxed answer of the human solution, which is the rationale.
    ``MATH(subjects=["algebra"], levels=[4, 5])`` keeps only those problems."""

    name: ClassVar[str] = "math"
    splits: ClassVar[tuple[str, ...]] = ("train", "test")

    def data_source(self, split: str) -> DataSource:
        return DataSource("math", f"{split}.jsonl", HubSource(MATH_HUB, None, split))

    def records(self) -> list[Record]:
        # Local copies hold the whole split in one file; the hub has a config per subject,
        # so the split is their concatenation (in MATH_SUBJECTS order).
        local = locate(self.source, self.path)
        if local is not None:
            return list(read_file(local, self.source))
        records: list[Record] = []
        for subject in MATH_SUBJECTS:
            hub = HubSource(MATH_HUB, subject, self.split)
            records.extend(load_records(dataclasses.replace(self.source, hub=hub)))
        return records

    def _load(self) -> list[Problem]:
        problems = []
        for i, record in enumerate(self.records()):
            uid = record.str_field("unique_id", optional=True)
            problems.append(
                Problem(
                    id=uid or f"{self.name}/{self.split}/{i}",
                    question=record.str_field("problem"),
                    reference=boxed_reference(record, "solution", MATH_ANSWER_FIXES),
                    meta=ProblemMeta(
                        source=self.name,
                        index=i,
                        split=self.split,
                        subject=record.str_field("type", optional=True),
                        level=record.str_field("level", optional=True),
                    ),
                    rationale=record.str_field("solution"),
                )
            )
        return self._filter(problems)


class MATH500(FilteredMathTask):
    """MATH-500, the PRM800K subset of the MATH test split (500 problems). The reference is
    the dataset's ``answer`` field (it equals the solution's last boxed answer). Takes the
    same ``subjects``/``levels`` filters as :class:`MATH`."""

    name: ClassVar[str] = "math500"

    def data_source(self, split: str) -> DataSource:
        return DataSource("math500", "test.jsonl", HubSource("HuggingFaceH4/MATH-500", None, split))

    def _load(self) -> list[Problem]:
        problems = []
        for i, record in enumerate(self.records()):
            problems.append(
                Problem(
                    id=record.str_field("unique_id"),
                    question=record.str_field("problem"),
                    reference=record.str_field("answer").strip(),
                    meta=ProblemMeta(
                        source=self.name,
                        index=i,
                        split=self.split,
                        subject=record.str_field("subject", optional=True),
                        level=_level(record.str_field("level", optional=True)),
                    ),
                    rationale=record.str_field("solution", optional=True),
                )
            )
        return self._filter(problems)


class Minerva(MathTask):
    """Minerva's MIT OCW problems (272) as used by the Qwen2.5-Math evaluation. No hub copy
    is known, so it loads from ``$BRITE_DATA_DIR/minerva_math/test.jsonl`` or ``path=``."""

    name: ClassVar[str] = "minerva"

    def data_source(self, split: str) -> DataSource:
        return DataSource("minerva_math", f"{split}.jsonl", None)

    def _load(self) -> list[Problem]:
        problems = []
        for i, record in enumerate(self.records()):
            idx = record.int_field("idx", optional=True)
            problems.append(
                Problem(
                    id=f"{self.name}/{i if idx is None else idx}",
                    question=record.str_field("problem"),
                    reference=boxed_reference(record, "solution"),
                    meta=ProblemMeta(
                        source=self.name,
                        index=i,
                        split=self.split,
                        subject=record.str_field("type", optional=True),
                    ),
                    rationale=record.str_field("solution"),
                )
            )
        return problems


class CompetitionTask(MathTask):
    """AIME/AMC-style sets: a problem, an integer answer and maybe a url and solution.

    Answers are normalised to plain integers (``"025"`` -> ``"25"``, ``27.0`` -> ``"27"``).
    Ids use the record's ``id`` field when it has one (so they match the hub copy), else
    its position.
    """

    folder: ClassVar[str] = ""
    hub: ClassVar[HubSource | None] = None

    def data_source(self, split: str) -> DataSource:
        return DataSource(self.folder, f"{split}.jsonl", self.hub)

    def _load(self) -> list[Problem]:
        problems = []
        for i, record in enumerate(self.records()):
            record_id = record.str_field("id", optional=True)
            extra = {"record_id": record_id} if record_id is not None else {}
            url = record.str_field("url", optional=True, allow_empty=True)
            if url:
                extra["url"] = url
            problems.append(
                Problem(
                    id=f"{self.name}/{i if record_id is None else record_id}",
                    question=text_field(record, ("problem", "question")),
                    reference=canonical_number(record.str_field("answer")),
                    meta=ProblemMeta(source=self.name, index=i, split=self.split, extra=extra),
                    rationale=record.str_field("solution", optional=True, allow_empty=True) or None,
                )
            )
        return problems


class AIME24(CompetitionTask):
    """AIME 2024 I and II (30 problems), hub copy HuggingFaceH4/aime_2024 (split ``train``)."""

    name: ClassVar[str] = "aime24"
    folder: ClassVar[str] = "aime24"
    hub: ClassVar[HubSource | None] = HubSource("HuggingFaceH4/aime_2024", None, "train")


class AIME25(CompetitionTask):
    """AIME 2025 I and II (30 problems). Hub copy: math-ai/aime25 (split ``test``), which has
    both contests in one split with ``problem``/``answer`` fields like the local file;
    opencompass/AIME2025 splits them into two configs."""

    name: ClassVar[str] = "aime25"
    folder: ClassVar[str] = "aime25"
    hub: ClassVar[HubSource | None] = HubSource("math-ai/aime25", None, "test")


class AMC23(CompetitionTask):
    """AMC 2023 problems (40) as used by the Qwen2.5-Math evaluation; the hub copy is
    math-ai/amc23. Answers are stored as floats (``27.0``) and shown as integers."""

    name: ClassVar[str] = "amc23"
    folder: ClassVar[str] = "amc23"
    hub: ClassVar[HubSource | None] = HubSource("math-ai/amc23", None, "test")
