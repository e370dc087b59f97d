"""A Task turns a dataset into problems, renders prompts (plain and hinted), and names its
verifier. Environments are built on tasks; agents use the hinted prompt for BRiTE's
thinking policy Q(z | x, y*)."""

from __future__ import annotations

import abc
import dataclasses
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from brite_envs.errors import EnvConfigError, ProblemNotFoundError
from brite_envs.types import ChatMessage, Problem
from verifiers import Verdict, Verifier
from verifiers import shared as shared_verifier

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class PromptTemplate:
    """How a problem becomes a prompt.

    ``user`` has a ``{question}`` slot; ``hint`` (the thinking policy's prompt, which also
    shows the reference answer) has ``{question}`` and ``{reference}``. Only these slots are
    substituted, in one pass, so LaTeX braces such as ``\\boxed{}`` need no escaping. The
    paper does not publish its hint template, so this is configuration.
    """

    user: str = "{question}\n\n" + BOXED_INSTRUCTION
    hint: str = (
        "{question}\n\n"
        "The correct final answer is {reference}. Without saying that you were told the "
        "answer, write a step-by-step solution that derives it, and put the final answer "
        "within \\boxed{}."
    )
    system: str | None = None

    def __post_init__(self) -> None:
        if "{question}" not in self.user:
            raise ValueError(f"PromptTemplate.user must contain '{{question}}', got {self.user!r}")
        for key in ("{question}", "{reference}"):
            if key not in self.hint:
                raise ValueError(f"PromptTemplate.hint must contain {key!r}, got {self.hint!r}")

    @classmethod
    def of(cls, value: PromptTemplate | Mapping[str, Any], base: PromptTemplate) -> PromptTemplate:
        """``value`` itself, or ``base`` with the fields a mapping gives replaced (what a
        config override such as ``env.task_kwargs.template.hint='...'`` passes)."""
        if isinstance(value, PromptTemplate):
            return value
        if not isinstance(value, Mapping):
            raise EnvConfigError(
                f"template must be a PromptTemplate or a mapping of its fields, got {value!r}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise EnvConfigError(f"template has unknown field(s) {unknown}; known: {sorted(known)}")
        try:
            return dataclasses.replace(base, **dict(value))
        except ValueError as exc:
            raise EnvConfigError(str(exc)) from None

    def render_user(self, question: str) -> str:
        return _fill(self.user, {"question": question})

    def render_hint(self, question: str, reference: str) -> str:
        return _fill(self.hint, {"question": question, "reference": reference})


_SLOT = re.compile(r"\{(question|reference)\}")


def _fill(template: str, values: dict[str, str]) -> str:
    return _SLOT.sub(lambda m: values[m.group(1)], template)


class Task(abc.ABC):
    """A benchmark (or a procedural generator) as a list of problems plus how to prompt and
    grade them. Subclasses implement :meth:`_load` and set ``name`` and ``verifier_name``.

    Problems load lazily on first access and are cached, so building a task (and so an env)
    is cheap until it is used.
    """

    name: ClassVar[str] = "task"
    verifier_name: ClassVar[str] = "exact"
    default_template: ClassVar[PromptTemplate] = PromptTemplate()

    def __init__(
        self,
        *,
        template: PromptTemplate | Mapping[str, Any] | None = None,
        verifier_config: Mapping[str, Any] | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.template = (
            self.default_template
            if template is None
            else PromptTemplate.of(template, self.default_template)
        )
        self.verifier_config: Mapping[str, Any] = MappingProxyType(dict(verifier_config or {}))
        self._verifier = verifier
        self._problems: list[Problem] | None = None
        self._by_id: dict[str, int] | None = None
        self._lock = threading.Lock()

    # -- data ---------------------------------------------------------------------------
    @abc.abstractmethod
    def _load(self) -> list[Problem]:
        """Load or generate every problem, in a fixed order."""

    def data_location(self) -> str:
        """Where the problems come from (``builtin``, ``local:<path>``, ``hub:<id>`` or
        ``unavailable``), without loading them."""
        return "builtin"

    @property
    def problems(self) -> Sequence[Problem]:
        if self._problems is None:
            with self._lock:
                if self._problems is None:
                    problems = self._load()
                    by_id: dict[str, int] = {}
                    for i, p in enumerate(problems):
                        if p.id in by_id:
                            raise EnvConfigError(
                                f"task {self.name!r}: duplicate problem id {p.id!r}"
                            )
                        by_id[p.id] = i
                    self._by_id = by_id
                    self._problems = problems
        return self._problems

    def __len__(self) -> int:
        return len(self.problems)

    def __getitem__(self, index: int) -> Problem:
        n = len(self.problems)
        if not isinstance(index, int) or not -n <= index < n:
            raise ProblemNotFoundError(
                f"task {self.name!r} has {n} problems; index {index!r} is out of range [0, {n})"
            )
        return self.problems[index]

    def index_of(self, problem_id: str) -> int:
        self.problems  # noqa: B018 - load
        assert self._by_id is not None
        try:
            return self._by_id[problem_id]
        except KeyError:
            example = self.problems[0].id if self.problems else "<none>"
            raise ProblemNotFoundError(
                f"task {self.name!r} has no problem with id {problem_id!r} (ids look like "
                f"{example!r})"
            ) from None

    # -- prompts --------------------------------------------------------------------------
    def format_question(self, problem: Problem) -> str:
        """The question text as shown to the model (multiple-choice tasks add the options)."""
        return problem.question

    def format_reference(self, problem: Problem) -> str:
        """The reference answer as shown in the hinted prompt."""
        return problem.reference

    def render_messages(self, problem: Problem, *, hinted: bool = False) -> list[ChatMessage]:
        """Chat messages for a chat template. ``hinted=True`` also shows the reference answer."""
        question = self.format_question(problem)
        if hinted:
            text = self.template.render_hint(question, self.format_reference(problem))
        else:
            text = self.template.render_user(question)
        messages: list[ChatMessage] = []
        if self.template.system:
            messages.append({"role": "system", "content": self.template.system})
        messages.append({"role": "user", "content": text})
        return messages

    def render_prompt(self, problem: Problem, *, hinted: bool = False) -> str:
        """The prompt as plain text, for models without a chat template."""
        return "\n\n".join(m["content"] for m in self.render_messages(problem, hinted=hinted))

    def render_hinted_messages(self, problem: Problem) -> list[ChatMessage]:
        return self.render_messages(problem, hinted=True)

    def render_hinted_prompt(self, problem: Problem) -> str:
        return self.render_prompt(problem, hinted=True)

    # -- completions used by checks and tests --------------------------------------------
    def format_answer(self, answer: str) -> str:
        """A typical completion that ends in ``answer``."""
        return f"Working through the problem step by step, the final answer is \\boxed{{{answer}}}."

    def reference_completion(self, problem: Problem) -> str:
        """A typical completion reaching the reference answer; it must score 1.0."""
        return self.format_answer(problem.reference)

    @abc.abstractmethod
    def wrong_completion(self, problem: Problem) -> str:
        """A typical completion reaching a wrong answer; it must score 0.0."""

    # -- grading --------------------------------------------------------------------------
    @property
    def verifier(self) -> Verifier:
        if self._verifier is None:
            self._verifier = shared_verifier(self.verifier_name, **self.verifier_config)
        return self._verifier

    def unavailable_reason(self, problem: Problem) -> str | None:
        """Why ``problem`` cannot be graded on this machine (a missing library), or None."""
        return None

    def grade(self, problem: Problem, completion: str) -> Verdict:
        """Grade one completion. The question goes along (to verifiers that take it) so an
        echo of the question, or a number only found in a restatement of it, scores 0."""
        return self.verifier.verify(
            completion, problem.verifier_reference, question=problem.question
        )

    def grade_many(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[Verdict]:
        """Grade a batch (the verifier may parallelise), questions included as in :meth:`grade`."""
        return self.verifier.verify_many(
            list(completions),
            [p.verifier_reference for p in problems],
            questions=[p.question for p in problems],
        )

    def __getstate__(self) -> dict[str, Any]:
        # Verifiers may hold worker processes and the lock cannot be pickled: rebuild them
        # in the child (gymnasium's AsyncVectorEnv pickles envs).
        state = self.__dict__.copy()
        state["_lock"] = None
        state["_verifier"] = None
        state["verifier_config"] = dict(self.verifier_config)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["_lock"] = threading.Lock()
        state["verifier_config"] = MappingProxyType(state["verifier_config"])
        self.__dict__.update(state)

    def __repr__(self) -> str:
        n = len(self._problems) if self._problems is not None else "?"
        return f"{type(self).__name__}(name={self.name!r}, problems={n})"


@dataclass(frozen=True)
class TaskSpec:
    """A registry entry: how to build a task lazily, and its Gymnasium id."""

    name: str
    gym_id: str
    factory: str
    """``"module:attr"`` of a Task subclass or a callable returning a Task."""
    verifier: str
    description: str = ""
    aliases: tuple[str, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
