"""GPQA Diamond: 198 graduate-level multiple-choice science questions.

The dataset's authors ask that its questions never appear in plain text on the web: the local
copy stays in its password-protected zip, and nothing here logs question or option text.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any, ClassVar

from brite_envs.data import DataSource, HubSource, Record
from brite_envs.errors import EnvConfigError
from brite_envs.task import PromptTemplate
from brite_envs.tasks._answers import DatasetTask
from brite_envs.types import Problem, ProblemMeta
from verifiers import Verifier

LETTERS = ("A", "B", "C", "D")
ZIP_PASSWORD = "deserted-untie-orchid"
"""Public password of the GPQA release (it keeps the questions away from web crawlers)."""

_CORRECT = "Correct Answer"
_INCORRECT = ("Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")

GPQA_TEMPLATE = PromptTemplate(
    user=(
        "{question}\n\nPlease reason step by step, and put the letter of your final answer "
        "(A, B, C or D) within \\boxed{}."
    ),
    hint=(
        "{question}\n\nThe correct answer is {reference}. Without saying that you were told "
        "the answer, write a step-by-step solution that derives it, and put the letter of the "
        "final answer within \\boxed{}."
    ),
)


def option_order(seed: int, record_id: str, n: int = 4) -> list[int]:
    """A permutation of ``range(n)`` (position -> original option) fixed by ``seed`` and the
    record id. Built from SHA-256, not ``hash()`` (salted per process) or ``random`` (whose
    algorithms may change), so every machine and Python version shows the same order."""

    def key(k: int) -> bytes:
        return hashlib.sha256(f"{seed}\x1f{record_id}\x1f{k}".encode()).digest()

    return sorted(range(n), key=key)


class GPQADiamond(DatasetTask):
    """GPQA Diamond with its four options shuffled per question (from ``shuffle_seed``).

    ``reference`` is the correct letter; ``grading_reference`` is JSON with the letter and
    the shown options, so the ``choice`` verifier can also accept the option's text.
    """

    name: ClassVar[str] = "gpqa"
    verifier_name: ClassVar[str] = "choice"
    default_template: ClassVar[PromptTemplate] = GPQA_TEMPLATE

    def __init__(
        self,
        *,
        split: str = "test",
        path: str | os.PathLike[str] | None = None,
        shuffle_seed: int = 0,
        template: PromptTemplate | None = None,
        verifier_config: Mapping[str, Any] | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        if isinstance(shuffle_seed, bool) or not isinstance(shuffle_seed, int):
            raise EnvConfigError(
                f"GPQADiamond: shuffle_seed must be an int, got {type(shuffle_seed).__name__}"
            )
        self.shuffle_seed = shuffle_seed
        super().__init__(
            split=split,
            path=path,
            template=template,
            verifier_config=verifier_config,
            verifier=verifier,
        )

    def data_source(self, split: str) -> DataSource:
        return DataSource(
            "gpqa",
            "gpqa_diamond.zip",
            HubSource("Idavidrein/gpqa", "gpqa_diamond", "train"),
            member="gpqa_diamond.csv",
            password=ZIP_PASSWORD,
        )

    def _problem(self, i: int, record: Record) -> Problem:
        record_id = record.str_field("Record ID").strip()
        original = [record.str_field(c).strip() for c in (_CORRECT, *_INCORRECT)]
        order = option_order(self.shuffle_seed, record_id)
        shown = tuple(original[k] for k in order)
        letter = LETTERS[order.index(0)]
        extra = {"record_id": record_id}
        subdomain = record.str_field("Subdomain", optional=True, allow_empty=True)
        if subdomain:
            extra["subdomain"] = subdomain.strip()
        domain = record.str_field("High-level domain", optional=True, allow_empty=True)
        explanation = record.str_field("Explanation", optional=True, allow_empty=True)
        return Problem(
            id=f"{self.name}/{record_id}",
            question=record.str_field("Question").strip(),
            reference=letter,
            meta=ProblemMeta(
                source=self.name,
                index=i,
                split=self.split,
                subject=domain.strip() if domain else None,
                extra=extra,
            ),
            rationale=explanation.strip() if explanation and explanation.strip() else None,
            choices=shown,
            grading_reference=json.dumps(
                {"answer": letter, "options": dict(zip(LETTERS, shown, strict=True))}
            ),
        )

    def _load(self) -> list[Problem]:
        return [self._problem(i, record) for i, record in enumerate(self.records())]

    def format_question(self, problem: Problem) -> str:
        choices = problem.choices or ()
        options = "\n".join(f"({L}) {text}" for L, text in zip(LETTERS, choices, strict=True))
        return f"{problem.question}\n\n{options}"

    def format_reference(self, problem: Problem) -> str:
        choices = problem.choices or ()
        text = choices[LETTERS.index(problem.reference)] if choices else ""
        return f"({problem.reference}) {text}".rstrip()

    def wrong_completion(self, problem: Problem) -> str:
        wrong = LETTERS[(LETTERS.index(problem.reference) + 1) % len(LETTERS)]
        return self.format_answer(wrong)
