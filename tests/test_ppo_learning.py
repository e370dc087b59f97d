"""PPO end to end on the tiny model: rollouts through the token env, the KL reference on a
different prompt, score replacement, gradient accumulation, and learning a trivial reward."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from agents.errors import ConfigError
from agents.policy import (
    FrozenReference,
    HFPolicy,
    PolicyWithValue,
    forward_completions,
    token_logprobs,
)
from agents.ppo import (
    PPOConfig,
    PPOTrainer,
    collect_rollout,
    compute_advantages,
    ppo_update,
    rollout_from_samples,
    task_prompt_ids,
    token_env,
)
from brite_envs.tasks.arith import Arith
from verifiers.rubric import Rubric

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def task() -> Arith:
    return Arith(split="train", size=64, levels=(1,))


def _policy(tiny: tuple[Any, Any]) -> PolicyWithValue:
    model = PolicyWithValue(copy.deepcopy(tiny[0]))
    torch.manual_seed(1)
    torch.nn.init.normal_(model.value_head.weight, std=0.1)  # non-trivial values to check
    return model


def test_rollout_goes_through_the_env_with_exact_ids(tiny: tuple[Any, Any], task: Arith) -> None:
    model = _policy(tiny)
    config = PPOConfig(max_new_tokens=8)
    env = token_env(task, tiny[1], config, 6)
    rollout = collect_rollout(model, env, [0, 1, 2, 3, 4, 5], seed=0)
    assert rollout.num_episodes == 6 and rollout.response.shape[1] == int(rollout.lengths.max())
    for i in range(6):
        assert list(rollout.completion_ids(i)) == env.completion_ids(i).tolist()
        assert rollout.prompt_ids[i] == tuple(env.tokens[i, : env.prompt_lengths[i]].tolist())
    assert rollout.ref_prompt_ids == rollout.prompt_ids
    assert rollout.num_tokens == int((env.lengths - env.prompt_lengths).sum())
    assert all(v is not None for v in rollout.verdicts)
    assert rollout.scores.tolist() == [v.score for v in rollout.verdicts]
    samples = rollout.samples()
    assert [s.completion_ids for s in samples] == rollout.completions()
    assert [s.text for s in samples] == list(rollout.texts)
    assert samples[0].text == tiny[1].decode(
        list(samples[0].completion_ids[: -1 if samples[0].finished else None]),
        skip_special_tokens=True,
    )
    # The behaviour log-probs and values are what a teacher-forced pass gives: PPO's ratio
    # starts at exactly 1.
    with torch.no_grad():
        out = forward_completions(
            model, rollout.query, rollout.query_mask, rollout.response, rollout.response_mask
        )
    mask = rollout.response_mask.bool()
    assert out.values is not None
    torch.testing.assert_close(out.logprobs[mask], rollout.logprobs[mask], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.values[mask], rollout.values[mask], atol=1e-4, rtol=1e-4)
    assert float(rollout.values[mask].abs().sum()) > 0


def test_group_rollout_and_update_match_unshared_passes(tiny: tuple[Any, Any], task: Arith) -> None:
    """k samples per problem: the prompt runs once per problem in the rollout, and the
    numbers equal one pass per sample."""
    model = _policy(tiny)
    config = PPOConfig(max_new_tokens=6)
    env = token_env(task, tiny[1], config, 6)
    rollout = collect_rollout(model, env, [7, 7, 7, 9, 9, 9], seed=0)
    assert len(set(rollout.completions()[:3])) == 3  # distinct samples of one prompt
    with torch.no_grad():
        out = forward_completions(
            model,
            rollout.query,
            rollout.query_mask,
            rollout.response,
            rollout.response_mask,
            share_prompts=False,
        )
    mask = rollout.response_mask.bool()
    assert out.values is not None
    torch.testing.assert_close(out.logprobs[mask], rollout.logprobs[mask], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.values[mask], rollout.values[mask], atol=1e-4, rtol=1e-4)


def test_rollout_with_episodes_ending_at_different_steps(
    tiny: tuple[Any, Any], task: Arith
) -> None:
    """A hook raising EOS's logit makes episodes stop early and at different steps."""
    model = _policy(tiny)
    eos = tiny[1].eos_token_id
    bias = torch.zeros(len(tiny[1]))
    bias[eos] = 4.0  # about a 1-in-10 chance per step
    model.lm.lm_head.register_forward_hook(lambda mod, inp, out: out + bias)
    config = PPOConfig(max_new_tokens=12)
    env = token_env(task, tiny[1], config, 8)
    rollout = collect_rollout(model, env, list(range(8)), seed=0)
    lengths = rollout.lengths.tolist()
    assert len(set(lengths)) > 1
    for i in range(8):
        ids = rollout.completion_ids(i)
        assert bool(rollout.finished[i]) == (ids[-1] == eos)
        assert eos not in ids[:-1]
    with torch.no_grad():
        out = forward_completions(
            model, rollout.query, rollout.query_mask, rollout.response, rollout.response_mask
        )
    mask = rollout.response_mask.bool()
    torch.testing.assert_close(out.logprobs[mask], rollout.logprobs[mask], atol=1e-4, rtol=1e-4)


def test_reference_logprobs_are_computed_on_the_unhinted_prompt(
    tiny: tuple[Any, Any], task: Arith
) -> None:
    """BRiTE's ψ-update: the policy samples on the hinted prompt, the KL reference scores
    the same ids on the plain prompt."""
    model = _policy(tiny)
    ref_model = copy.deepcopy(tiny[0])
    config = PPOConfig(max_new_tokens=6, kl_coef=0.1, epochs=1)
    env = token_env(task, tiny[1], config, 4, hinted=True)
    trainer = PPOTrainer(model, env, config, reference=FrozenReference(ref_model))
    indices = [3, 4, 5, 6]
    plain = task_prompt_ids(env, indices, hinted=False)
    hinted = task_prompt_ids(env, indices, hinted=True)
    rollout = trainer.collect(indices, ref_prompt_ids=plain)
    assert [list(p) for p in rollout.prompt_ids] == hinted
    assert [list(p) for p in rollout.ref_prompt_ids] == plain
    assert all(len(h) > len(p) for h, p in zip(hinted, plain, strict=True))

    adv = trainer.advantages(rollout)
    completions = rollout.completions()
    on_plain = token_logprobs(ref_model, plain, completions)
    on_hinted = token_logprobs(ref_model, hinted, completions)
    torch.testing.assert_close(adv.ref_logprobs, on_plain, atol=1e-5, rtol=1e-5)
    assert (adv.ref_logprobs - on_hinted).abs().max() > 1e-3
    # The reference equals the policy's LM, so on the hinted prompt the KL would be ~0;
    # on the plain prompt it is what the update reports.
    mask = rollout.response_mask
    expected_kl = float(((rollout.logprobs - on_plain) * mask).sum(1).mean())
    hinted_kl = float(((rollout.logprobs - on_hinted) * mask).sum(1).mean())
    assert abs(hinted_kl) < 1e-4 and abs(expected_kl) > 1e-3
    stats = trainer.update(rollout)
    assert stats.kl_ref == pytest.approx(expected_kl, abs=1e-4)


def test_replaced_scores_are_the_terminal_rewards(tiny: tuple[Any, Any], task: Arith) -> None:
    model = _policy(tiny)
    config = PPOConfig(max_new_tokens=5, kl_coef=0.2)
    env = token_env(task, tiny[1], config, 3)
    trainer = PPOTrainer(model, env, config)
    rollout = trainer.collect([0, 1, 2]).with_scores([0.5, -2.0, 3.0])
    adv = trainer.advantages(rollout)
    last = rollout.lengths - 1
    rows = torch.arange(3)
    terminal = adv.rewards[rows, last] + 0.2 * adv.kl[rows, last]
    torch.testing.assert_close(terminal, torch.tensor([0.5, -2.0, 3.0]))
    with pytest.raises(ConfigError, match="shape"):
        rollout.with_scores([1.0, 2.0])
    with pytest.raises(ConfigError, match="finite"):
        rollout.with_scores([1.0, float("nan"), 0.0])


def test_env_budget_must_match_the_config(tiny: tuple[Any, Any], task: Arith) -> None:
    env = token_env(task, tiny[1], PPOConfig(max_new_tokens=4), 2)
    with pytest.raises(ConfigError, match=r"\(4\).*\(9\)"):
        PPOTrainer(_policy(tiny), env, PPOConfig(max_new_tokens=9))


def test_gradient_accumulation_gives_the_same_step(tiny: tuple[Any, Any], task: Arith) -> None:
    """Micro-batches weighted by their token share give the full minibatch's gradient."""
    base = _policy(tiny)
    config = PPOConfig(max_new_tokens=6, epochs=1, minibatch_size=6)
    env = token_env(task, tiny[1], config, 6)
    rollout = collect_rollout(base, env, list(range(6)), seed=0).with_scores(
        [1.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    )
    ref = torch.zeros_like(rollout.logprobs)
    adv = compute_advantages(rollout, ref, kl_coef=0.05, config=config)
    params = []
    for accum in (1, 3):
        model = copy.deepcopy(base)
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        cfg = PPOConfig(
            max_new_tokens=6, epochs=1, minibatch_size=6, grad_accum_steps=accum, max_grad_norm=None
        )
        ppo_update(model, optimizer, rollout, adv, cfg, generator=torch.Generator().manual_seed(0))
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    moved = (params[0] - torch.cat([p.detach().flatten() for p in base.parameters()])).abs()
    assert float(moved.max()) > 1e-4
    torch.testing.assert_close(params[0], params[1], atol=1e-5, rtol=1e-4)


def test_rollout_from_a_policy_backend_replays_through_the_env(
    tiny: tuple[Any, Any], task: Arith
) -> None:
    model = _policy(tiny)
    config = PPOConfig(max_new_tokens=5)
    env = token_env(task, tiny[1], config, 4)
    sampler = HFPolicy(model, tiny[1])
    rollout = rollout_from_samples(model, env, [0, 1, 2, 3], sampler, seed=7)
    samples = sampler.sample(rollout.prompt_ids, max_new_tokens=5, seed=7)
    assert rollout.completions() == [s.completion_ids for s in samples]
    assert list(rollout.texts) == [s.text for s in samples]
    mask = rollout.response_mask.bool()
    behaviour = torch.zeros_like(rollout.logprobs)
    for i, s in enumerate(samples):
        behaviour[i, : len(s.logprobs)] = torch.tensor(s.logprobs)
    torch.testing.assert_close(rollout.logprobs[mask], behaviour[mask], atol=1e-4, rtol=1e-4)


def test_adaptive_kl_moves_beta(tiny: tuple[Any, Any], task: Arith) -> None:
    config = PPOConfig(
        max_new_tokens=4, adaptive_kl=True, kl_coef=0.1, kl_target=1e-6, kl_horizon=10, epochs=1
    )
    env = token_env(task, tiny[1], config, 4)
    trainer = PPOTrainer(_policy(tiny), env, config)
    # A reference on other prompts makes |KL| far from the tiny target: β moves by 8%.
    other = task_prompt_ids(env, [10, 11, 12, 13])
    rollout = trainer.collect([0, 1, 2, 3], ref_prompt_ids=other)
    stats = trainer.update(rollout)
    assert stats.kl_coef == 0.1
    error = max(min(stats.kl_ref / 1e-6 - 1, 0.2), -0.2)  # Ziegler's clipped error
    assert trainer.kl_controller.value == pytest.approx(0.1 * (1 + error * 4 / 10))
    assert trainer.kl_controller.value != pytest.approx(0.1)


def test_train_loop_reports_every_update(tiny: tuple[Any, Any], task: Arith) -> None:
    config = PPOConfig(max_new_tokens=2, epochs=1, minibatch_size=4)
    env = token_env(task, tiny[1], config, 4)
    trainer = PPOTrainer(_policy(tiny), env, config)
    seen: list[int] = []
    history = trainer.train(
        [[0, 1, 2, 3], [4, 5, 6, 7]],
        score_fn=lambda rollout: [1.0] * rollout.num_episodes,
        progress=True,
        on_update=lambda i, rollout, stats: seen.append(i),
    )
    assert seen == [0, 1] and trainer.num_updates == 2
    assert [s.score_mean for s in history] == [1.0, 1.0]
    assert all(s.num_samples == 4 and s.optimizer_steps == 1 for s in history)
    assert set(history[0].as_dict()) >= {"approx_kl", "clipfrac", "kl_ref", "tokens_per_s"}


def test_ppo_learns_a_trivial_reward(tiny: tuple[Any, Any], task: Arith) -> None:
    """Reward 1 iff the completion starts with an uppercase letter (about 1 token in 10 of
    the tiny vocabulary): the mean reward rises from < 0.2 to > 0.8."""
    rubric = Rubric.from_weights(
        {"upper": 1.0}, signals={"upper": lambda c, v, n: float(c[:1].isupper())}
    )
    config = PPOConfig(max_new_tokens=2, lr=2e-3, kl_coef=0.01, epochs=4, minibatch_size=16, seed=0)
    env = token_env(task, tiny[1], config, 32, rubric=rubric)
    trainer = PPOTrainer(PolicyWithValue(copy.deepcopy(tiny[0])), env, config)
    scores: list[float] = []
    for update in range(60):
        _, stats = trainer.step([(update * 32 + i) % len(task) for i in range(32)])
        scores.append(stats.score_mean)
        assert stats.num_samples == 32 and stats.num_tokens > 0
        if len(scores) >= 3 and sum(scores[-3:]) / 3 > 0.8:
            break
    assert scores[0] < 0.2
    assert sum(scores[-3:]) / 3 > 0.8, f"mean reward per update: {scores}"
