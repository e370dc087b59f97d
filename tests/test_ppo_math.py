"""PPO's pure functions against hand-computed numbers, and PPOConfig validation."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from agents.ppo import (
    AdaptiveKLController,
    FixedKLController,
    PPOConfig,
    clipped_policy_loss,
    clipped_value_loss,
    entropy_from_logits,
    explained_variance,
    gae,
    kl_k1,
    kl_k2,
    kl_k3,
    masked_mean,
    shaped_rewards,
    whiten,
)


def t(rows: Any) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# --------------------------------------------------------------------------- GAE
def test_gae_by_hand_with_padding() -> None:
    # Row 0: three tokens, score 1 on the last. Row 1: two tokens (third is padding with
    # garbage that must not leak in).
    rewards = t([[0.0, 0.0, 1.0], [0.0, 2.0, 7.0]])
    values = t([[0.5, 0.5, 0.5], [1.0, 1.0, 9.0]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # row 0: δ2 = 1 - .5 = .5; δ1 = 0 + .5 - .5 = 0 -> A1 = .5*.5; A0 = .5*.25
    # row 1: δ1 = 2 + 0 - 1 = 1 (V beyond the end is 0); δ0 = 0 + 1 - 1 = 0 -> A0 = .5
    torch.testing.assert_close(adv, t([[0.125, 0.25, 0.5], [0.5, 1.0, 0.0]]))
    torch.testing.assert_close(ret, t([[0.625, 0.75, 1.0], [1.5, 2.0, 0.0]]))


def test_gae_lambda_one_is_monte_carlo_return_minus_value() -> None:
    rewards = t([[0.0, 0.0, 1.0]])
    values = t([[0.5, 0.5, 0.5]])
    mask = t([[1, 1, 1]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=1.0)
    torch.testing.assert_close(ret, t([[0.81, 0.9, 1.0]]))
    torch.testing.assert_close(adv, t([[0.31, 0.4, 0.5]]))


def test_gae_lambda_zero_is_one_step_td() -> None:
    rewards = t([[1.0, 2.0]])
    values = t([[3.0, 5.0]])
    adv, _ = gae(rewards, values, t([[1, 1]]), gamma=0.5, lam=0.0)
    # δ0 = 1 + .5*5 - 3 = .5 ; δ1 = 2 + 0 - 5 = -3
    torch.testing.assert_close(adv, t([[0.5, -3.0]]))


# --------------------------------------------------------------------------- whitening
def test_whiten_by_hand() -> None:
    x = t([[1.0, 2.0, 3.0], [4.0, 100.0, -100.0]])
    mask = t([[1, 1, 1], [1, 0, 0]])
    # masked values 1..4: mean 2.5, population variance 1.25
    s = math.sqrt(1.25)
    expected = t([[-1.5 / s, -0.5 / s, 0.5 / s], [1.5 / s, 0.0, 0.0]])
    torch.testing.assert_close(whiten(x, mask), expected, atol=1e-5, rtol=1e-5)
    kept = whiten(x, mask, shift_mean=False)
    torch.testing.assert_close(kept, (expected + 2.5) * mask, atol=1e-5, rtol=1e-5)


def test_masked_mean_ignores_padding_and_handles_empty() -> None:
    assert float(masked_mean(t([1.0, 3.0, 1000.0]), t([1, 1, 0]))) == 2.0
    assert float(masked_mean(t([5.0]), t([0]))) == 0.0


# --------------------------------------------------------------------------- KL
def test_kl_estimators_by_hand() -> None:
    logp, ref = t([math.log(0.5)]), t([math.log(0.25)])
    assert float(kl_k1(logp, ref)) == pytest.approx(math.log(2))
    assert float(kl_k2(logp, ref)) == pytest.approx(0.5 * math.log(2) ** 2)
    assert float(kl_k3(logp, ref)) == pytest.approx(-0.5 + math.log(2))


def test_k1_and_k3_are_unbiased_and_k3_nonnegative() -> None:
    """Averaged exactly over samples from p, k1 and k3 give KL(p || q); k3 is >= 0 pointwise."""
    p = t([0.5, 0.3, 0.2])
    q = t([0.2, 0.2, 0.6])
    kl = float((p * (p.log() - q.log())).sum())
    assert float((p * kl_k1(p.log(), q.log())).sum()) == pytest.approx(kl, rel=1e-5)
    assert float((p * kl_k3(p.log(), q.log())).sum()) == pytest.approx(kl, rel=1e-5)
    assert bool((kl_k3(p.log(), q.log()) >= 0).all())
    assert bool((kl_k1(p.log(), q.log()) < 0).any())  # k1 can be negative per sample


def test_shaped_rewards_put_score_on_last_token() -> None:
    logp = t([[-1.0, -2.0, -1.0], [-1.0, -1.0, 0.0]])
    ref = t([[-1.5, -1.0, -1.0], [-2.0, -1.0, 0.0]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    rewards, kl = shaped_rewards(t([1.0, 0.5]), logp, ref, mask, kl_coef=0.1)
    torch.testing.assert_close(kl, t([[0.5, -1.0, 0.0], [1.0, 0.0, 0.0]]))
    torch.testing.assert_close(rewards, t([[-0.05, 0.1, 1.0], [-0.1, 0.5, 0.0]]))


# --------------------------------------------------------------------------- losses
def test_clipped_policy_loss_by_hand() -> None:
    old = t([[0.0, 0.0, 0.0, 0.0, 0.0]])
    logp = t([[math.log(1.5), math.log(0.5), math.log(1.5), math.log(0.5), 3.0]])
    adv = t([[1.0, 1.0, -1.0, -1.0, 50.0]])
    mask = t([[1, 1, 1, 1, 0]])
    loss, clipfrac = clipped_policy_loss(logp, old, adv, mask, clip_eps=0.2)
    # per token max(-Aρ, -A clip(ρ)): -1.2 (clipped), -0.5, 1.5, 0.8 (clipped)
    assert float(loss) == pytest.approx((-1.2 - 0.5 + 1.5 + 0.8) / 4)
    assert float(clipfrac) == pytest.approx(0.5)


def test_clipped_policy_loss_gradient_is_zero_when_clipped() -> None:
    logp = torch.tensor([[math.log(1.5)]], requires_grad=True)
    loss, _ = clipped_policy_loss(logp, t([[0.0]]), t([[1.0]]), t([[1]]), clip_eps=0.2)
    loss.backward()
    assert logp.grad is not None and float(logp.grad) == 0.0


def test_clipped_value_loss_by_hand() -> None:
    values, old, returns = t([[2.0, 0.0]]), t([[1.0, 1.0]]), t([[3.0, 0.5]])
    loss = clipped_value_loss(values, old, returns, t([[1, 1]]), clip_eps=0.2)
    # token 1: max((2-3)², (1.2-3)²) = 3.24 ; token 2: max(0.25, (0.8-0.5)²) = 0.25
    assert float(loss) == pytest.approx(0.5 * (3.24 + 0.25) / 2)


def test_explained_variance_by_hand() -> None:
    returns = t([[1.0, 2.0, 3.0, 4.0, 99.0]])
    mask = t([[1, 1, 1, 1, 0]])
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full_like(returns, 2.5), returns, mask) == pytest.approx(0.0)
    # residual (0, 0, 0, -1): variance 0.1875; Var[R] = 1.25
    ev = explained_variance(t([[1.0, 2.0, 3.0, 5.0, 0.0]]), returns, mask)
    assert ev == pytest.approx(1 - 0.1875 / 1.25)
    assert math.isnan(explained_variance(returns, torch.ones_like(returns), mask))


def test_entropy_of_uniform_and_peaked_logits() -> None:
    ent = entropy_from_logits(t([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]]))
    assert float(ent[0]) == pytest.approx(math.log(4))
    assert float(ent[1]) == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- KL control
def test_adaptive_kl_controller_by_hand() -> None:
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    ctl.update(current_kl=9.0, n_steps=1000)  # error 0.5 clipped to 0.2: x(1 + 0.02)
    assert ctl.value == pytest.approx(0.102)
    ctl.update(current_kl=3.0, n_steps=1000)  # error -0.5 clipped to -0.2: x(1 - 0.02)
    assert ctl.value == pytest.approx(0.102 * 0.98)
    ctl.update(current_kl=6.6, n_steps=10_000)  # error 0.1: x1.1
    assert ctl.value == pytest.approx(0.102 * 0.98 * 1.1)


def test_fixed_kl_controller_stays_put() -> None:
    ctl = FixedKLController(0.05)
    ctl.update(current_kl=100.0, n_steps=10_000)
    assert ctl.value == 0.05


def test_adaptive_controller_rejects_bad_target() -> None:
    with pytest.raises(ValueError, match="-1"):
        AdaptiveKLController(0.1, target=-1, horizon=10)


# --------------------------------------------------------------------------- config
def test_config_defaults() -> None:
    c = PPOConfig()
    assert (c.clip_eps, c.value_clip_eps, c.gamma, c.lam, c.kl_coef) == (0.2, 0.2, 1.0, 0.95, 0.05)
    assert c.adaptive_kl is False and c.entropy_coef == 0.0 and c.kl_estimator == "k1"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("clip_eps", 0.0),
        ("clip_eps", 1.5),
        ("value_clip_eps", -0.1),
        ("gamma", 1.1),
        ("lam", -0.5),
        ("kl_coef", -0.01),
        ("kl_estimator", "k4"),
        ("kl_target", 0.0),
        ("epochs", 0),
        ("minibatch_size", 0),
        ("grad_accum_steps", 0),
        ("lr", 0.0),
        ("vf_coef", -1.0),
        ("entropy_coef", -0.1),
        ("max_grad_norm", 0.0),
        ("temperature", 0.0),
        ("top_p", 1.5),
        ("max_new_tokens", 0),
        ("logprob_batch_size", 0),
    ],
)
def test_config_rejects_bad_values_naming_them(field: str, value: Any) -> None:
    with pytest.raises(ValueError) as info:
        PPOConfig(**{field: value})
    message = str(info.value)
    assert field in message and repr(value).strip("'") in message
