"""ReasoningEnv: a reasoning task as a Gymnasium environment, in text or token mode.

- text mode: one step; the action is the whole completion; reward = O's score.
- token mode: the action is one token id; the observation is the ids so far (prompt plus
  generated); the episode ends at a stop id (terminated) or after ``max_new_tokens``
  (truncated), and the terminal reward is O on the decoded completion. Each step is O(1):
  ids go into a preallocated buffer and nothing is decoded until the episode ends.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from brite_envs.errors import EnvConfigError, EpisodeStateError
from brite_envs.registry import make_task
from brite_envs.spaces import TokenIds, TokenSequence, UnicodeText
from brite_envs.task import Task
from brite_envs.tokens import TokenCodec, TokenizerLike, load_tokenizer
from brite_envs.types import ChatMessage, Problem
from verifiers import Verdict
from verifiers.rubric import Rubric, as_rubric

Mode = Literal["text", "token"]
MAX_PROMPT_CHARS = 1_000_000
MAX_COMPLETION_CHARS = 1_000_000
_RESET_OPTIONS = frozenset({"index", "problem_id"})


def resolve_task(task: Task | str, split: str | None, data_path: str | None) -> Task:
    """A Task object from an instance or a registered name, forwarding split/data_path."""
    if isinstance(task, Task):
        if split is not None or data_path is not None:
            raise EnvConfigError(
                "split/data_path only apply when the task is given by name; "
                f"configure the {type(task).__name__} instance instead"
            )
        return task
    kwargs: dict[str, Any] = {}
    if split is not None:
        kwargs["split"] = split
    if data_path is not None:
        kwargs["path"] = data_path
    return make_task(task, **kwargs)


def encode_prompt_ids(
    codec: TokenCodec, problem: Problem, messages: list[ChatMessage], text: str, limit: int
) -> list[int]:
    """The prompt's token ids, or a clear error when they exceed ``limit`` tokens."""
    ids = codec.encode_prompt(messages, text)
    if len(ids) > limit:
        raise EnvConfigError(
            f"problem {problem.id!r}: prompt has {len(ids)} tokens, more than "
            f"max_prompt_tokens={limit}; raise max_prompt_tokens"
        )
    return ids


def score_completion(
    rubric: Rubric | None, completion: str, verdict: Verdict, num_tokens: int | None
) -> tuple[float, dict[str, float]]:
    """The reward and its named components: O's score alone, or the rubric's weighted sum."""
    if rubric is None:
        return float(verdict.score), {"correctness": float(verdict.score)}
    scored = rubric.score(completion, verdict, num_tokens)
    return float(scored.total), dict(scored.components)


class ReasoningEnv(gym.Env[Any, Any]):
    """A reasoning task as a Gymnasium environment graded by its verifier O.

    Args:
        task: a Task, or a registered name/alias (``"gsm8k"``, ``"brite/GSM8K-v0"``).
        mode: ``"text"`` (action = whole completion) or ``"token"`` (action = one token id).
        tokenizer: token mode only: the policy's tokenizer (object, hub id, folder, .gguf
            file) or ``"byte"`` (default) for the built-in byte tokenizer.
        max_new_tokens: token mode: completion budget; reaching it truncates the episode.
        hinted: show the reference answer in the prompt (BRiTE's thinking policy Q(z|x,y*)).
        use_chat_template: token mode: encode the prompt with the tokenizer's chat template.
        vocab_size: token mode: size of the action space, if the policy's logits are wider
            than ``len(tokenizer)``.
        split, data_path: forwarded to the task when it is given by name.
        rubric: the reward as a weighted sum of named signals (a ``verifiers.Rubric`` or
            ``{"correctness": 1.0, "format": 0.1, ...}``); default: O's score. Every
            component is reported in ``info["reward_components"]``.
    """

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 4}  # noqa: RUF012

    def __init__(
        self,
        task: Task | str,
        *,
        mode: Mode = "text",
        tokenizer: TokenizerLike | str | os.PathLike[str] | None = None,
        max_new_tokens: int = 1024,
        max_prompt_tokens: int = 4096,
        hinted: bool = False,
        use_chat_template: bool = True,
        vocab_size: int | None = None,
        split: str | None = None,
        data_path: str | None = None,
        rubric: Rubric | Mapping[str, float] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if mode not in ("text", "token"):
            raise EnvConfigError(f"mode must be 'text' or 'token', got {mode!r}")
        if max_new_tokens < 1:
            raise EnvConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if max_prompt_tokens < 1:
            raise EnvConfigError(f"max_prompt_tokens must be >= 1, got {max_prompt_tokens}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise EnvConfigError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        if mode == "text" and tokenizer is not None:
            raise EnvConfigError("tokenizer is only used in token mode; pass mode='token'")
        self.task = resolve_task(task, split, data_path)
        self.rubric = as_rubric(rubric)
        self.mode: Mode = mode
        self.hinted = hinted
        self.render_mode = render_mode
        self.max_new_tokens = int(max_new_tokens)
        self.max_prompt_tokens = int(max_prompt_tokens)
        self.codec: TokenCodec | None = None
        if mode == "token":
            self.codec = TokenCodec(
                load_tokenizer(tokenizer),
                vocab_size=vocab_size,
                use_chat_template=use_chat_template,
            )
            self.action_space = spaces.Discrete(self.codec.vocab_size)
            self.observation_space = TokenIds(
                self.codec.vocab_size, self.max_prompt_tokens + self.max_new_tokens
            )
        else:
            self.action_space = UnicodeText(MAX_COMPLETION_CHARS)
            self.observation_space = UnicodeText(MAX_PROMPT_CHARS)
        self._problem: Problem | None = None
        self._index = -1
        self._done = True
        self._prompt_text = ""
        self._completion = ""
        self._buf = np.zeros(0, dtype=np.int64)
        self._prompt_len = 0
        self._len = 0
        self._step_info: dict[str, Any] = {}

    # -- episode --------------------------------------------------------------------------
    @property
    def problem(self) -> Problem:
        if self._problem is None:
            raise EpisodeStateError("no problem yet: call reset() first")
        return self._problem

    def _pick(self, options: Mapping[str, Any] | None) -> int:
        if options:
            unknown = set(options) - _RESET_OPTIONS
            if unknown:
                raise EnvConfigError(
                    f"unknown reset option(s) {sorted(unknown)}; valid options are "
                    f"{sorted(_RESET_OPTIONS)}"
                )
            if "index" in options and "problem_id" in options:
                raise EnvConfigError("pass either options['index'] or options['problem_id']")
            if "problem_id" in options:
                return self.task.index_of(str(options["problem_id"]))
            if "index" in options:
                index = options["index"]
                self.task[index]  # validates the range with a clear error
                return int(index) % len(self.task)
        return int(self.np_random.integers(len(self.task)))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self._index = self._pick(options)
        problem = self.task[self._index]
        self._problem = problem
        messages = self.task.render_messages(problem, hinted=self.hinted)
        self._prompt_text = self.task.render_prompt(problem, hinted=self.hinted)
        self._completion = ""
        self._done = False
        info: dict[str, Any] = {
            "problem_id": problem.id,
            "index": self._index,
            "reference": problem.reference,
            "messages": messages,
            "hinted": self.hinted,
        }
        if self.codec is None:
            return self._prompt_text, info
        prompt_ids = encode_prompt_ids(
            self.codec, problem, messages, self._prompt_text, self.max_prompt_tokens
        )
        self._buf = np.empty(len(prompt_ids) + self.max_new_tokens, dtype=np.int64)
        self._buf[: len(prompt_ids)] = prompt_ids
        self._prompt_len = self._len = len(prompt_ids)
        info["prompt_length"] = self._prompt_len
        self._step_info = {"problem_id": problem.id, "reference": problem.reference}
        return self._token_obs(), info

    def _token_obs(self) -> TokenSequence:
        # O(1): an immutable window on the buffer; the written prefix never changes and a
        # reset allocates a fresh buffer, so observations already handed out stay valid.
        return TokenSequence(self._buf, self._len)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._done:
            raise EpisodeStateError("the episode has ended (or never started): call reset()")
        if self.codec is None:
            return self._step_text(action)
        return self._step_token(action)

    def _step_text(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        if not isinstance(action, str):
            raise EnvConfigError(
                f"text-mode action must be the completion string, got {type(action).__name__}; "
                "use mode='token' to act one token id at a time"
            )
        self._completion = action
        verdict = self.task.grade(self.problem, action)
        self._done = True
        reward, info = self._final(verdict, None)
        return self._prompt_text, reward, True, False, info

    def _step_token(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        assert self.codec is not None
        token = int(action)
        if not 0 <= token < self.codec.vocab_size:
            raise EnvConfigError(
                f"token id {token} is outside the action space [0, {self.codec.vocab_size})"
            )
        self._buf[self._len] = token
        self._len += 1
        terminated = token in self.codec.stop_ids
        truncated = not terminated and self._len - self._prompt_len >= self.max_new_tokens
        if not (terminated or truncated):
            return self._token_obs(), 0.0, False, False, dict(self._step_info)
        ids = self._buf[self._prompt_len : self._len]
        self._completion = self.codec.decode(ids[:-1] if terminated else ids)
        verdict = self.task.grade(self.problem, self._completion)
        self._done = True
        reward, info = self._final(verdict, len(ids))
        info["completion_ids"] = ids.copy()
        return self._token_obs(), reward, terminated, truncated, info

    def _final(self, verdict: Verdict, num_tokens: int | None) -> tuple[float, dict[str, Any]]:
        reward, components = score_completion(self.rubric, self._completion, verdict, num_tokens)
        problem = self.problem
        return reward, {
            "problem_id": problem.id,
            "index": self._index,
            "reference": problem.reference,
            "completion": self._completion,
            "verdict": verdict,
            "reward_components": components,
        }

    # -- rendering --------------------------------------------------------------------------
    def render(self) -> str | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi'")
            return None
        if self.codec is not None and self._len > self._prompt_len:
            completion = self.codec.decode(self._buf[self._prompt_len : self._len])
        else:
            completion = self._completion
        text = f"{self._prompt_text}\n--- completion ---\n{completion}"
        if self.render_mode == "human":
            print(text)
            return None
        return text
