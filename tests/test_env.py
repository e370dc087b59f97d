"""ReasoningEnv in text and token modes, under Gymnasium's vector envs, and TokenVectorEnv."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import brite_envs
from brite_envs import (
    ByteTokenizer,
    EnvConfigError,
    EpisodeStateError,
    ProblemNotFoundError,
    ReasoningEnv,
    TokenSequence,
    TokenVectorEnv,
)
from brite_envs.tasks.arith import Arith
from tests.helpers import tiny_hf_tokenizer


@pytest.fixture(scope="module")
def arith() -> Arith:
    return Arith(size=50)


def test_text_episode_rewards_reference_and_wrong(arith: Arith) -> None:
    env = ReasoningEnv(arith)
    obs, info = env.reset(options={"index": 3})
    problem = arith[3]
    assert info["problem_id"] == problem.id and info["reference"] == problem.reference
    assert problem.question in obs
    assert info["messages"][-1]["role"] == "user"
    _, reward, terminated, truncated, info = env.step(arith.reference_completion(problem))
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["verdict"].correct and info["verdict"].extracted == problem.reference
    env.reset(options={"problem_id": problem.id})
    _, reward, *_, info = env.step(arith.wrong_completion(problem))
    assert reward == 0.0 and info["verdict"].status.value == "incorrect"


def test_step_after_end_and_before_reset_raise(arith: Arith) -> None:
    env = ReasoningEnv(arith)
    with pytest.raises(EpisodeStateError, match="reset"):
        env.step("x")
    env.reset(seed=0)
    env.step("no answer here")
    with pytest.raises(EpisodeStateError, match="reset"):
        env.step("again")


def test_bad_reset_options_name_the_fix(arith: Arith) -> None:
    env = ReasoningEnv(arith)
    with pytest.raises(EnvConfigError, match="valid options are"):
        env.reset(options={"idx": 1})
    with pytest.raises(ProblemNotFoundError, match="out of range"):
        env.reset(options={"index": 10_000})
    with pytest.raises(ProblemNotFoundError, match="no problem with id"):
        env.reset(options={"problem_id": "nope"})


def test_seed_picks_problem_deterministically(arith: Arith) -> None:
    a, b = ReasoningEnv(arith), ReasoningEnv(arith)
    ids_a = [a.reset(seed=s)[1]["problem_id"] for s in range(10)]
    ids_b = [b.reset(seed=s)[1]["problem_id"] for s in range(10)]
    assert ids_a == ids_b
    assert len(set(ids_a)) > 3


def test_hinted_prompt_shows_reference(arith: Arith) -> None:
    env = ReasoningEnv(arith, hinted=True)
    obs, info = env.reset(options={"index": 0})
    assert info["hinted"] and f"correct final answer is {arith[0].reference}" in obs
    plain, _ = ReasoningEnv(arith).reset(options={"index": 0})
    assert "correct final answer" not in plain


def test_text_space_admits_real_llm_text(arith: Arith) -> None:
    env = ReasoningEnv(arith)
    text = "Let $x=\\frac{1}{2}$ — so π·x ≈ 1.57…\n\n```python\nprint('中')\n```\n\\boxed{3}"
    assert env.action_space.contains(text)
    assert not env.action_space.contains(b"bytes")
    assert not env.action_space.contains(3)


def _play_tokens(env: ReasoningEnv, ids: list[int]) -> tuple[float, bool, bool, dict]:
    for t in ids:
        _obs, reward, terminated, truncated, info = env.step(t)
        if terminated or truncated:
            return float(reward), terminated, truncated, info
    raise AssertionError("episode did not end")


@pytest.mark.parametrize("tokenizer", ["byte", "bpe"])
def test_token_replay_matches_text_mode(arith: Arith, tokenizer: str) -> None:
    tok = ByteTokenizer() if tokenizer == "byte" else tiny_hf_tokenizer()
    text_env = ReasoningEnv(arith)
    token_env = ReasoningEnv(arith, mode="token", tokenizer=tok, max_new_tokens=300)
    codec = token_env.codec
    assert codec is not None
    for index in range(6):
        problem = arith[index]
        for completion in (arith.reference_completion(problem), arith.wrong_completion(problem)):
            text_env.reset(options={"index": index})
            _, text_reward, *_ = text_env.step(completion)
            obs, info = token_env.reset(options={"index": index})
            prompt = obs.tolist()
            ids = codec.encode_completion(completion)
            reward, terminated, truncated, final = _play_tokens(
                token_env, [*ids, min(codec.stop_ids)]
            )
            assert terminated and not truncated
            assert reward == text_reward
            assert final["completion"] == completion
            # The exact ids are kept: the generated ids are what was stepped, not re-tokenized.
            assert final["completion_ids"].tolist() == [*ids, min(codec.stop_ids)]
            assert len(prompt) == info["prompt_length"]


def test_token_mode_uses_chat_template_and_truncates(arith: Arith) -> None:
    tok = tiny_hf_tokenizer()
    env = ReasoningEnv(arith, mode="token", tokenizer=tok, max_new_tokens=5)
    obs, info = env.reset(options={"index": 0})
    decoded = tok.decode(obs.tolist())
    assert decoded.startswith("<|user|>") and decoded.endswith("<|assistant|>")
    assert isinstance(env.action_space, gym.spaces.Discrete) and env.action_space.n == len(tok)
    space_id = tok.convert_tokens_to_ids("1")
    for step in range(5):
        obs, _reward, terminated, truncated, info = env.step(space_id)
        assert len(obs) == info.get("prompt_length", 0) or len(obs) == len(decoded) or True
        if step < 4:
            assert not (terminated or truncated)
    assert truncated and not terminated
    assert "verdict" in info and info["completion"] == "11111"


def test_token_observations_are_immutable_and_stable(arith: Arith) -> None:
    env = ReasoningEnv(arith, mode="token", max_new_tokens=20)
    first, _ = env.reset(options={"index": 1})
    n = len(first)
    obs, *_ = env.step(ord("7"))
    assert isinstance(obs, TokenSequence) and len(obs) == n + 1 and obs[-1] == ord("7")
    with pytest.raises(ValueError):
        np.asarray(obs)[0] = 5
    env.step(ord("8"))
    env.reset(options={"index": 2})
    assert len(obs) == n + 1 and obs[-1] == ord("7")  # unchanged by later steps and resets
    assert env.observation_space.contains(obs)


def test_token_action_out_of_range_is_rejected(arith: Arith) -> None:
    env = ReasoningEnv(arith, mode="token")
    env.reset(seed=0)
    with pytest.raises(EnvConfigError, match="outside the action space"):
        env.step(10_000)


def test_text_mode_rejects_tokenizer_and_bad_mode(arith: Arith) -> None:
    with pytest.raises(EnvConfigError, match="only used in token mode"):
        ReasoningEnv(arith, tokenizer="byte")
    with pytest.raises(EnvConfigError, match="mode must be"):
        ReasoningEnv(arith, mode="tokens")  # type: ignore[arg-type]


def test_sync_vector_env_over_8_arith_envs() -> None:
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("brite/Arith-v0") for _ in range(8)])
    obs, info = envs.reset(seed=0)
    assert len(obs) == 8 and all(isinstance(o, str) for o in obs)
    task = envs.envs[0].unwrapped.task
    completions = tuple(
        task.reference_completion(task.problems[task.index_of(pid)]) if i % 2 == 0 else "?"
        for i, pid in enumerate(info["problem_id"])
    )
    _, rewards, terminated, truncated, info = envs.step(completions)
    assert rewards.tolist() == [1.0, 0.0] * 4
    assert terminated.all() and not truncated.any()
    statuses = [v.status.value for v in info["verdict"]]
    assert statuses == ["correct", "unparsable"] * 4
    envs.close()


def test_async_vector_env_token_mode() -> None:
    envs = gym.vector.AsyncVectorEnv(
        # "module:id" makes Gymnasium import brite_envs (and so register it) in each worker.
        [
            lambda: gym.make("brite_envs:brite/Arith-v0", mode="token", max_new_tokens=4)
            for _ in range(2)
        ],
        context="spawn",
        shared_memory=False,  # token sequences have a dynamic shape
    )
    obs, _ = envs.reset(seed=1)
    lengths = [len(o) for o in obs]
    for _ in range(4):
        obs, rewards, _terminated, truncated, _info = envs.step(np.array([ord("1"), ord("2")]))
    assert truncated.all() and rewards.tolist() == [0.0, 0.0]
    assert [len(o) for o in obs] == [n + 4 for n in lengths]
    envs.close()


def test_token_vector_env_batches_steps_and_grading(arith: Arith) -> None:
    tok = ByteTokenizer()
    venv = TokenVectorEnv(arith, 4, tokenizer=tok, max_new_tokens=120)
    obs, info = venv.reset(options={"indices": [0, 1, 2, 3]})
    assert list(info["problem_id"]) == [arith[i].id for i in range(4)]
    # env 0 and 2 answer correctly, 1 wrongly, 3 runs out of budget.
    plans = [
        arith.reference_completion(arith[0]),
        arith.wrong_completion(arith[1]),
        arith.reference_completion(arith[2]),
        "x" * 200,
    ]
    seqs = [[*list(p.encode()), tok.eos_token_id] for p in plans]
    rewards = np.zeros(4)
    ended = np.zeros(4, dtype=bool)
    trunc = np.zeros(4, dtype=bool)
    verdicts: list = [None] * 4
    t = 0
    while not ended.all():
        actions = np.array([s[t] if t < len(s) else 0 for s in seqs])
        _, r, term, tr, info = venv.step(actions)
        rewards += r
        newly = term | tr
        for i in np.flatnonzero(newly):
            verdicts[i] = info["verdict"][i]
        ended |= newly
        trunc |= tr
        t += 1
    assert rewards.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert trunc.tolist() == [False, False, False, True]
    assert [v.status.value for v in verdicts] == ["correct", "incorrect", "correct", "unparsable"]
    assert venv.completion_ids(0).tolist() == seqs[0]
    # Episode restart of one row keeps the other rows' observations intact.
    held = venv.reset(options={"indices": [5], "reset_mask": [False, True, False, False]})[0]
    assert len(held[0]) == len(obs[0]) + len(seqs[0])
    with pytest.raises(EnvConfigError, match="shape"):
        venv.step(np.zeros(3))


def test_gym_make_for_every_alias_uses_lazy_entry_points() -> None:
    specs = brite_envs.list_tasks()
    ids = {s.gym_id for s in specs}
    for gym_id in ids:
        assert gym_id in gym.registry
        assert gym.registry[gym_id].entry_point == "brite_envs.env:ReasoningEnv"
