"""The BRiTE agent (``agent=brite``) and plain PPO (``agent=ppo``).

One BRiTE iteration t is two checkpointed stages (see ../shared/docs/BRITE.md):

* ``iter{t}/psi`` — the ψ-update (E-step). A thinking policy Q_ψ, initialised from the current
  θ, is trained with PPO over token actions in the *hinted* token env (its prompt shows the
  problem and the reference answer y*). Its per-token KL anchor is the current base policy
  P_θ on the prompt **without** the hint. The terminal reward r(x, z) is configurable:
  ``verifier`` (O's score of the answer the rationale reaches), ``answer_logprob``
  (log P_θ(y* | x, z), teacher-forced under θ) or ``both`` (a weighted sum).
* ``iter{t}/theta`` — the θ-update (M-step). Sample k rationales per training problem from
  Q_ψ, keep those O accepts (configurable), drop the hint, and fine-tune θ on
  (x → z) with TRL's SFTTrainer on the exact sampled token ids; or, with
  ``theta.method=dpo`` (BRiTE-DPO), pair correct with incorrect samples and train DPO.

``agent=ppo`` is the same PPO without the hint: the policy itself is trained against the
verifier, its KL anchor the policy at the start of the iteration.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from agents.common import (
    SampleStats,
    Stage,
    StageContext,
    StageOutput,
    TrainingResult,
    TrainingSetup,
    accepted_examples,
    derive_seed,
    plain_settings,
    sample_graded,
    samples_by_prompt,
    train_dpo,
    train_info,
    train_sft,
)
from agents.distill import make_pairs
from agents.errors import ConfigError
from agents.policy import (
    AdapterDisabledReference,
    FrozenReference,
    LoRAConfig,
    PolicyWithValue,
    Reference,
    apply_lora,
    token_logprobs,
)
from agents.ppo import PPOConfig, PPOStats, PPOTrainer, Rollout, task_prompt_ids, token_env
from brite_envs.task import Task
from brite_envs.types import Problem

PsiReward = Literal["verifier", "answer_logprob", "both"]
PSI_REWARDS = ("verifier", "answer_logprob", "both")
THETA_METHODS = ("sft", "dpo")
KEEP = ("correct", "all")

# PPOConfig fields a user may set under agent.psi.ppo (temperature, max_new_tokens, kl_coef
# and seed come from agent.temperature, agent.max_new_tokens, agent.psi.beta and seed=).
_PPO_KEYS = tuple(
    f.name
    for f in dataclasses.fields(PPOConfig)
    if f.name not in ("temperature", "max_new_tokens", "kl_coef", "seed", "top_p")
)


@dataclass(frozen=True)
class PsiSettings:
    """The ψ-update: PPO on the answer-conditioned thinking policy."""

    reward: PsiReward = "verifier"
    verifier_weight: float = 1.0
    """Weight of O's score in ``reward=both``."""
    logprob_weight: float = 1.0
    """Weight of log P_θ(y* | x, z) in ``reward=both``."""
    logprob_normalize: bool = True
    """Divide log P_θ(y* | x, z) by the answer's token count (a per-token mean), so the reward's
    scale does not depend on how long the answer is."""
    beta: float = 0.05
    """β: weight of the per-token KL to P_θ(· | x) (un-hinted)."""
    updates: int = 8
    """PPO updates per ψ-stage."""
    episodes: int = 8
    """Episodes (training problems) per PPO update."""
    lora_r: int = 0
    """0: Q_ψ is a full copy of θ. > 0: Q_ψ is θ plus a LoRA adapter of this rank (needs
    ``peft``), merged into the weights when the stage ends; its KL anchor is then the same
    weights with the adapter disabled, and the optimiser holds only the adapter's state."""
    lora_alpha: int = 32
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)

    def __post_init__(self) -> None:
        for name in ("lora_r", "lora_alpha"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"agent.psi.{name} must be an int >= 0, got {value!r}")
        if self.reward not in PSI_REWARDS:
            raise ValueError(f"agent.psi.reward must be one of {PSI_REWARDS}, got {self.reward!r}")
        for name in ("verifier_weight", "logprob_weight", "beta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"agent.psi.{name} must be a number >= 0, got {value!r}")
        for name in ("updates", "episodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"agent.psi.{name} must be an int >= 1, got {value!r}")


@dataclass(frozen=True)
class ThetaSettings:
    """The θ-update: distil Q_ψ's rationales into the base policy."""

    method: Literal["sft", "dpo"] = "sft"
    keep: Literal["correct", "all"] = "correct"
    """Which ψ samples SFT trains on: those O accepts, or all of them."""
    pairs_per_prompt: int = 1
    """BRiTE-DPO: (correct, incorrect) pairs per problem."""

    def __post_init__(self) -> None:
        if self.method not in THETA_METHODS:
            raise ValueError(
                f"agent.theta.method must be one of {THETA_METHODS}, got {self.method!r}"
            )
        if self.keep not in KEEP:
            raise ValueError(f"agent.theta.keep must be one of {KEEP}, got {self.keep!r}")
        if (
            isinstance(self.pairs_per_prompt, bool)
            or not isinstance(self.pairs_per_prompt, int)
            or self.pairs_per_prompt < 1
        ):
            raise ValueError(
                f"agent.theta.pairs_per_prompt must be an int >= 1, got {self.pairs_per_prompt!r}"
            )


def _build(cls: type[Any], values: Mapping[str, Any], key: str, **fixed: Any) -> Any:
    """``cls(**values)`` with unknown keys and bad values as one-line ConfigErrors."""
    known = {f.name for f in dataclasses.fields(cls)} - set(fixed)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]} is not a setting; known: {', '.join(sorted(known))}")
    try:
        return cls(**values, **fixed)
    except (TypeError, ValueError) as exc:
        message = str(exc).replace("PPOConfig: ", f"{key}.")
        raise ConfigError(message) from None


def psi_settings(cfg: Any, setup: TrainingSetup, key: str = "psi") -> PsiSettings:
    """``agent.<key>`` as :class:`PsiSettings`; sampling length and temperature are shared
    with the θ-update (``agent.max_new_tokens``, ``agent.temperature``) so budgets compare."""
    psi = plain_settings(cfg.agent.get(key))
    ppo_values = plain_settings(psi.pop("ppo", None))
    settings = _build(PsiSettings, psi, f"agent.{key}")
    s = setup.settings
    ppo = _build(
        PPOConfig,
        ppo_values,
        f"agent.{key}.ppo",
        temperature=s.temperature,
        top_p=s.top_p,
        max_new_tokens=s.max_new_tokens,
        kl_coef=float(settings.beta),
        seed=setup.seed,
    )
    return dataclasses.replace(settings, ppo=ppo)


def theta_settings(cfg: Any) -> ThetaSettings:
    return _build(ThetaSettings, plain_settings(cfg.agent.get("theta")), "agent.theta")


# -- the ψ reward ----------------------------------------------------------------------------
_ANSWER_CUE = re.compile(r"\\boxed\s*\{")


def rationale_prefix(tokenizer: Any, completion_ids: Sequence[int], eos_id: int | None) -> int:
    """How many of ``completion_ids`` form the rationale z: those before the final answer
    ``\\boxed{...}`` (all of them, EOS aside, when there is none). The ids are never
    re-encoded: the cut is found by decoding growing prefixes."""
    ids = list(completion_ids)
    if ids and eos_id is not None and ids[-1] == eos_id:
        ids = ids[:-1]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    cues = list(_ANSWER_CUE.finditer(text))
    if not cues:
        return len(ids)
    cut = cues[-1].start()
    lo, hi = 0, len(ids)  # smallest n with len(decode(ids[:n])) > cut
    while lo < hi:
        mid = (lo + hi) // 2
        if len(tokenizer.decode(ids[:mid], skip_special_tokens=True)) > cut:
            hi = mid
        else:
            lo = mid + 1
    return max(lo - 1, 0)


def answer_ids(tokenizer: Any, task: Task, problem: Problem) -> list[int]:
    """The tokens of y* as the prompt asks for it, ``\\boxed{REFERENCE}``, encoded once from
    the dataset's reference (text no model produced, so this is not re-tokenising a sample)."""
    text = f"\\boxed{{{task.format_reference(problem)}}}"
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def answer_logprob(
    base: torch.nn.Module,
    tokenizer: Any,
    task: Task,
    rollout: Rollout,
    *,
    normalize: bool,
    batch_size: int = 16,
) -> torch.Tensor:
    """r(x, z) = log P_θ(y* | x, z) for each episode: the un-hinted prompt x, the rationale z
    (the sampled ids before the final answer statement) and y*, teacher-forced under θ."""
    prompts, answers = [], []
    for i, index in enumerate(rollout.indices):
        z = rollout.completion_ids(i)
        cut = rationale_prefix(tokenizer, z, tokenizer.eos_token_id)
        prompts.append(list(rollout.ref_prompt_ids[i]) + list(z[:cut]))
        answers.append(answer_ids(tokenizer, task, task[index]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    logp = token_logprobs(base, prompts, answers, batch_size=batch_size, pad_id=int(pad)).sum(-1)
    if normalize:
        logp = logp / torch.tensor([len(a) for a in answers], dtype=logp.dtype)
    return logp


def psi_scores(
    settings: PsiSettings, base: torch.nn.Module, tokenizer: Any, task: Task, rollout: Rollout
) -> tuple[torch.Tensor, dict[str, float]]:
    """The terminal scores of a ψ rollout for the configured reward, and what went into them."""
    verifier = rollout.scores.detach().float().cpu()
    parts = {"verifier_score_mean": float(verifier.mean())}
    if settings.reward == "verifier":
        return verifier, parts
    logp = answer_logprob(
        base,
        tokenizer,
        task,
        rollout,
        normalize=settings.logprob_normalize,
        batch_size=settings.ppo.logprob_batch_size,
    )
    parts["answer_logprob_mean"] = float(logp.mean())
    if settings.reward == "answer_logprob":
        return logp, parts
    return settings.verifier_weight * verifier + settings.logprob_weight * logp, parts


# -- stages ----------------------------------------------------------------------------------
def _ppo_batches(setup: TrainingSetup, settings: PsiSettings, seed: int) -> list[list[int]]:
    """The training problems (task indices) of each PPO update: a seeded shuffle, cycled."""
    rng = np.random.default_rng(seed)
    pool = list(setup.train.indices)
    order: list[int] = []
    while len(order) < settings.updates * settings.episodes:
        order += [pool[i] for i in rng.permutation(len(pool))]
    e = settings.episodes
    return [order[u * e : (u + 1) * e] for u in range(settings.updates)]


def _ppo_stage(
    ctx: StageContext,
    lm: torch.nn.Module,
    anchor: Reference,
    base: torch.nn.Module,
    settings: PsiSettings,
    *,
    hinted: bool,
    label: str,
) -> list[PPOStats]:
    """PPO on ``lm`` (in place) over the training problems. ``anchor`` is the KL reference,
    scored on the un-hinted prompts; ``base`` is θ, which scores log P_θ(y* | x, z)."""
    task = ctx.setup.train.task
    model = PolicyWithValue(lm)
    env = token_env(task, ctx.tokenizer, settings.ppo, settings.episodes, hinted=hinted)
    trainer = PPOTrainer(model, env, settings.ppo, reference=anchor)
    history: list[PPOStats] = []
    batches = _ppo_batches(ctx.setup, settings, derive_seed(ctx.seed, "ppo"))
    bar = None
    if ctx.settings.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(batches), desc=f"{ctx.name} ppo", unit="update")
    try:
        for u, indices in enumerate(batches):
            plain = task_prompt_ids(env, indices, hinted=False)
            rollout = trainer.collect(indices, ref_prompt_ids=plain, seed=derive_seed(ctx.seed, u))
            scores, parts = (
                psi_scores(settings, base, ctx.tokenizer, task, rollout)
                if hinted
                else (rollout.scores.detach().float().cpu(), {})
            )
            stats = trainer.update(rollout, scores=scores)
            history.append(stats)
            prompt_tokens = int(rollout.query_mask.sum())
            ctx.budget.add(
                ctx.name,
                samples=stats.num_samples,
                generated_tokens=stats.num_tokens,
                trained_completion_tokens=stats.num_tokens * settings.ppo.epochs,
                trained_total_tokens=(stats.num_tokens + prompt_tokens) * settings.ppo.epochs,
            )
            ctx.log(label, u, {**stats.as_dict(), **parts})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    reward=f"{stats.score_mean:.3f}",
                    o=f"{parts.get('verifier_score_mean', stats.score_mean):.2f}",
                    kl=f"{stats.kl_ref:.2f}",
                )
    finally:
        if bar is not None:
            bar.close()
        env.close()
    return history


def _curve(history: Sequence[PPOStats]) -> dict[str, float]:
    first, last = history[0], history[-1]
    k = max(1, len(history) // 4)
    return {
        "psi_reward_first": first.score_mean,
        "psi_reward_last": last.score_mean,
        "psi_reward_first_quarter": float(np.mean([h.score_mean for h in history[:k]])),
        "psi_reward_last_quarter": float(np.mean([h.score_mean for h in history[-k:]])),
        "psi_kl_last": last.kl_ref,
        "psi_updates": len(history),
    }


def psi_stage(ctx: StageContext, policy: Any, *, settings: PsiSettings) -> StageOutput:
    """ψ-update: Q_ψ ← θ, then PPO in the hinted env with the un-hinted θ as KL anchor.
    θ is not modified (the next stage distils into it)."""
    psi = copy.deepcopy(policy)
    # A FrozenReference of θ turns off θ's gradients; the next stage trains θ, so they are
    # restored when this stage ends.
    trainable = [p for p in policy.parameters() if p.requires_grad]
    try:
        if settings.lora_r:
            psi = apply_lora(psi, LoRAConfig(r=settings.lora_r, alpha=settings.lora_alpha))
            anchor: Reference = AdapterDisabledReference(psi)
        else:
            anchor = FrozenReference(policy)
        history = _ppo_stage(ctx, psi, anchor, policy, settings, hinted=True, label="psi")
    finally:
        for p in trainable:
            p.requires_grad_(True)
    if settings.lora_r:
        psi = psi.merge_and_unload()  # a plain HF checkpoint, like full fine-tuning's
    psi.eval()
    return StageOutput(psi, _curve(history))


def theta_stage(
    ctx: StageContext, policy: Any, *, psi_name: str, theta: ThetaSettings
) -> StageOutput:
    """θ-update: k samples per problem from Q_ψ (hinted), graded by O; the hint is dropped and θ
    is fine-tuned on (x → z) with SFT, or with DPO on (correct, incorrect) pairs."""
    s = ctx.settings
    psi = ctx.load_model(psi_name)
    samples = sample_graded(
        psi,
        ctx.tokenizer,
        ctx.setup.train.task,
        ctx.setup.train.problems,
        k=s.k,
        hinted=True,
        temperature=s.temperature,
        top_p=s.top_p,
        max_new_tokens=s.max_new_tokens,
        batch_size=s.batch_size,
        seed=derive_seed(ctx.seed, "sample"),
        budget=ctx.budget,
        stage=ctx.name,
        progress=s.progress,
    )
    del psi
    stats = SampleStats.of(samples)
    ctx.log("sample", 0, stats.metrics())
    info: dict[str, Any] = {f"sample_{k}": v for k, v in stats.metrics().items()}
    if theta.method == "sft":
        examples = accepted_examples(
            samples, finished_only=s.finished_only, keep_all=theta.keep == "all"
        )
        info["sft_examples"] = len(examples)
        trained = train_sft(ctx, policy, examples)
        info.update(train_info("sft", trained.metrics))
    else:
        pairs = make_pairs(
            samples_by_prompt(samples, finished_only=s.finished_only),
            pairs_per_prompt=theta.pairs_per_prompt,
            seed=derive_seed(ctx.seed, "pairs"),
        )
        trained = train_dpo(ctx, policy, pairs)
        info.update(train_info("dpo", trained.metrics))
    return StageOutput(trained.model, info)


def ppo_stage(ctx: StageContext, policy: Any, *, settings: PsiSettings) -> StageOutput:
    """Plain PPO (no hint): the policy is trained against O, anchored to itself at the start
    of the iteration."""
    reference = copy.deepcopy(policy)
    anchor = FrozenReference(reference)
    history = _ppo_stage(ctx, policy, anchor, reference, settings, hinted=False, label="ppo")
    del reference, anchor
    policy.eval()
    curve = {k.replace("psi_", "ppo_"): v for k, v in _curve(history).items()}
    return StageOutput(policy, curve)


# -- agents ----------------------------------------------------------------------------------
_KEYS = ("psi", "theta")


def brite(setup: TrainingSetup, psi: PsiSettings, theta: ThetaSettings) -> TrainingResult:
    """T BRiTE iterations, each a ψ-stage then a θ-stage."""
    from functools import partial

    from agents.common import run_training

    stages = []
    for t in range(1, setup.settings.iterations + 1):
        name = f"iter{t}/psi"
        stages.append(Stage(name, partial(psi_stage, settings=psi), updates_policy=False))
        stages.append(Stage(f"iter{t}/theta", partial(theta_stage, psi_name=name, theta=theta)))
    return run_training(setup, stages)


def run_brite(cfg: Any) -> int:
    """``brite-agent run agent=brite``."""
    setup = TrainingSetup.from_cfg(cfg, extra_keys=_KEYS)
    result = brite(setup, psi_settings(cfg, setup), theta_settings(cfg))
    _print_curve(result, "psi")
    return 0


def run_ppo(cfg: Any) -> int:
    """``brite-agent run agent=ppo``: PPO without the hint, same budget accounting."""
    from functools import partial

    from agents.common import run_training

    setup = TrainingSetup.from_cfg(cfg, extra_keys=("rl",))
    settings = psi_settings(cfg, setup, key="rl")
    if settings.reward != "verifier":
        raise ConfigError(
            f"agent=ppo has no reference answer in its prompt, so agent.rl.reward must be "
            f"'verifier', got {settings.reward!r} (answer_logprob belongs to agent=brite)"
        )
    stages = [
        Stage(f"iter{t}", partial(ppo_stage, settings=settings))
        for t in range(1, setup.settings.iterations + 1)
    ]
    result = run_training(setup, stages)
    _print_curve(result, "ppo")
    return 0


def _print_curve(result: TrainingResult, label: str) -> None:
    """The reward curve of every PPO stage, as a one-line sparkline per stage, and a plot
    (``reward_curve.png``) when matplotlib is installed."""
    from agents.runs import iter_metrics

    curves: dict[str, list[float]] = {}
    for row in iter_metrics(result.out):
        stage = str(row.get("stage", ""))
        if stage.endswith(f"/{label}") or stage == label:
            key = stage.rsplit("/", 1)[0]
            curves.setdefault(key, []).append(float(row.get("score_mean", 0.0)))
    if not curves:
        return
    bars = "▁▂▃▄▅▆▇█"
    for stage, ys in curves.items():
        lo, hi = min(ys), max(ys)
        line = "".join(bars[int((y - lo) / (hi - lo + 1e-12) * (len(bars) - 1))] for y in ys)
        print(f"{label}-reward {stage}: {ys[0]:.3f} {line} {ys[-1]:.3f} ({len(ys)} updates)")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for stage, ys in curves.items():
        ax.plot(range(1, len(ys) + 1), ys, marker="o", label=stage)
    ax.set_xlabel("PPO update")
    ax.set_ylabel(f"{label} reward (terminal score)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(result.out / "reward_curve.png", dpi=120)
    plt.close(fig)
