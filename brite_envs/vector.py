"""TokenVectorEnv: N token-mode episodes stepped with one array of actions.

An agent that samples one token per sequence per forward pass wants to hand the envs a
``(N,)`` array and get back rewards for the episodes that just ended. This env keeps all
N sequences in one preallocated ``(N, max_prompt + max_new)`` buffer, writes a step with a
single vectorised assignment, and grades the episodes that end in a step together with
``verify_many`` (in parallel across the verifier's workers).

It is a ``gymnasium.vector.VectorEnv`` with autoreset disabled: finished episodes ignore
further actions until ``reset(options={"reset_mask": mask})`` (or a full reset) restarts them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from brite_envs.env import encode_prompt_ids, resolve_task, score_completion
from brite_envs.errors import EnvConfigError, EpisodeStateError
from brite_envs.spaces import TokenBatch, TokenIds
from brite_envs.task import Task
from brite_envs.tokens import TokenCodec, TokenizerLike, load_tokenizer
from verifiers import Verdict
from verifiers.rubric import Rubric, as_rubric


class TokenVectorEnv(VectorEnv[Any, np.ndarray, np.ndarray]):
    """A batch of token-mode reasoning episodes over one task.

    Observations are a :class:`TokenBatch`: ``obs[i]`` is env i's ids (prompt plus
    generated) and ``obs.tokens``/``obs.lengths`` the whole batch as arrays.
    """

    metadata = {"autoreset_mode": AutoresetMode.DISABLED}  # noqa: RUF012

    def __init__(
        self,
        task: Task | str,
        num_envs: int,
        *,
        tokenizer: TokenizerLike | str | os.PathLike[str] | None = None,
        max_new_tokens: int = 1024,
        max_prompt_tokens: int = 4096,
        hinted: bool = False,
        use_chat_template: bool = True,
        vocab_size: int | None = None,
        split: str | None = None,
        data_path: str | None = None,
        rubric: Rubric | Mapping[str, float] | None = None,
    ) -> None:
        if num_envs < 1:
            raise EnvConfigError(f"num_envs must be >= 1, got {num_envs}")
        if max_new_tokens < 1:
            raise EnvConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if max_prompt_tokens < 1:
            raise EnvConfigError(f"max_prompt_tokens must be >= 1, got {max_prompt_tokens}")
        self.task = resolve_task(task, split, data_path)
        self.rubric = as_rubric(rubric)
        self.num_envs = int(num_envs)
        self.hinted = hinted
        self.max_new_tokens = int(max_new_tokens)
        self.max_prompt_tokens = int(max_prompt_tokens)
        self.codec = TokenCodec(
            load_tokenizer(tokenizer), vocab_size=vocab_size, use_chat_template=use_chat_template
        )
        v = self.codec.vocab_size
        self.single_action_space = spaces.Discrete(v)
        self.action_space = spaces.MultiDiscrete(np.full(self.num_envs, v, dtype=np.int64))
        self.single_observation_space = TokenIds(v, self.max_prompt_tokens + self.max_new_tokens)
        self.observation_space = spaces.Tuple([self.single_observation_space] * self.num_envs)
        width = self.max_prompt_tokens + self.max_new_tokens
        self._buf = np.zeros((self.num_envs, width), dtype=np.int64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._prompt_lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._done = np.ones(self.num_envs, dtype=bool)
        self._indices = np.full(self.num_envs, -1, dtype=np.int64)
        self._stop = np.zeros(v, dtype=bool)
        self._stop[list(self.codec.stop_ids)] = True
        self._rows = np.arange(self.num_envs)
        self._np_random_seed: int | None = None

    # -- views ----------------------------------------------------------------------------
    @property
    def tokens(self) -> np.ndarray:
        """``(N, width)`` ids, right-padded; row i is valid up to ``lengths[i]``."""
        view = self._buf.view()
        view.flags.writeable = False
        return view

    @property
    def lengths(self) -> np.ndarray:
        return self._lengths.copy()

    @property
    def prompt_lengths(self) -> np.ndarray:
        return self._prompt_lengths.copy()

    @property
    def done(self) -> np.ndarray:
        return self._done.copy()

    def _obs(self) -> TokenBatch:
        return TokenBatch(self._buf, self._lengths)

    # -- episodes -------------------------------------------------------------------------
    def reset(
        self,
        *,
        seed: int | list[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[TokenBatch, dict[str, Any]]:
        """Start episodes. ``options`` may hold ``indices`` or ``problem_ids`` (one per env),
        and ``reset_mask`` (bool array: restart only those envs)."""
        if isinstance(seed, list):
            raise EnvConfigError("TokenVectorEnv takes one int seed for the whole batch")
        if seed is not None:
            self._np_random, self._np_random_seed = _seeded(seed)
        elif not hasattr(self, "_np_random") or self._np_random is None:
            self._np_random, self._np_random_seed = _seeded(None)
        options = dict(options or {})
        unknown = set(options) - {"indices", "problem_ids", "reset_mask"}
        if unknown:
            raise EnvConfigError(
                f"unknown reset option(s) {sorted(unknown)}; valid: indices, problem_ids, "
                "reset_mask"
            )
        mask = np.asarray(options.get("reset_mask", np.ones(self.num_envs, dtype=bool)), bool)
        if mask.shape != (self.num_envs,):
            raise EnvConfigError(f"reset_mask must have shape ({self.num_envs},), got {mask.shape}")
        rows = np.flatnonzero(mask)
        indices = self._choose(rows, options)
        # Observations already handed out are windows on the buffer: give restarted rows a
        # fresh buffer instead of overwriting ids that someone may still hold.
        self._buf = self._buf.copy()
        for row, index in zip(rows, indices, strict=True):
            self._start(int(row), int(index))
        info = {
            "problem_id": np.array([self._problem_id(i) for i in range(self.num_envs)], object),
            "index": self._indices.copy(),
            "prompt_length": self._prompt_lengths.copy(),
        }
        return self._obs(), info

    def _choose(self, rows: np.ndarray, options: dict[str, Any]) -> list[int]:
        n = len(self.task)
        if "indices" in options and "problem_ids" in options:
            raise EnvConfigError("pass either options['indices'] or options['problem_ids']")
        if "problem_ids" in options:
            ids = list(options["problem_ids"])
            if len(ids) != len(rows):
                raise EnvConfigError(f"problem_ids has {len(ids)} entries for {len(rows)} envs")
            return [self.task.index_of(str(pid)) for pid in ids]
        if "indices" in options:
            idx = [int(i) for i in options["indices"]]
            if len(idx) != len(rows):
                raise EnvConfigError(f"indices has {len(idx)} entries for {len(rows)} envs")
            for i in idx:
                self.task[i]  # range check with a clear error
            return [i % n for i in idx]
        return [int(i) for i in self._np_random.integers(n, size=len(rows))]

    def _start(self, row: int, index: int) -> None:
        problem = self.task[index]
        messages = self.task.render_messages(problem, hinted=self.hinted)
        text = self.task.render_prompt(problem, hinted=self.hinted)
        ids = encode_prompt_ids(self.codec, problem, messages, text, self.max_prompt_tokens)
        self._buf[row, : len(ids)] = ids
        self._buf[row, len(ids) :] = 0
        self._lengths[row] = self._prompt_lengths[row] = len(ids)
        self._indices[row] = index
        self._done[row] = False

    def _problem_id(self, row: int) -> str | None:
        return None if self._indices[row] < 0 else self.task[int(self._indices[row])].id

    def step(
        self, actions: np.ndarray | Sequence[int]
    ) -> tuple[TokenBatch, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Append one token to every running episode; finished ones ignore their action."""
        actions = np.asarray(actions, dtype=np.int64)
        if actions.shape != (self.num_envs,):
            raise EnvConfigError(f"actions must have shape ({self.num_envs},), got {actions.shape}")
        active = ~self._done
        if not active.any():
            raise EpisodeStateError("every episode has ended: call reset()")
        a = actions[active]
        if a.size and (a.min() < 0 or a.max() >= self.codec.vocab_size):
            raise EnvConfigError(
                f"token ids must lie in [0, {self.codec.vocab_size}), got "
                f"min {a.min()} max {a.max()}"
            )
        rows = self._rows[active]
        self._buf[rows, self._lengths[rows]] = a
        self._lengths[rows] += 1
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        terminated[rows] = self._stop[a]
        truncated[rows] = ~terminated[rows] & (
            self._lengths[rows] - self._prompt_lengths[rows] >= self.max_new_tokens
        )
        rewards = np.zeros(self.num_envs, dtype=np.float32)
        ended = np.flatnonzero(terminated | truncated)
        infos: dict[str, Any] = {}
        if ended.size:
            self._done[ended] = True
            verdicts, completions = self._grade(ended, terminated)
            verdict_col = np.full(self.num_envs, None, dtype=object)
            completion_col = np.full(self.num_envs, None, dtype=object)
            components_col = np.full(self.num_envs, None, dtype=object)
            for row, v, c in zip(ended, verdicts, completions, strict=True):
                n_tokens = int(self._lengths[row] - self._prompt_lengths[row])
                rewards[row], components_col[row] = score_completion(self.rubric, c, v, n_tokens)
                verdict_col[row] = v
                completion_col[row] = c
            mask = np.zeros(self.num_envs, dtype=bool)
            mask[ended] = True
            infos = {
                "verdict": verdict_col,
                "_verdict": mask,
                "completion": completion_col,
                "_completion": mask.copy(),
                "reward_components": components_col,
                "_reward_components": mask.copy(),
            }
        return self._obs(), rewards, terminated, truncated, infos

    def _grade(self, rows: np.ndarray, terminated: np.ndarray) -> tuple[list[Verdict], list[str]]:
        completions = []
        problems = []
        for row in rows:
            start, end = self._prompt_lengths[row], self._lengths[row]
            if terminated[row]:
                end -= 1  # drop the stop token
            completions.append(self.codec.decode(self._buf[row, start:end]))
            problems.append(self.task[int(self._indices[row])])
        return self.task.grade_many(problems, completions), completions

    def completion_ids(self, row: int) -> np.ndarray:
        """The exact generated ids of env ``row`` (including a final stop id)."""
        return self._buf[row, self._prompt_lengths[row] : self._lengths[row]].copy()

    def close_extras(self, **kwargs: Any) -> None:
        pass


def _seeded(seed: int | None) -> tuple[np.random.Generator, int]:
    from gymnasium.utils import seeding

    return seeding.np_random(seed)
