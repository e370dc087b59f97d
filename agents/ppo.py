"""PPO for LLM policies over token actions, in one file, top to bottom (CleanRL style).

The MDP is the token-mode env (``brite_envs.TokenVectorEnv``): the state is the prompt plus
the tokens so far, an action is one token id, an episode ends at a stop id or after
``max_new_tokens``, and the env's terminal reward is the verifier's O (or a rubric's sum).
Following Ziegler et al. (2019) and BRiTE's ψ-update, the per-token reward is

    r_t = −β · KL_t(π ‖ π_ref)  +  [t = last] · score

where the reference log-probs may come from a DIFFERENT prompt than the policy's: BRiTE's
thinking policy Q_ψ(z | x, y*) sees the hinted prompt while the KL anchor is the base model
on the plain prompt, P_θ(z | x). Every episode therefore carries ``ref_prompt_ids``
(default: its own prompt), and the score can be replaced after the rollout
(:meth:`Rollout.with_scores`, e.g. by ``log P_θ(y* | x, z)`` from
:func:`agents.policy.token_logprobs`) before the update.

Reading order:
1. pure functions with the papers' names (GAE, whitening, KL estimators, clipped losses,
   explained variance, KL controllers), unit-tested against hand-computed numbers;
2. :class:`PPOConfig`;
3. the rollout through the env (:func:`collect_rollout`, a KV-cached sampling loop; or
   :func:`rollout_from_samples` for a :class:`~agents.policy.Policy` backend such as vLLM);
4. reward shaping and advantages (:func:`compute_advantages`);
5. the update (:func:`ppo_update`: epochs of minibatches with gradient accumulation,
   clipped policy and value losses, optional entropy bonus);
6. :class:`PPOTrainer`, which ties 3-5 together and reports :class:`PPOStats`.

The model is kept in eval mode throughout (no dropout): the ratio π/π_old must be exactly 1
on the first minibatch, and dropout would make it noisy.

Scaling out with ``accelerate`` (DDP / FSDP). Only the single-process path is tested here;
the pieces are arranged so that data parallelism is a thin layer on top:

    accelerator = Accelerator(gradient_accumulation_steps=1)
    model = PolicyWithValue(lm)
    reference = FrozenReference.copy_of(model)        # before prepare(): a plain frozen copy
    reference.model.to(accelerator.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    model, optimizer = accelerator.prepare(model, optimizer)
    env = token_env(task, tokenizer, config, num_envs=per_process_batch)
    trainer = PPOTrainer(model, env, config, reference=reference, optimizer=optimizer,
                         backward=accelerator.backward)
    for indices in batches:                            # each process takes its own shard
        trainer.step(indices[accelerator.process_index :: accelerator.num_processes])

- Episodes are independent, so each process rolls out its own shard; rollouts decode with
  the unwrapped module (``model.module`` under DDP; FSDP2-sharded modules can run forward
  directly, FSDP1 needs ``summon_full_params`` or a vLLM sampler, see
  :func:`rollout_from_samples`).
- ``backward=accelerator.backward`` handles mixed-precision loss scaling; DDP averages the
  gradients in backward. With ``grad_accum_steps > 1`` wrap all but the last micro-batch in
  ``model.no_sync()`` to skip redundant all-reduces (correct either way).
- Advantage whitening and the adaptive-KL statistic are per process; gather them with
  ``accelerator.gather`` first if every rank must use the same numbers.
- Reduce :class:`PPOStats` across ranks with ``accelerator.reduce`` for logging.
- With FSDP, prepare the reference too (or use LoRA, whose reference is the policy itself
  with the adapter disabled: no second copy of the weights).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import torch
from torch import Tensor

from agents.errors import ConfigError
from agents.policy import (
    IncrementalDecoder,
    Policy,
    PolicyWithValue,
    Reference,
    Sample,
    causal_lm,
    forward_completions,
    left_pad,
    make_reference,
    right_pad,
    sample_from_logits,
)

if TYPE_CHECKING:
    from brite_envs.task import Task
    from brite_envs.vector import TokenVectorEnv
    from verifiers.rubric import Rubric

__all__ = [
    "KL_ESTIMATORS",
    "AdaptiveKLController",
    "Advantages",
    "FixedKLController",
    "KLController",
    "PPOConfig",
    "PPOStats",
    "PPOTrainer",
    "Rollout",
    "UpdateResult",
    "clipped_policy_loss",
    "clipped_value_loss",
    "collect_rollout",
    "compute_advantages",
    "entropy_from_logits",
    "explained_variance",
    "gae",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "masked_mean",
    "masked_var",
    "ppo_update",
    "rollout_from_samples",
    "shaped_rewards",
    "task_prompt_ids",
    "token_env",
    "whiten",
]


# ====================================================================== 1. pure functions
def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over the positions where ``mask`` is 1 (0 when there are none)."""
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1.0)


def masked_var(x: Tensor, mask: Tensor) -> Tensor:
    """Population variance of ``x`` over the masked positions."""
    mean = masked_mean(x, mask)
    return masked_mean((x - mean) ** 2, mask)


def whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """``(x − μ) / σ`` over the masked positions (μ added back when ``shift_mean`` is False,
    which rescales rewards without changing their sign); padding is set to 0."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)


def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016) over a right-padded batch.

    ``rewards``, ``values`` and ``mask`` are ``(B, T)``; row b is valid for its first
    ``mask[b].sum()`` tokens and the episode ends after the last valid one (V = 0 beyond).

        δ_t = r_t + γ V(s_{t+1}) − V(s_t),   A_t = δ_t + γ λ A_{t+1},   R_t = A_t + V(s_t)

    Returns ``(advantages, returns)``, 0 at padding.
    """
    m = mask.to(values.dtype)
    rewards, values = rewards * m, values * m
    batch, steps = rewards.shape
    advantages = torch.zeros_like(values)
    last = torch.zeros(batch, dtype=values.dtype, device=values.device)
    for t in reversed(range(steps)):
        if t + 1 < steps:
            next_value, next_valid = values[:, t + 1], m[:, t + 1]
        else:
            next_value = next_valid = torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * next_valid * last) * m[:, t]
        advantages[:, t] = last
    return advantages, (advantages + values) * m


def kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k1 = log π − log π_ref: unbiased for KL(π‖π_ref) under samples from π, high variance,
    can be negative per token."""
    return logp - ref_logp


def kl_k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k2 = ½ (log π_ref − log π)²: biased, low variance, always ≥ 0 (Schulman, 2020)."""
    return 0.5 * (ref_logp - logp) ** 2


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 = (r − 1) − log r with r = π_ref/π: unbiased and always ≥ 0 (Schulman, 2020)."""
    log_r = ref_logp - logp
    return torch.expm1(log_r) - log_r


KLEstimator = Literal["k1", "k2", "k3"]
KL_ESTIMATORS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "k1": kl_k1,
    "k2": kl_k2,
    "k3": kl_k3,
}


def clipped_policy_loss(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, clip_eps: float
) -> tuple[Tensor, Tensor]:
    """PPO's clipped surrogate (Schulman et al., 2017), to minimise; and the clip fraction.

    L = mean_t max(−A_t ρ_t, −A_t clip(ρ_t, 1 − ε, 1 + ε)),  ρ_t = π(a_t|s_t)/π_old(a_t|s_t)
    """
    ratio = torch.exp(logp - old_logp)
    pg1 = -advantages * ratio
    pg2 = -advantages * ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    loss = masked_mean(torch.maximum(pg1, pg2), mask)
    clipfrac = masked_mean((pg2 > pg1).to(logp.dtype), mask)
    return loss, clipfrac


def clipped_value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip_eps: float
) -> Tensor:
    """½ mean_t max((V − R)², (V_old + clip(V − V_old, −ε, ε) − R)²)."""
    clipped = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> float:
    """1 − Var[R − V] / Var[R] over the masked positions: 1 is a perfect critic, 0 no
    better than a constant, negative worse; NaN when the returns do not vary."""
    var_y = float(masked_var(returns, mask))
    if var_y == 0.0:
        return math.nan
    return 1.0 - float(masked_var(returns - values, mask)) / var_y


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy of ``softmax(logits)`` over the last dimension."""
    probs = torch.softmax(logits, -1)
    return torch.logsumexp(logits, -1) - (probs * logits).sum(-1)


class KLController(Protocol):
    """The KL coefficient β and how it reacts to the measured KL."""

    value: float

    def update(self, current_kl: float, n_steps: int) -> None: ...


class FixedKLController:
    """A constant β."""

    def __init__(self, kl_coef: float) -> None:
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """β stays fixed."""


class AdaptiveKLController:
    """Ziegler et al. (2019): move β proportionally towards a target KL,
    β ← β (1 + clip(KL/target − 1, −0.2, 0.2) · n_steps / horizon)."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int) -> None:
        if target <= 0:
            raise ValueError(f"adaptive KL target must be > 0, got {target}")
        if horizon < 1:
            raise ValueError(f"adaptive KL horizon must be >= 1, got {horizon}")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon


# ====================================================================== 2. config
@dataclass(frozen=True)
class PPOConfig:
    """PPO hyper-parameters. The BRiTE paper does not publish its PPO settings; these are
    common defaults (clip 0.2, GAE λ 0.95, γ 1 for episodic text, β 0.05)."""

    clip_eps: float = 0.2
    """ε of the clipped policy surrogate."""
    value_clip_eps: float = 0.2
    """ε of the clipped value loss (in return units)."""
    gamma: float = 1.0
    lam: float = 0.95
    kl_coef: float = 0.05
    """β: weight of the per-token KL penalty to the reference (initial β when adaptive)."""
    kl_estimator: KLEstimator = "k1"
    """Per-token KL estimator in the reward: k1 (log-ratio), k2, or k3 (Schulman, 2020)."""
    adaptive_kl: bool = False
    """Adapt β towards ``kl_target`` (Ziegler et al., 2019) instead of keeping it fixed."""
    kl_target: float = 6.0
    kl_horizon: int = 10_000
    epochs: int = 4
    """Passes over each rollout."""
    minibatch_size: int = 8
    """Episodes per optimiser step."""
    grad_accum_steps: int = 1
    """Micro-batches each minibatch is split into (same gradient, less memory)."""
    lr: float = 1e-5
    vf_coef: float = 0.1
    entropy_coef: float = 0.0
    max_grad_norm: float | None = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    whiten_advantages: bool = True
    whiten_rewards: bool = False
    logprob_batch_size: int = 16
    """Batch size of the reference model's teacher-forced pass."""
    share_prompts: bool = True
    """Run each distinct prompt once per batch and copy its KV cache to the samples that
    share it (same numbers, less compute with k samples per problem); turn off for models
    whose cache cannot be copied row-wise."""
    seed: int = 0

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (0 < self.clip_eps < 1, f"clip_eps must be in (0, 1), got {self.clip_eps}"),
            (self.value_clip_eps > 0, f"value_clip_eps must be > 0, got {self.value_clip_eps}"),
            (0 <= self.gamma <= 1, f"gamma must be in [0, 1], got {self.gamma}"),
            (0 <= self.lam <= 1, f"lam must be in [0, 1], got {self.lam}"),
            (self.kl_coef >= 0, f"kl_coef must be >= 0, got {self.kl_coef}"),
            (
                self.kl_estimator in KL_ESTIMATORS,
                f"kl_estimator must be one of {sorted(KL_ESTIMATORS)}, got {self.kl_estimator!r}",
            ),
            (self.kl_target > 0, f"kl_target must be > 0, got {self.kl_target}"),
            (self.kl_horizon >= 1, f"kl_horizon must be >= 1, got {self.kl_horizon}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.minibatch_size >= 1, f"minibatch_size must be >= 1, got {self.minibatch_size}"),
            (
                self.grad_accum_steps >= 1,
                f"grad_accum_steps must be >= 1, got {self.grad_accum_steps}",
            ),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.vf_coef >= 0, f"vf_coef must be >= 0, got {self.vf_coef}"),
            (self.entropy_coef >= 0, f"entropy_coef must be >= 0, got {self.entropy_coef}"),
            (
                self.max_grad_norm is None or self.max_grad_norm > 0,
                f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}",
            ),
            (self.temperature > 0, f"temperature must be > 0, got {self.temperature}"),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (
                self.logprob_batch_size >= 1,
                f"logprob_batch_size must be >= 1, got {self.logprob_batch_size}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"PPOConfig: {message}")


# ====================================================================== 3. rollouts
@dataclass(frozen=True, eq=False)
class Rollout:
    """N episodes, as tensors on the model's device.

    ``query`` ``(N, P)`` holds the left-padded prompts and ``response`` ``(N, T)`` the
    right-padded sampled ids (``T`` the longest); ``logprobs`` and ``values`` are the
    behaviour log-probs and critic values at each response token; ``scores`` the terminal
    scores (the env's reward unless replaced). ``ref_prompt_ids`` is the prompt the KL
    reference scores each response on.
    """

    indices: tuple[int, ...]
    prompt_ids: tuple[tuple[int, ...], ...]
    ref_prompt_ids: tuple[tuple[int, ...], ...]
    query: Tensor
    query_mask: Tensor
    response: Tensor
    response_mask: Tensor
    logprobs: Tensor
    values: Tensor
    scores: Tensor
    finished: Tensor
    texts: tuple[str, ...]
    verdicts: tuple[Any, ...]
    seconds: float
    """Wall time of the rollout (sampling and env steps)."""

    def __post_init__(self) -> None:
        n = len(self.prompt_ids)
        if len(self.ref_prompt_ids) != n:
            raise ConfigError(
                f"ref_prompt_ids has {len(self.ref_prompt_ids)} prompts for {n} episodes"
            )
        if any(len(p) == 0 for p in self.ref_prompt_ids):
            raise ConfigError("every ref prompt needs at least one token")
        if self.scores.shape != (n,):
            raise ConfigError(f"scores must have shape ({n},), got {tuple(self.scores.shape)}")

    @property
    def num_episodes(self) -> int:
        return len(self.prompt_ids)

    @property
    def lengths(self) -> Tensor:
        """Response length of each episode."""
        return self.response_mask.sum(1)

    @property
    def num_tokens(self) -> int:
        """Generated tokens in the whole rollout."""
        return int(self.response_mask.sum())

    def completion_ids(self, i: int) -> tuple[int, ...]:
        """The exact sampled ids of episode ``i`` (including a final stop id)."""
        return tuple(int(t) for t in self.response[i, : int(self.lengths[i])])

    def completions(self) -> list[tuple[int, ...]]:
        return [self.completion_ids(i) for i in range(self.num_episodes)]

    def with_scores(self, scores: Tensor | Sequence[float]) -> Rollout:
        """The same episodes with new terminal scores (e.g. BRiTE's log P_θ(y* | x, z), or a
        weighted sum with O), used by the next update."""
        s = torch.as_tensor(scores, dtype=torch.float32).to(self.scores.device)
        if s.shape != (self.num_episodes,):
            raise ConfigError(
                f"scores must have shape ({self.num_episodes},), got {tuple(s.shape)}"
            )
        if not bool(torch.isfinite(s).all()):
            raise ConfigError(f"scores must be finite, got {s.tolist()}")
        return dataclasses.replace(self, scores=s)

    def with_ref_prompts(self, ref_prompt_ids: Sequence[Sequence[int]]) -> Rollout:
        """The same episodes with a different KL-reference prompt for each."""
        return dataclasses.replace(
            self, ref_prompt_ids=tuple(tuple(int(t) for t in p) for p in ref_prompt_ids)
        )

    def samples(self) -> list[Sample]:
        """The episodes as :class:`~agents.policy.Sample` (e.g. for BRiTE's θ-update SFT)."""
        out = []
        for i in range(self.num_episodes):
            k = int(self.lengths[i])
            out.append(
                Sample(
                    prompt_ids=self.prompt_ids[i],
                    completion_ids=self.completion_ids(i),
                    logprobs=tuple(float(x) for x in self.logprobs[i, :k]),
                    text=self.texts[i],
                    finished=bool(self.finished[i]),
                )
            )
        return out


def task_prompt_ids(
    env: TokenVectorEnv, indices: Sequence[int], *, hinted: bool = False
) -> list[list[int]]:
    """The prompt ids of ``env.task`` problems, encoded exactly as ``env`` encodes them but
    with or without the hint: BRiTE's KL reference is the un-hinted prompt of a hinted env."""
    from brite_envs.env import encode_prompt_ids

    task = env.task
    out = []
    for i in indices:
        problem = task[int(i)]
        messages = task.render_messages(problem, hinted=hinted)
        text = task.render_prompt(problem, hinted=hinted)
        out.append(encode_prompt_ids(env.codec, problem, messages, text, env.max_prompt_tokens))
    return out


def token_env(
    task: Task | str,
    tokenizer: Any,
    config: PPOConfig,
    num_envs: int,
    *,
    hinted: bool = False,
    rubric: Rubric | Mapping[str, float] | None = None,
    max_prompt_tokens: int = 4096,
) -> TokenVectorEnv:
    """A ``TokenVectorEnv`` whose completion budget is ``config.max_new_tokens``."""
    from brite_envs.vector import TokenVectorEnv

    return TokenVectorEnv(
        task,
        num_envs,
        tokenizer=tokenizer,
        max_new_tokens=config.max_new_tokens,
        max_prompt_tokens=max_prompt_tokens,
        hinted=hinted,
        rubric=rubric,
    )


class _Episodes:
    """Steps a ``TokenVectorEnv`` and records what ended episodes report."""

    def __init__(self, env: TokenVectorEnv, indices: Sequence[int], seed: int | None) -> None:
        n = env.num_envs
        if len(indices) != n:
            raise ConfigError(f"got {len(indices)} problem indices for an env of {n} episodes")
        _, info = env.reset(seed=seed, options={"indices": [int(i) for i in indices]})
        self.env = env
        lengths = info["prompt_length"]
        tokens = env.tokens
        self.prompt_ids = tuple(tuple(int(t) for t in tokens[i, : lengths[i]]) for i in range(n))
        self.scores = np.zeros(n, dtype=np.float32)
        self.finished = np.zeros(n, dtype=bool)
        self.texts: list[str] = [""] * n
        self.verdicts: list[Any] = [None] * n
        self._actions = np.zeros(n, dtype=np.int64)

    def step(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Append ``tokens`` to episodes ``rows``; return which of those rows ended."""
        self._actions[:] = 0  # ignored by finished episodes
        self._actions[rows] = tokens
        _, rewards, terminated, truncated, infos = self.env.step(self._actions)
        ended = terminated | truncated
        for r in np.flatnonzero(ended):
            self.scores[r] = rewards[r]
            self.finished[r] = bool(terminated[r])
            self.texts[r] = infos["completion"][r]
            self.verdicts[r] = infos["verdict"][r]
        return ended[rows]


def _ref_prompts(
    ref_prompt_ids: Sequence[Sequence[int]] | None, prompt_ids: tuple[tuple[int, ...], ...]
) -> tuple[tuple[int, ...], ...]:
    if ref_prompt_ids is None:
        return prompt_ids
    if len(ref_prompt_ids) != len(prompt_ids):
        raise ConfigError(
            f"ref_prompt_ids has {len(ref_prompt_ids)} prompts for {len(prompt_ids)} episodes"
        )
    return tuple(tuple(int(t) for t in p) for p in ref_prompt_ids)


def _pad_id(env: TokenVectorEnv) -> int:
    tok = env.codec.tokenizer
    for candidate in (getattr(tok, "pad_token_id", None), tok.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0  # padding is masked out, any id will do


@torch.no_grad()
def collect_rollout(
    model: PolicyWithValue,
    env: TokenVectorEnv,
    indices: Sequence[int],
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    ref_prompt_ids: Sequence[Sequence[int]] | None = None,
    share_prompts: bool = True,
) -> Rollout:
    """Roll out one episode per env through the token-mode env, one token per step.

    Each step runs one KV-cached forward for the episodes still running, samples one token
    for each, records its behaviour log-prob and the critic's value of the state it was
    sampled in, and steps the env with the ``(N,)`` action array. The env decides when an
    episode ends and what its terminal reward is.
    """
    t0 = time.perf_counter()
    episodes = _Episodes(env, indices, seed)
    n, budget = env.num_envs, env.max_new_tokens
    pad = _pad_id(env)
    decoder = IncrementalDecoder(
        model, episodes.prompt_ids, pad_id=pad, share_prompts=share_prompts
    )
    device = decoder.rows.device
    generator = torch.Generator(device=device).manual_seed(int(seed)) if seed is not None else None
    response = torch.full((n, budget), pad, dtype=torch.long, device=device)
    logprobs = torch.zeros((n, budget), device=device)
    values = torch.zeros((n, budget), device=device)
    width = 0
    step = decoder.start()
    for t in range(budget):
        tokens, lp = sample_from_logits(
            step.logits, temperature=temperature, top_p=top_p, generator=generator
        )
        response[step.rows, t] = tokens
        logprobs[step.rows, t] = lp
        if step.values is not None:
            values[step.rows, t] = step.values.float()
        width = t + 1
        ended = episodes.step(step.rows.cpu().numpy(), tokens.cpu().numpy())
        if ended.all():
            break
        step = decoder.advance(tokens, torch.from_numpy(~ended).to(device))
    query, query_mask = left_pad(episodes.prompt_ids, pad, device)
    lengths = torch.as_tensor(np.asarray(env.lengths - env.prompt_lengths), device=device)
    response_mask = (torch.arange(width, device=device)[None] < lengths[:, None]).long()
    return Rollout(
        indices=tuple(int(i) for i in indices),
        prompt_ids=episodes.prompt_ids,
        ref_prompt_ids=_ref_prompts(ref_prompt_ids, episodes.prompt_ids),
        query=query,
        query_mask=query_mask,
        response=response[:, :width],
        response_mask=response_mask,
        logprobs=logprobs[:, :width] * response_mask,
        values=values[:, :width] * response_mask,
        scores=torch.as_tensor(episodes.scores, device=device),
        finished=torch.as_tensor(episodes.finished, device=device),
        texts=tuple(episodes.texts),
        verdicts=tuple(episodes.verdicts),
        seconds=time.perf_counter() - t0,
    )


@torch.no_grad()
def rollout_from_samples(
    model: PolicyWithValue,
    env: TokenVectorEnv,
    indices: Sequence[int],
    sampler: Policy,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    ref_prompt_ids: Sequence[Sequence[int]] | None = None,
    batch_size: int = 16,
    share_prompts: bool = True,
) -> Rollout:
    """A rollout sampled by a :class:`~agents.policy.Policy` backend (e.g. vLLM), then
    replayed token by token through the env (which grades it), with the behaviour
    log-probs and values recomputed teacher-forced by ``model`` so the PPO ratio starts at
    exactly 1 whatever the backend's numerics."""
    t0 = time.perf_counter()
    episodes = _Episodes(env, indices, seed)
    samples = sampler.sample(
        episodes.prompt_ids,
        max_new_tokens=env.max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
    )
    for i, s in enumerate(samples):
        if s.prompt_ids != episodes.prompt_ids[i]:
            raise ConfigError(f"the sampler changed the prompt ids of episode {i}")
        if not s.completion_ids:
            raise ConfigError(f"the sampler returned an empty completion for episode {i}")
    running = np.ones(env.num_envs, dtype=bool)
    for t in range(env.max_new_tokens):
        rows = np.flatnonzero(running)
        if rows.size == 0:
            break
        tokens = np.empty(rows.size, dtype=np.int64)
        for j, row in enumerate(rows):
            ids = samples[row].completion_ids
            if t >= len(ids):
                raise ConfigError(
                    f"episode {row}: the sampler's completion ({len(ids)} ids) ended without a "
                    "stop id before the env's budget"
                )
            tokens[j] = ids[t]
        ended = episodes.step(rows, tokens)
        running[rows[ended]] = False
    device = next(model.parameters()).device
    pad = _pad_id(env)
    completions = [
        s.completion_ids[: int(n)]
        for s, n in zip(samples, env.lengths - env.prompt_lengths, strict=True)
    ]
    query, query_mask = left_pad(episodes.prompt_ids, pad, device)
    response, response_mask = right_pad(completions, pad, device)
    logprobs = torch.zeros(response.shape, device=device)
    values = torch.zeros(response.shape, device=device)
    for start in range(0, len(completions), batch_size):
        rows_ = slice(start, start + batch_size)
        q, qm, r, rm = _trim(query[rows_], query_mask[rows_], response[rows_], response_mask[rows_])
        out = forward_completions(
            model, q, qm, r, rm, temperature=temperature, share_prompts=share_prompts
        )
        logprobs[rows_, : r.shape[1]] = out.logprobs * rm
        if out.values is not None:
            values[rows_, : r.shape[1]] = out.values.float() * rm
    return Rollout(
        indices=tuple(int(i) for i in indices),
        prompt_ids=episodes.prompt_ids,
        ref_prompt_ids=_ref_prompts(ref_prompt_ids, episodes.prompt_ids),
        query=query,
        query_mask=query_mask,
        response=response,
        response_mask=response_mask,
        logprobs=logprobs,
        values=values,
        scores=torch.as_tensor(episodes.scores, device=device),
        finished=torch.as_tensor(episodes.finished, device=device),
        texts=tuple(episodes.texts),
        verdicts=tuple(episodes.verdicts),
        seconds=time.perf_counter() - t0,
    )


# ====================================================================== 4. advantages
@dataclass(frozen=True, eq=False)
class Advantages:
    """Everything the update needs besides the rollout, ``(N, T)`` each, 0 at padding."""

    ref_logprobs: Tensor
    kl: Tensor
    """The per-token KL estimate used in the reward."""
    rewards: Tensor
    """Shaped per-token rewards: −β·KL_t, plus the score on the last token."""
    advantages: Tensor
    returns: Tensor


def shaped_rewards(
    scores: Tensor,
    logprobs: Tensor,
    ref_logprobs: Tensor,
    mask: Tensor,
    *,
    kl_coef: float,
    kl_estimator: KLEstimator = "k1",
) -> tuple[Tensor, Tensor]:
    """``(rewards, kl)``: r_t = −β·KL_t, plus each episode's score on its last token."""
    if kl_estimator not in KL_ESTIMATORS:
        raise ValueError(f"kl_estimator must be one of {sorted(KL_ESTIMATORS)}, got {kl_estimator}")
    m = mask.to(logprobs.dtype)
    kl = KL_ESTIMATORS[kl_estimator](logprobs, ref_logprobs) * m
    rewards = -kl_coef * kl
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rows = torch.arange(len(scores), device=rewards.device)
    rewards[rows, last] += scores.to(rewards.dtype) * (mask.sum(1) > 0).to(rewards.dtype)
    return rewards, kl


def compute_advantages(
    rollout: Rollout, ref_logprobs: Tensor, *, kl_coef: float, config: PPOConfig
) -> Advantages:
    """Shape the rewards with the KL to the reference, then GAE (and whitening)."""
    mask = rollout.response_mask
    ref = ref_logprobs.to(rollout.logprobs.device, rollout.logprobs.dtype)
    if ref.shape != rollout.logprobs.shape:
        raise ConfigError(
            f"ref_logprobs has shape {tuple(ref.shape)}, expected {tuple(rollout.logprobs.shape)}"
        )
    ref = ref * mask
    rewards, kl = shaped_rewards(
        rollout.scores,
        rollout.logprobs,
        ref,
        mask,
        kl_coef=kl_coef,
        kl_estimator=config.kl_estimator,
    )
    if config.whiten_rewards:
        rewards = whiten(rewards, mask, shift_mean=False)
    advantages, returns = gae(rewards, rollout.values, mask, config.gamma, config.lam)
    if config.whiten_advantages:
        advantages = whiten(advantages, mask)
    return Advantages(ref, kl, rewards, advantages, returns)


# ====================================================================== 5. the update
@dataclass(frozen=True)
class UpdateResult:
    """Means over the optimiser steps of one update (token-weighted within a minibatch)."""

    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float
    clipfrac: float
    optimizer_steps: int


def _trim(
    query: Tensor, query_mask: Tensor, response: Tensor, response_mask: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Drop the padding columns every row of a minibatch shares."""
    start = int(query_mask.any(0).long().argmax())
    width = max(int(response_mask.sum(1).max()), 1)
    return (
        query[:, start:],
        query_mask[:, start:],
        response[:, :width],
        response_mask[:, :width],
    )


def _prompt_groups(rollout: Rollout) -> list[Tensor]:
    """Episode indices grouped by prompt (k samples of one problem form a group)."""
    keys = torch.cat([rollout.query, rollout.query_mask.to(rollout.query.dtype)], 1).cpu()
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)
    order = torch.argsort(inverse, stable=True)
    counts = torch.bincount(inverse).tolist()
    return list(order.split(counts))


def ppo_update(
    model: PolicyWithValue,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    adv: Advantages,
    config: PPOConfig,
    *,
    generator: torch.Generator | None = None,
    backward: Callable[[Tensor], None] | None = None,
) -> UpdateResult:
    """``config.epochs`` passes over the rollout in shuffled minibatches of episodes.

    Shuffling moves whole prompt groups, so the samples of one problem stay together and
    share their prompt's forward pass (:func:`agents.policy.forward_completions`). Each
    minibatch is one optimiser step; it is split into ``grad_accum_steps``
    micro-batches whose losses are weighted by their share of the minibatch's tokens, so
    the accumulated gradient equals the full minibatch's token-mean gradient.
    """
    backward = backward or (lambda loss: loss.backward())
    params = [p for p in model.parameters() if p.requires_grad]
    groups = _prompt_groups(rollout)
    totals = dict.fromkeys(("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac"), 0.0)
    steps = 0
    for _ in range(config.epochs):
        order = torch.cat([groups[g] for g in torch.randperm(len(groups), generator=generator)])
        for mb in order.split(config.minibatch_size):
            mb_tokens = rollout.response_mask[mb].sum().clamp(min=1).float()
            optimizer.zero_grad(set_to_none=True)
            mb_stats = dict.fromkeys(totals, 0.0)
            for micro in mb.chunk(config.grad_accum_steps):
                micro = micro.to(rollout.query.device)
                q, qm, r, rm = _trim(
                    rollout.query[micro],
                    rollout.query_mask[micro],
                    rollout.response[micro],
                    rollout.response_mask[micro],
                )
                width = r.shape[1]
                out = forward_completions(
                    model,
                    q,
                    qm,
                    r,
                    rm,
                    temperature=config.temperature,
                    share_prompts=config.share_prompts,
                )
                old_logp = rollout.logprobs[micro, :width]
                pg_loss, clipfrac = clipped_policy_loss(
                    out.logprobs,
                    old_logp,
                    adv.advantages[micro, :width],
                    rm,
                    config.clip_eps,
                )
                if out.values is None:
                    raise ConfigError("PPO needs a PolicyWithValue (a model with a value head)")
                v_loss = clipped_value_loss(
                    out.values.float(),
                    rollout.values[micro, :width],
                    adv.returns[micro, :width],
                    rm,
                    config.value_clip_eps,
                )
                if config.entropy_coef > 0:
                    entropy = masked_mean(entropy_from_logits(out.logits), rm)
                else:
                    with torch.no_grad():
                        entropy = masked_mean(entropy_from_logits(out.logits), rm)
                loss = pg_loss + config.vf_coef * v_loss - config.entropy_coef * entropy
                weight = rm.sum().float() / mb_tokens
                backward(loss * weight)
                with torch.no_grad():  # k3 with r = π/π_old: KL(π_old ‖ π) on π_old's samples
                    approx_kl = masked_mean(kl_k3(old_logp, out.logprobs), rm)
                w = float(weight)
                mb_stats["policy_loss"] += w * float(pg_loss.detach())
                mb_stats["value_loss"] += w * float(v_loss.detach())
                mb_stats["entropy"] += w * float(entropy.detach())
                mb_stats["approx_kl"] += w * float(approx_kl)
                mb_stats["clipfrac"] += w * float(clipfrac)
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            steps += 1
            for k, v in mb_stats.items():
                totals[k] += v
    optimizer.zero_grad(set_to_none=True)
    return UpdateResult(**{k: v / max(steps, 1) for k, v in totals.items()}, optimizer_steps=steps)


# ====================================================================== 6. the trainer
@dataclass(frozen=True)
class PPOStats:
    """What one PPO update reports (all plain numbers, for any logger)."""

    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float
    """k3 estimate of KL(π_old ‖ π_new) over the update: how far the update moved."""
    clipfrac: float
    explained_variance: float
    kl_ref: float
    """Mean over episodes of Σ_t (log π − log π_ref): the sequence KL to the reference."""
    kl_coef: float
    """β used in this update's rewards."""
    reward_mean: float
    """Mean over episodes of the shaped return Σ_t r_t = score − β·Σ_t KL_t."""
    reward_std: float
    score_mean: float
    score_std: float
    response_length_mean: float
    num_samples: int
    num_tokens: int
    """Tokens generated by the rollout (and trained on by the update)."""
    rollout_seconds: float
    update_seconds: float
    rollout_tokens_per_s: float
    update_tokens_per_s: float
    tokens_per_s: float
    """Generated tokens over rollout plus update wall time."""
    optimizer_steps: int

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in dataclasses.asdict(self).items()}


def _adamw(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """AdamW with the fused kernel where this torch has one for the device (as the HF
    Trainer defaults to), else the plain loop."""
    try:
        return torch.optim.AdamW(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(params, lr=lr)


def _std(x: Tensor) -> float:
    return float(x.float().std(unbiased=False)) if x.numel() > 1 else 0.0


class PPOTrainer:
    """Rollout through the env, score, update; one :meth:`step` per batch of problems.

    ``collect`` and ``update`` are separate so a caller can change the scores in between
    (``rollout.with_scores(...)``). With a ``sampler`` (a :class:`~agents.policy.Policy`,
    e.g. vLLM) rollouts are sampled by it and its weights are synced after every update;
    without one they are sampled by ``model`` itself with a KV cache.
    """

    def __init__(
        self,
        model: PolicyWithValue,
        env: TokenVectorEnv,
        config: PPOConfig,
        *,
        reference: Reference | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        sampler: Policy | None = None,
        backward: Callable[[Tensor], None] | None = None,
    ) -> None:
        if env.max_new_tokens != config.max_new_tokens:
            raise ConfigError(
                f"the env's max_new_tokens ({env.max_new_tokens}) differs from "
                f"PPOConfig.max_new_tokens ({config.max_new_tokens}); build the env with "
                "agents.ppo.token_env(..., config, ...) or make them equal"
            )
        self.model = model
        self.env = env
        self.config = config
        self.reference = (
            reference
            if reference is not None
            else make_reference(model, share_prompts=config.share_prompts)
        )
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = optimizer or _adamw(params, config.lr)
        self.sampler = sampler
        self.backward = backward
        self.kl_controller: KLController = (
            AdaptiveKLController(config.kl_coef, config.kl_target, config.kl_horizon)
            if config.adaptive_kl
            else FixedKLController(config.kl_coef)
        )
        self.generator = torch.Generator().manual_seed(config.seed)
        self.num_rollouts = 0
        self.num_updates = 0
        model.eval()

    def collect(
        self,
        indices: Sequence[int],
        *,
        ref_prompt_ids: Sequence[Sequence[int]] | None = None,
        seed: int | None = None,
    ) -> Rollout:
        """One episode per env for problems ``indices``; ``ref_prompt_ids`` (one per
        episode) is what the KL reference scores the responses on (default: the prompt)."""
        seed = self.config.seed + self.num_rollouts if seed is None else seed
        self.num_rollouts += 1
        policy = getattr(self.model, "module", self.model)  # unwrap DDP for decoding
        if self.sampler is not None:
            return rollout_from_samples(
                policy,
                self.env,
                indices,
                self.sampler,
                temperature=self.config.temperature,
                top_p=self.config.top_p,
                seed=seed,
                ref_prompt_ids=ref_prompt_ids,
                batch_size=self.config.logprob_batch_size,
                share_prompts=self.config.share_prompts,
            )
        return collect_rollout(
            policy,
            self.env,
            indices,
            temperature=self.config.temperature,
            top_p=self.config.top_p,
            seed=seed,
            ref_prompt_ids=ref_prompt_ids,
            share_prompts=self.config.share_prompts,
        )

    def advantages(self, rollout: Rollout) -> Advantages:
        """Reference log-probs (on ``rollout.ref_prompt_ids``), shaped rewards, GAE."""
        ref = self.reference.logprobs(
            rollout.ref_prompt_ids,
            rollout.completions(),
            temperature=self.config.temperature,
            batch_size=self.config.logprob_batch_size,
        )
        width = rollout.response.shape[1]
        if ref.shape[1] < width:  # every response empty: nothing to score
            ref = torch.nn.functional.pad(ref, (0, width - ref.shape[1]))
        return compute_advantages(
            rollout, ref[:, :width], kl_coef=self.kl_controller.value, config=self.config
        )

    def update(
        self, rollout: Rollout, *, scores: Tensor | Sequence[float] | None = None
    ) -> PPOStats:
        """One PPO update on ``rollout`` (with ``scores`` replacing its terminal scores)."""
        if scores is not None:
            rollout = rollout.with_scores(scores)
        t0 = time.perf_counter()
        kl_coef = self.kl_controller.value
        adv = self.advantages(rollout)
        mask = rollout.response_mask
        result = ppo_update(
            self.model,
            self.optimizer,
            rollout,
            adv,
            self.config,
            generator=self.generator,
            backward=self.backward,
        )
        if self.sampler is not None:
            self.sampler.sync_weights(causal_lm(getattr(self.model, "module", self.model)))
        update_seconds = time.perf_counter() - t0
        seq_kl = ((rollout.logprobs - adv.ref_logprobs) * mask).sum(1)
        kl_ref = float(seq_kl.mean())
        self.kl_controller.update(kl_ref, rollout.num_episodes)
        self.num_updates += 1
        returns = adv.rewards.sum(1)
        tokens = rollout.num_tokens
        return PPOStats(
            policy_loss=result.policy_loss,
            value_loss=result.value_loss,
            entropy=result.entropy,
            approx_kl=result.approx_kl,
            clipfrac=result.clipfrac,
            explained_variance=explained_variance(rollout.values, adv.returns, mask),
            kl_ref=kl_ref,
            kl_coef=kl_coef,
            reward_mean=float(returns.mean()),
            reward_std=_std(returns),
            score_mean=float(rollout.scores.float().mean()),
            score_std=_std(rollout.scores),
            response_length_mean=float(rollout.lengths.float().mean()),
            num_samples=rollout.num_episodes,
            num_tokens=tokens,
            rollout_seconds=rollout.seconds,
            update_seconds=update_seconds,
            rollout_tokens_per_s=tokens / max(rollout.seconds, 1e-9),
            update_tokens_per_s=tokens / max(update_seconds, 1e-9),
            tokens_per_s=tokens / max(rollout.seconds + update_seconds, 1e-9),
            optimizer_steps=result.optimizer_steps,
        )

    def step(
        self,
        indices: Sequence[int],
        *,
        ref_prompt_ids: Sequence[Sequence[int]] | None = None,
        score_fn: Callable[[Rollout], Tensor | Sequence[float]] | None = None,
    ) -> tuple[Rollout, PPOStats]:
        """Collect, optionally rescore with ``score_fn(rollout)``, update."""
        rollout = self.collect(indices, ref_prompt_ids=ref_prompt_ids)
        if score_fn is not None:
            rollout = rollout.with_scores(score_fn(rollout))
        return rollout, self.update(rollout)

    def train(
        self,
        index_batches: Iterable[Sequence[int]],
        *,
        score_fn: Callable[[Rollout], Tensor | Sequence[float]] | None = None,
        progress: bool = False,
        on_update: Callable[[int, Rollout, PPOStats], None] | None = None,
    ) -> list[PPOStats]:
        """One :meth:`step` per batch of problem indices; ``progress`` shows a tqdm bar."""
        batches: Iterable[Sequence[int]] = index_batches
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(index_batches, desc="ppo", unit="update")
            batches = bar
        history = []
        for i, indices in enumerate(batches):
            rollout, stats = self.step(indices, score_fn=score_fn)
            history.append(stats)
            if bar is not None:
                bar.set_postfix(score=f"{stats.score_mean:.3f}", kl=f"{stats.kl_ref:.3f}")
            if on_update is not None:
                on_update(i, rollout, stats)
        return history
