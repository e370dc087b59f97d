"""Rubrics: weighted named reward signals, each reported in info; weight 0 is a metric."""

from __future__ import annotations

import numpy as np
import pytest

from brite_envs import ByteTokenizer, ReasoningEnv, TokenVectorEnv
from brite_envs.tasks.arith import Arith
from verifiers import Status, Verdict, VerifierConfigError
from verifiers.rubric import AnswerFormat, Correctness, LengthPenalty, Rubric


@pytest.fixture(scope="module")
def arith() -> Arith:
    return Arith(size=20)


def _v(status: Status, score: float = 0.0, extracted: str | None = "3") -> Verdict:
    return Verdict(score, status, extracted, "test")


def test_builtin_signals_by_hand() -> None:
    assert Correctness()("x", _v(Status.CORRECT, 1.0), None) == 1.0
    assert AnswerFormat()("x", _v(Status.INCORRECT), None) == 1.0
    assert AnswerFormat()("x", _v(Status.UNPARSABLE, extracted=None), None) == 0.0
    assert AnswerFormat()("x", _v(Status.INCORRECT, extracted=None), None) == 0.0  # echo
    assert AnswerFormat()("x", _v(Status.TIMEOUT), None) == 0.0
    assert AnswerFormat(pattern=r"\\boxed\{")("so \\boxed{3}", _v(Status.ERROR), None) == 1.0
    assert LengthPenalty(budget=10)("x" * 10, _v(Status.CORRECT), None) == 0.0
    assert LengthPenalty(budget=10)("x" * 15, _v(Status.CORRECT), None) == -0.5
    assert LengthPenalty(budget=10)("x", _v(Status.CORRECT), num_tokens=40) == -1.0


def test_rubric_weighted_total_and_metrics() -> None:
    rubric = Rubric.from_weights({"correctness": 1.0, "format": 0.25, "length": 0.0})
    scored = rubric.score("x" * 3000, _v(Status.CORRECT, 1.0))
    assert scored.total == 1.25
    assert dict(scored.components) == {"correctness": 1.0, "format": 1.0, "length": -1.0}


@pytest.mark.parametrize(
    ("weights", "needle"),
    [
        ({"corectness": 1.0}, "known signals: correctness, format, length"),
        ({"correctness": float("nan")}, "must be a number"),
        ({}, "at least one signal"),
    ],
)
def test_bad_rubrics_name_the_problem(weights: dict[str, float], needle: str) -> None:
    with pytest.raises(VerifierConfigError, match=needle):
        Rubric.from_weights(weights)


def test_bad_pattern_and_budget() -> None:
    with pytest.raises(VerifierConfigError, match="format pattern"):
        AnswerFormat(pattern="(")
    with pytest.raises(VerifierConfigError, match="budget must be >= 1, got 0"):
        LengthPenalty(budget=0)


def test_text_env_reports_every_component(arith: Arith) -> None:
    env = ReasoningEnv(arith, rubric={"correctness": 1.0, "format": 0.5, "length": 0.0})
    env.reset(options={"index": 0})
    _, reward, *_, info = env.step(arith.reference_completion(arith[0]))
    assert reward == 1.5
    assert info["reward_components"] == {"correctness": 1.0, "format": 1.0, "length": 0.0}
    env.reset(options={"index": 0})
    _, reward, *_, info = env.step(arith.wrong_completion(arith[0]))
    assert reward == 0.5 and info["reward_components"]["correctness"] == 0.0
    env.reset(options={"index": 0})
    _, reward, *_, info = env.step("I do not know.")
    assert reward == 0.0 and info["verdict"].status is Status.UNPARSABLE


def test_default_reward_is_correctness_component(arith: Arith) -> None:
    env = ReasoningEnv(arith)
    env.reset(options={"index": 1})
    _, reward, *_, info = env.step(arith.reference_completion(arith[1]))
    assert reward == 1.0 and info["reward_components"] == {"correctness": 1.0}


def test_custom_signal_and_token_counts(arith: Arith) -> None:
    def brevity(completion: str, verdict: Verdict, num_tokens: int | None) -> float:
        assert num_tokens is not None
        return 1.0 / num_tokens

    rubric = Rubric.from_weights({"correctness": 1.0, "brevity": 0.0}, {"brevity": brevity})
    env = ReasoningEnv(arith, mode="token", rubric=rubric, max_new_tokens=200)
    env.reset(options={"index": 2})
    ids = [*arith.reference_completion(arith[2]).encode(), ByteTokenizer.eos_token_id]
    for t in ids:
        *_, terminated, _, info = env.step(t)
    assert terminated and info["reward_components"]["brevity"] == 1.0 / len(ids)

    venv = TokenVectorEnv(arith, 2, rubric=rubric, max_new_tokens=len(ids))
    venv.reset(options={"indices": [2, 2]})
    for t in ids:
        _, rewards, term, _, vinfo = venv.step(np.array([t, t]))
    assert term.all() and rewards.tolist() == [1.0, 1.0]
    assert vinfo["reward_components"][0]["brevity"] == 1.0 / len(ids)
