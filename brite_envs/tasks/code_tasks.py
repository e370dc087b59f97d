"""Code-generation benchmarks graded by running unit tests in the sandbox: HumanEval,
HumanEval+ (evalplus), BigCodeBench and BigCodeBench-Hard.

Each problem's ``reference`` is the canonical solution as a full runnable program (what the
hinted prompt shows); its ``grading_reference`` is the JSON the ``code`` verifier needs.
"""

from __future__ import annotations

import ast
import json
import os
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from brite_envs.data import DataSource, HubSource, Record, describe_source, load_records
from brite_envs.errors import EnvConfigError, MalformedRecordError
from brite_envs.task import PromptTemplate, Task
from brite_envs.types import Problem, ProblemMeta
from verifiers import Verifier
from verifiers.code import importable

PathLike = str | os.PathLike[str]

CODE_TEMPLATE = PromptTemplate(
    user=(
        "Complete the following Python function.\n\n```python\n{question}\n```\n\n"
        "Give the complete function, with the imports it needs, in a single ```python "
        "code block."
    ),
    hint=(
        "Complete the following Python function.\n\n```python\n{question}\n```\n\n"
        "A correct solution is:\n\n```python\n{reference}\n```\n\n"
        "Without saying that you were shown a solution, explain step by step how to arrive "
        "at it, then give the complete function, with its imports, in a single ```python "
        "code block."
    ),
)

INSTRUCT_TEMPLATE = PromptTemplate(
    user="{question}\n\nGive the complete code in a single ```python code block.",
    hint=(
        "{question}\n\nA correct solution is:\n\n```python\n{reference}\n```\n\n"
        "Without saying that you were shown a solution, explain step by step how to arrive "
        "at it, then give the complete code in a single ```python code block."
    ),
)


def _fenced(code: str) -> str:
    return f"```python\n{code.rstrip()}\n```"


def _stub_with_return_none(prompt: str) -> str:
    """The prompt's function with a body that only returns None (a typical wrong answer)."""
    return prompt.rstrip() + "\n    return None\n"


class _CodeTask(Task):
    """Shared loading and prompting for function-completion benchmarks."""

    verifier_name: ClassVar[str] = "code"
    default_template: ClassVar[PromptTemplate] = CODE_TEMPLATE
    source: ClassVar[DataSource]

    def __init__(
        self,
        *,
        split: str = "test",
        path: PathLike | None = None,
        template: PromptTemplate | None = None,
        verifier_config: Mapping[str, Any] | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        if split != "test":  # the agents pass env.eval_split; these benchmarks are one split
            raise EnvConfigError(
                f"{type(self).__name__}: split must be 'test' (its only split), got {split!r}"
            )
        super().__init__(template=template, verifier_config=verifier_config, verifier=verifier)
        self._path = path

    def _source(self) -> DataSource:
        return self.source

    def data_location(self) -> str:
        return describe_source(self._source(), self._path)

    def _records(self) -> list[Record]:
        return load_records(self._source(), self._path)

    def format_answer(self, answer: str) -> str:
        return f"Here is the complete function:\n\n{_fenced(answer)}"

    def reference_completion(self, problem: Problem) -> str:
        return self.format_answer(problem.reference)

    def wrong_completion(self, problem: Problem) -> str:
        ref = json.loads(problem.verifier_reference)
        return self.format_answer(_stub_with_return_none(ref["prompt"]))


class HumanEval(_CodeTask):
    """OpenAI HumanEval (164 problems): the dataset's ``check(candidate)`` on the entry point."""

    name: ClassVar[str] = "humaneval"
    source: ClassVar[DataSource] = DataSource(
        "humaneval", "HumanEval.jsonl.gz", hub=HubSource("openai/openai_humaneval", split="test")
    )

    def _load(self) -> list[Problem]:
        problems = []
        for i, rec in enumerate(self._records()):
            task_id = rec.str_field("task_id")
            prompt = rec.str_field("prompt")
            entry = rec.str_field("entry_point")
            grading = {
                "kind": "humaneval",
                "task_id": task_id,
                "prompt": prompt,
                "entry_point": entry,
                "test": rec.str_field("test"),
            }
            problems.append(
                Problem(
                    id=task_id,
                    question=prompt,
                    reference=prompt + rec.str_field("canonical_solution"),
                    meta=ProblemMeta(
                        source=self.name,
                        index=i,
                        extra={"task_id": task_id, "entry_point": entry},
                    ),
                    grading_reference=json.dumps(grading),
                )
            )
        return problems


def _input_list(rec: Record, name: str) -> list[Any]:
    value = rec.data.get(name)
    if isinstance(value, str):  # some hub exports store the inputs as JSON text
        try:
            value = json.loads(value)
        except ValueError:
            raise MalformedRecordError(rec.file, rec.line, name, "is not valid JSON") from None
    if not isinstance(value, list):
        raise MalformedRecordError(
            rec.file,
            rec.line,
            name,
            f"must be a list of argument lists, got {type(value).__name__}",
        )
    return value


class HumanEvalPlus(_CodeTask):
    """HumanEval+ (evalplus v0.1.10, 164 problems): the base and plus inputs, checked against
    the canonical solution's outputs with the dataset's ``atol``.

    ``base_only=True`` grades on the original inputs only; ``mini=True`` uses HumanEval+-Mini
    (fewer plus inputs, local file only)."""

    name: ClassVar[str] = "humanevalplus"
    source: ClassVar[DataSource] = DataSource(
        "humanevalplus",
        "HumanEvalPlus.jsonl.gz",
        hub=HubSource("evalplus/humanevalplus", split="test"),
    )
    mini_source: ClassVar[DataSource] = DataSource("humanevalplus", "HumanEvalPlus-Mini.jsonl.gz")

    def __init__(
        self,
        *,
        split: str = "test",
        path: PathLike | None = None,
        base_only: bool = False,
        mini: bool = False,
        template: PromptTemplate | None = None,
        verifier_config: Mapping[str, Any] | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        super().__init__(
            split=split,
            path=path,
            template=template,
            verifier_config=verifier_config,
            verifier=verifier,
        )
        if not isinstance(base_only, bool) or not isinstance(mini, bool):
            raise EnvConfigError(
                f"HumanEvalPlus: base_only and mini must be bools, got {base_only!r}, {mini!r}"
            )
        self.base_only = base_only
        self.mini = mini

    def _source(self) -> DataSource:
        return self.mini_source if self.mini else self.source

    def _load(self) -> list[Problem]:
        problems = []
        for i, rec in enumerate(self._records()):
            task_id = rec.str_field("task_id")
            prompt = rec.str_field("prompt")
            entry = rec.str_field("entry_point")
            canonical = prompt + rec.str_field("canonical_solution")
            atol = rec.data.get("atol") or 0
            if isinstance(atol, bool) or not isinstance(atol, (int, float)):
                raise MalformedRecordError(
                    rec.file, rec.line, "atol", f"must be a number, got {atol!r}"
                )
            grading: dict[str, Any] = {
                "kind": "humanevalplus",
                "task_id": task_id,
                "prompt": prompt,
                "entry_point": entry,
                "canonical": canonical,
                "atol": float(atol),
                "base_only": self.base_only,
            }
            if "base_input" in rec.data or self.base_only:
                # As JSON text: the grader passes them to the sandbox without decoding them
                # (7.7 MB for the 164 problems; decoding and encoding them again on the host
                # cost ~0.25 s of a first evaluation).
                grading["base_input"] = json.dumps(_input_list(rec, "base_input"))
                grading["plus_input"] = json.dumps(_input_list(rec, "plus_input"))
            else:
                # The hub export has no input lists; its `test` is a self-contained
                # check(candidate) holding the inputs and expected outputs.
                grading = {
                    "kind": "humaneval",
                    "task_id": task_id,
                    "prompt": prompt,
                    "entry_point": entry,
                    "test": rec.str_field("test"),
                }
            problems.append(
                Problem(
                    id=task_id,
                    question=prompt,
                    reference=canonical,
                    meta=ProblemMeta(
                        source=self.name,
                        index=i,
                        extra={"task_id": task_id, "entry_point": entry},
                    ),
                    grading_reference=json.dumps(grading),
                )
            )
        return problems


def _libs(rec: Record) -> list[str]:
    value = rec.data.get("libs")
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise MalformedRecordError(
                rec.file, rec.line, "libs", f"is not a list literal: {value[:80]!r}"
            ) from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedRecordError(
            rec.file, rec.line, "libs", f"must be a list of module names, got {value!r}"
        )
    return value


BigCodeBenchSplit = Literal["complete", "instruct"]
_BCB_FILES = {
    "v0.1.4": "BigCodeBench-v0.1.4-reconstructed.jsonl.gz",
    "v0.1.0": "BigCodeBench-v0.1.0.jsonl.gz",
}


class BigCodeBench(_CodeTask):
    """BigCodeBench (1140 tasks): unittest ``TestCases`` per task, many third-party libraries.

    ``split="complete"`` shows the function signature and docstring; ``"instruct"`` the
    natural-language instruction. Tasks whose ``libs`` are not importable here cannot be graded
    (:meth:`unavailable_reason` says which; the verifier returns ``error``)."""

    name: ClassVar[str] = "bigcodebench"
    hub_dataset: ClassVar[str] = "bigcode/bigcodebench"

    def __init__(
        self,
        *,
        path: PathLike | None = None,
        split: BigCodeBenchSplit = "complete",
        version: str = "v0.1.4",
        template: PromptTemplate | None = None,
        verifier_config: Mapping[str, Any] | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        if split not in ("complete", "instruct"):
            raise EnvConfigError(
                f"{type(self).__name__}: split must be 'complete' or 'instruct', got {split!r}"
            )
        if version not in _BCB_FILES:
            raise EnvConfigError(
                f"{type(self).__name__}: version must be one of {sorted(_BCB_FILES)}, "
                f"got {version!r}"
            )
        if template is None and split == "instruct":
            template = INSTRUCT_TEMPLATE
        super().__init__(
            path=path, template=template, verifier_config=verifier_config, verifier=verifier
        )
        self.split = split
        self.version = version

    def _source(self) -> DataSource:
        return DataSource(
            "bigcodebench",
            _BCB_FILES[self.version],
            hub=HubSource(self.hub_dataset, split=self.version),
        )

    def _load(self) -> list[Problem]:
        problems = []
        for i, rec in enumerate(self._records()):
            task_id = rec.str_field("task_id")
            complete = rec.str_field("complete_prompt")
            entry = rec.str_field("entry_point")
            libs = _libs(rec)
            question = complete if self.split == "complete" else rec.str_field("instruct_prompt")
            prompt = complete if self.split == "complete" else rec.str_field("code_prompt")
            grading = {
                "kind": "bigcodebench",
                "task_id": task_id,
                "prompt": prompt,
                "entry_point": entry,
                "test": rec.str_field("test"),
                "libs": libs,
            }
            problems.append(
                Problem(
                    id=task_id,
                    question=question,
                    reference=complete + rec.str_field("canonical_solution"),
                    meta=ProblemMeta(
                        source=self.name,
                        index=i,
                        split=self.split,
                        extra={"task_id": task_id, "entry_point": entry, "libs": ",".join(libs)},
                    ),
                    grading_reference=json.dumps(grading),
                )
            )
        return problems

    def unavailable_reason(self, problem: Problem) -> str | None:
        """Missing libraries among the declared ``libs`` and those the canonical solution and
        the tests import (some tasks use libraries they do not declare, e.g. faker)."""
        libs = {x for x in problem.meta.extra.get("libs", "").split(",") if x}
        test = json.loads(problem.verifier_reference).get("test", "")
        libs |= imported_modules(problem.reference) | imported_modules(test)
        missing = sorted(lib for lib in libs if not importable(lib))
        if missing:
            return f"needs libraries that are not installed here: {', '.join(missing)}"
        return None


def imported_modules(code: str) -> set[str]:
    """Top-level names of the modules ``code`` imports (absolute imports only)."""
    try:
        with warnings.catch_warnings():  # dataset code has invalid escapes like '\\W'
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            tree = ast.parse(code)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


class BigCodeBenchHard(BigCodeBench):
    """BigCodeBench-Hard (148 tasks): the harder, more realistic subset of BigCodeBench."""

    name: ClassVar[str] = "bigcodebench-hard"
    hub_dataset: ClassVar[str] = "bigcode/bigcodebench-hard"

    def __init__(
        self,
        *,
        path: PathLike | None = None,
        split: BigCodeBenchSplit = "complete",
        template: PromptTemplate | None = None,
        verifier_config: Mapping[str, Any] | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        super().__init__(
            path=path,
            split=split,
            version="v0.1.4",
            template=template,
            verifier_config=verifier_config,
            verifier=verifier,
        )

    def _source(self) -> DataSource:
        return DataSource(
            "bigcodebench",
            "BigCodeBench-Hard.jsonl.gz",
            hub=HubSource(self.hub_dataset, split=self.version),
        )
