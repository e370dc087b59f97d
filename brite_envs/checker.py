"""check_env: Gymnasium's API checks plus the checks a reward needs to be trusted.

Beyond Gymnasium's checker it verifies that a seed picks the same problem every time,
that the reference answer rendered as a typical completion scores exactly 1.0 and that a
wrong answer scores 0.0, in whichever action mode the env is in.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env as gym_check_env

from brite_envs.env import ReasoningEnv
from brite_envs.errors import BriteEnvError
from brite_envs.types import Problem


class EnvCheckError(BriteEnvError, AssertionError):
    """An environment failed one of brite's checks; the message says which and why."""


@dataclass(frozen=True)
class CheckReport:
    """What check_env verified."""

    env_id: str
    mode: str
    problems_checked: tuple[str, ...]
    gymnasium_warnings: tuple[str, ...] = field(default_factory=tuple)


def _play(env: ReasoningEnv, problem: Problem, completion: str) -> tuple[float, Any]:
    _, info = env.reset(options={"problem_id": problem.id})
    if env.codec is None:
        _, reward, terminated, truncated, info = env.step(completion)
        return float(reward), info["verdict"]
    ids = [*env.codec.encode_completion(completion), min(env.codec.stop_ids)]
    reward = 0.0
    terminated = truncated = False
    for t in ids:
        _, reward, terminated, truncated, info = env.step(t)
        if terminated or truncated:
            break
    if not terminated:
        raise EnvCheckError(
            f"{problem.id}: token replay of a {len(ids)}-token completion did not end at the "
            f"stop id (truncated={truncated})"
        )
    return float(reward), info["verdict"]


def _candidates(env: ReasoningEnv, n: int, seed: int) -> list[Problem]:
    task = env.task
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(task))
    chosen: list[Problem] = []
    for i in order[: max(50, n * 10)]:
        problem = task[int(i)]
        if task.unavailable_reason(problem) is not None:
            continue
        if env.codec is not None:
            need = len(env.codec.encode_completion(task.reference_completion(problem))) + 1
            if need > env.max_new_tokens:
                continue
        chosen.append(problem)
        if len(chosen) == n:
            break
    if not chosen:
        raise EnvCheckError(
            f"task {task.name!r}: no problem among the first {max(50, n * 10)} sampled can be "
            "graded here (missing libraries, or reference completions longer than "
            f"max_new_tokens={env.max_new_tokens})"
        )
    return chosen


def check_env(env: gym.Env[Any, Any], *, num_problems: int = 3, seed: int = 0) -> CheckReport:
    """Run Gymnasium's checker and brite's reward checks on a ReasoningEnv.

    Raises :class:`EnvCheckError` naming the first failed check.
    """
    base = env.unwrapped
    if not isinstance(base, ReasoningEnv):
        raise EnvCheckError(f"check_env expects a brite ReasoningEnv, got {type(base).__name__}")
    env_id = env.spec.id if env.spec is not None else base.task.name
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(base, skip_render_check=True)
    gym_warnings = tuple(str(w.message) for w in caught)

    # Determinism: a seed picks the same problem and the same observation every time.
    firsts = []
    for s in (seed, seed + 1, seed + 2, seed + 3):
        obs_a, info_a = base.reset(seed=s)
        obs_b, info_b = base.reset(seed=s)
        same_obs = np.array_equal(obs_a, obs_b) if isinstance(obs_a, np.ndarray) else obs_a == obs_b
        if info_a["problem_id"] != info_b["problem_id"] or not same_obs:
            raise EnvCheckError(f"{env_id}: reset(seed={s}) is not deterministic")
        firsts.append(info_a["problem_id"])
    if len(base.task) > 20 and len(set(firsts)) == 1:
        raise EnvCheckError(f"{env_id}: different seeds always pick problem {firsts[0]!r}")

    # Rewards: the reference scores exactly 1.0; a wrong answer scores exactly 0.0.
    problems = _candidates(base, num_problems, seed)
    for problem in problems:
        reward, verdict = _play(base, problem, base.task.reference_completion(problem))
        if reward != 1.0 or not verdict.correct:
            raise EnvCheckError(
                f"{env_id} ({base.mode} mode): the reference completion of {problem.id} scored "
                f"{reward} ({verdict.status}: {verdict.reason}); expected 1.0"
            )
        reward, verdict = _play(base, problem, base.task.wrong_completion(problem))
        if reward != 0.0 or verdict.correct:
            raise EnvCheckError(
                f"{env_id} ({base.mode} mode): a wrong completion of {problem.id} scored "
                f"{reward} ({verdict.status}: {verdict.reason}); expected 0.0"
            )
        if verdict.failed_to_grade:
            raise EnvCheckError(
                f"{env_id}: grading a wrong completion of {problem.id} failed "
                f"({verdict.status}: {verdict.reason}); a wrong answer must grade as incorrect"
            )
    return CheckReport(env_id, base.mode, tuple(p.id for p in problems), gym_warnings)
