"""Question-aware grading: an echo of the question, or an answer found only inside a
verbatim restatement of it, is not a correct answer. Table-driven over the math, gsm8k,
choice and exact verifiers, plus the plumbing (Task.grade passes the question; every
verifier takes it)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from brite_envs.task import Task
from brite_envs.tasks.arith import Arith
from brite_envs.types import Problem, ProblemMeta
from verifiers import Status, Verdict, Verifier
from verifiers.base import RESTATED_ONLY
from verifiers.choice import ChoiceVerifier
from verifiers.exact import ExactMatchVerifier
from verifiers.math import MathVerifier
from verifiers.numeric import GSM8KVerifier

C, I, U, E = Status.CORRECT, Status.INCORRECT, Status.UNPARSABLE, Status.ERROR  # noqa: E741
ECHO = "echo of the question"
ONLY = RESTATED_ONLY

GSM_Q = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and "
    "bakes muffins for her friends every day with four. She sells the remainder at the "
    "farmers' market daily for $2 per fresh duck egg. How much in dollars does she make "
    "every day at the farmers' market?"
)
MATH_Q = "What is the smallest positive integer $n$ such that $3n$ is a multiple of 12?"
SHORT_Q = "What is 17 + 25?"
CHOICE_Q = (
    "Last week's quiz gave (C) for this one, but is that right? Which gas do plants "
    "release as a by-product of photosynthesis on a sunny day?"
)
OPTIONS = {"A": "carbon dioxide", "B": "oxygen", "C": "nitrogen", "D": "methane"}
CHOICE_REF = json.dumps({"answer": "C", "options": OPTIONS})


@pytest.fixture(scope="module")
def verifiers_by_name() -> Iterator[dict[str, Verifier]]:
    math = MathVerifier(workers=1, timeout_s=5.0)
    yield {
        "math": math,
        "gsm8k": GSM8KVerifier(),
        "choice": ChoiceVerifier(),
        "exact": ExactMatchVerifier(),
    }
    math.close()


# (verifier, completion, reference, question, status with the question, reason fragment,
#  status without the question)
CASES = [
    # an echo of the question is incorrect (without the question it may even score)
    ("gsm8k", GSM_Q, "16", GSM_Q, I, ECHO, I),
    ("gsm8k", GSM_Q, "2", GSM_Q, I, ECHO, C),
    ("gsm8k", "Question: " + GSM_Q, "2", GSM_Q, I, ECHO, C),
    ("gsm8k", GSM_Q.replace(" ", "\n  "), "2", GSM_Q, I, ECHO, C),
    ("gsm8k", GSM_Q[:120], "16", GSM_Q, I, ECHO, C),  # truncated echo
    ("gsm8k", "<think>hmm</think>" + GSM_Q, "2", GSM_Q, I, ECHO, C),
    ("math", MATH_Q, "12", MATH_Q, I, ECHO, C),
    ("math", MATH_Q + " Let me think.", "12", MATH_Q, I, ONLY, C),
    ("exact", SHORT_Q, "25", SHORT_Q, I, ECHO, C),
    ("choice", CHOICE_Q, "C", CHOICE_Q, I, ECHO, C),
    ("choice", CHOICE_Q, CHOICE_REF, CHOICE_Q, I, ECHO, C),
    # an answer that only appears inside the restated question is incorrect
    ("gsm8k", "Restating the problem: " + GSM_Q + " Hmm, hard.", "2", GSM_Q, I, ONLY, C),
    ("math", "We must solve: " + MATH_Q + " This needs care.", "12", MATH_Q, I, ONLY, C),
    ("exact", "Let me restate. " + SHORT_Q + " I do not know.", "25", SHORT_Q, I, ONLY, C),
    ("choice", "So: " + CHOICE_Q + " It is a hard one, I am not sure.", "C", CHOICE_Q, I, ONLY, C),
    # ... but an answer given after the restatement still counts, explicit or not
    ("gsm8k", GSM_Q + "\n16 - 3 - 4 = 9 eggs, 9 * 2 = 18.\n#### 18", "18", GSM_Q, C, "hash", C),
    ("gsm8k", GSM_Q + " 16 - 3 - 4 = 9 eggs, so she makes 9 * 2 = 18.", "18", GSM_Q, C, "", C),
    ("gsm8k", GSM_Q + " The answer is 18.", "18", GSM_Q, C, "answer-is", C),
    ("math", MATH_Q + " Since 3n = 12k, n = 4k, so \\boxed{4}.", "4", MATH_Q, C, "boxed", C),
    ("math", MATH_Q + " The answer is 4.", "4", MATH_Q, C, "answer-is", C),
    ("exact", SHORT_Q + " It is 42.", "42", SHORT_Q, C, "last-number", C),
    ("choice", CHOICE_Q + "\nAnswer: C", "C", CHOICE_Q, C, "answer-is", C),
    ("choice", CHOICE_Q + "\nThe answer is nitrogen.", CHOICE_REF, CHOICE_Q, C, "option", C),
    # ... and a wrong answer after it is still wrong
    ("gsm8k", GSM_Q + "\n#### 16", "18", GSM_Q, I, "different", I),
    ("math", MATH_Q + " \\boxed{12}", "4", MATH_Q, I, "boxed", I),
    ("choice", CHOICE_Q + "\nAnswer: A", "C", CHOICE_Q, I, "different", I),
    # a long completion that restates the question and never answers: nothing is read from
    # the restatement (its last number, 2, is the price per egg)
    (
        "gsm8k",
        "I will restate it. " + GSM_Q + " Now I need to think about this for a long while, "
        "going over every sentence of it with care before writing anything down at all.",
        "2",
        GSM_Q,
        I,
        ONLY,
        C,
    ),
    ("gsm8k", "I need to think about this for a long while.", "2", GSM_Q, U, "no number", U),
    # the other false-positive classes hold with a question too
    ("gsm8k", GSM_Q + " The answer is 18 or 20.", "18", GSM_Q, I, "hedged", I),
    ("math", MATH_Q + " \\boxed{4} or \\boxed{8}", "4", MATH_Q, I, "hedged", I),
    ("math", MATH_Q + " \\boxed{}", "4", MATH_Q, I, "empty", I),
    ("math", "\\boxed{14}", "4", MATH_Q, I, "", I),  # no partial credit for substrings
    ("gsm8k", "#### 1", "18", GSM_Q, I, "different", I),
    ("choice", "The answer is (A) or (C)", "C", CHOICE_Q, I, "hedged", I),
    ("exact", "", "42", SHORT_Q, U, "no answer", U),
]


@pytest.mark.parametrize(
    ("name", "completion", "reference", "question", "status", "why", "without"), CASES
)
def test_question_aware_grading(
    verifiers_by_name: dict[str, Verifier],
    name: str,
    completion: str,
    reference: str,
    question: str,
    status: Status,
    why: str,
    without: Status,
) -> None:
    v = verifiers_by_name[name]
    verdict = v.verify(completion, reference, question=question)
    assert verdict.status is status, verdict
    assert why in verdict.reason, verdict
    assert verdict.score == (1.0 if status is C else 0.0)
    assert v.verify(completion, reference).status is without  # question-free grading unchanged


@pytest.mark.parametrize("name", ["math", "gsm8k", "choice", "exact"])
def test_verify_many_takes_questions(verifiers_by_name: dict[str, Verifier], name: str) -> None:
    rows = [c for c in CASES if c[0] == name]
    v = verifiers_by_name[name]
    out = v.verify_many([r[1] for r in rows], [r[2] for r in rows], questions=[r[3] for r in rows])
    assert [x.status for x in out] == [r[4] for r in rows]
    # None entries mean "no question" for that completion
    mixed = v.verify_many([r[1] for r in rows], [r[2] for r in rows], questions=[None] * len(rows))
    assert [x.status for x in mixed] == [r[6] for r in rows]
    with pytest.raises(ValueError, match="questions"):
        v.verify_many(["a", "b"], ["1", "2"], questions=["q"])


@pytest.mark.parametrize("name", ["math", "gsm8k", "choice", "exact"])
def test_bad_question_type_is_an_error_verdict(
    verifiers_by_name: dict[str, Verifier], name: str
) -> None:
    verdict = verifiers_by_name[name].verify("#### 1", "1", question=7)  # type: ignore[arg-type]
    assert verdict.status is E and "question" in verdict.reason


def test_empty_question_is_no_question(verifiers_by_name: dict[str, Verifier]) -> None:
    assert verifiers_by_name["exact"].verify(SHORT_Q, "25", question="").status is C


def test_question_checks_stay_cheap() -> None:
    """Restatement detection is linear: a 60k-character completion takes milliseconds."""
    v = GSM8KVerifier()
    big = "step 12 + 7 = 19; " * 3500 + GSM_Q + "\n#### 18"
    t0 = time.perf_counter()
    assert v.verify(big, "18", question=GSM_Q).status is C
    assert time.perf_counter() - t0 < 0.5


# --------------------------------------------------------------------------- plumbing


class _Recording(Verifier):
    """A minimal third-party verifier: records what it is called with."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None]] = []

    def verify(self, completion: str, reference: str, *, question: str | None = None) -> Verdict:
        self.calls.append((completion, reference, question))
        ok = completion.strip() == reference
        return Verdict(float(ok), C if ok else I, completion, "recording")


def test_base_verify_many_forwards_questions() -> None:
    v = _Recording()
    assert [x.status for x in v.verify_many(["5", "6"], ["5", "5"], questions=["q1", "q2"])] == [
        C,
        I,
    ]
    assert v.verify_many(["5"], ["5"])[0].correct
    assert v.calls == [("5", "5", "q1"), ("6", "5", "q2"), ("5", "5", None)]
    with pytest.raises(ValueError, match="1 completions but 2 questions"):
        v.verify_many(["5"], ["5"], questions=["a", "b"])
    assert ExactMatchVerifier().verify_many([SHORT_Q], ["25"], questions=[SHORT_Q])[0].status is I


@pytest.mark.parametrize("name", ["exact", "gsm8k", "choice", "math", "code"])
def test_every_builtin_verifier_takes_the_question(name: str) -> None:
    """``question`` is part of the Verifier interface, not an optional extra."""
    import verifiers

    v = verifiers.shared(name)
    verdict = v.verify("no answer here", "A" if name == "choice" else "5", question="q?")
    assert isinstance(verdict, Verdict)
    assert len(v.verify_many(["x"], ["5"], questions=["q?"])) == 1


class _Tiny(Task):
    name = "tiny"

    def __init__(self, verifier: Verifier) -> None:
        super().__init__(verifier=verifier)

    def _load(self) -> list[Problem]:
        return [
            Problem(id="t/0", question=SHORT_Q, reference="42", meta=ProblemMeta("tiny", 0)),
            Problem(id="t/1", question=GSM_Q, reference="18", meta=ProblemMeta("tiny", 1)),
        ]

    def wrong_completion(self, problem: Problem) -> str:
        return "\\boxed{0}"


def test_task_grade_passes_the_question() -> None:
    task = Arith(size=3)
    p = task[0]
    echo = task.grade(p, p.question)
    assert echo.status is I and echo.reason == ECHO
    assert task.grade(p, task.reference_completion(p)).correct
    verdicts = task.grade_many(
        list(task.problems),
        [q.question for q in task.problems[:2]] + [task.reference_completion(task[2])],
    )
    assert [v.status for v in verdicts] == [I, I, C]
    assert verdicts[0].reason == ECHO


def test_task_grade_hands_the_question_to_a_plugin_verifier() -> None:
    rec = _Recording()
    task = _Tiny(rec)
    assert task.grade(task[0], "42").correct
    assert [v.status for v in task.grade_many(list(task.problems), ["42", "17"])] == [C, I]
    assert rec.calls == [("42", "42", SHORT_Q), ("42", "42", SHORT_Q), ("17", "18", GSM_Q)]


def test_task_grade_with_gsm8k_verifier() -> None:
    task = _Tiny(GSM8KVerifier())
    assert task.grade(task[1], GSM_Q).reason == ECHO
    assert task.grade(task[1], GSM_Q + "\n#### 18").correct
