"""GSM8K: grade-school math word problems with integer answers (openai/grade-school-math)."""

from __future__ import annotations

from typing import ClassVar

from brite_envs.data import DataSource, HubSource, Record
from brite_envs.errors import MalformedRecordError
from brite_envs.tasks._answers import DatasetTask, wrong_answer
from brite_envs.types import Problem, ProblemMeta

_MARK = "####"


def gsm8k_reference(record: Record) -> str:
    """The text after the last ``####`` of the solution, without thousands separators."""
    answer = record.str_field("answer")
    if _MARK not in answer:
        raise MalformedRecordError(
            record.file, record.line, "answer", f"has no '{_MARK} <final answer>' line"
        )
    reference = answer.rsplit(_MARK, 1)[1].strip().replace(",", "")
    if not reference:
        raise MalformedRecordError(record.file, record.line, "answer", f"is empty after {_MARK}")
    return reference


class GSM8K(DatasetTask):
    """GSM8K (splits ``train`` 7473 and ``test`` 1319). The rationale is the human solution,
    kept verbatim (calculator annotations and the final ``#### N`` line included)."""

    name: ClassVar[str] = "gsm8k"
    verifier_name: ClassVar[str] = "gsm8k"
    splits: ClassVar[tuple[str, ...]] = ("train", "test")

    def data_source(self, split: str) -> DataSource:
        return DataSource("gsm8k", f"{split}.jsonl", HubSource("openai/gsm8k", "main", split))

    def _load(self) -> list[Problem]:
        problems = []
        for i, record in enumerate(self.records()):
            problems.append(
                Problem(
                    id=f"{self.name}/{self.split}/{i}",
                    question=record.str_field("question"),
                    reference=gsm8k_reference(record),
                    meta=ProblemMeta(source=self.name, index=i, split=self.split),
                    rationale=record.str_field("answer"),
                )
            )
        return problems

    def wrong_completion(self, problem: Problem) -> str:
        return self.format_answer(wrong_answer(problem.reference))
