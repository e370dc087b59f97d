"""The baselines BRiTE is compared with, each a plain function over the shared agent loop
(:mod:`agents.common`), so they run on the same problems, count the same budget and are
evaluated the same way:

- :func:`run_rs` — RS / ReST-EM: sample k rationales per training problem from θ, keep those the
  verifier accepts, SFT θ on them (exact ids), repeat.
- :func:`run_star` — STaR: RS plus rationalization: problems with no accepted sample are sampled
  again from the hinted prompt (reference answer shown); accepted ones train on the UN-hinted
  prompt.
- :func:`run_sft` — SFT on the dataset's human rationales (no sampling).
- :func:`run_dpo` — iterative DPO: sample k per prompt from θ, pair correct with incorrect,
  DPO against θ as it was at the start of the iteration, repeat.

``run_*(cfg)`` take a composed Hydra config and return an exit code; the ``rs``/``star``/
``sft_rationales``/``iterative_dpo`` functions take a :class:`TrainingSetup` and options
(tests swap in tasks with scripted verifiers this way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from agents.common import (
    GradedGeneration,
    SampleStats,
    Scalar,
    Stage,
    StageContext,
    StageFn,
    StageOutput,
    TrainingResult,
    TrainingSetup,
    accepted_examples,
    agent_bool,
    agent_int,
    derive_seed,
    run_training,
    sample_graded,
    samples_by_prompt,
    train_dpo,
    train_info,
    train_sft,
    unsolved,
)
from agents.distill import SFTExample, make_pairs, text_example
from agents.runs import Budget
from brite_envs.task import Task
from brite_envs.types import Problem


# -- options --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RSOptions:
    """RS / ReST-EM (``agent=rs``)."""

    restart_from_base: bool = False
    """Fine-tune the starting model each iteration (ReST-EM) instead of the current θ; the
    samples still come from the current θ."""

    KEYS: ClassVar[tuple[str, ...]] = ("restart_from_base",)

    @classmethod
    def from_cfg(cls, agent: Any) -> RSOptions:
        return cls(restart_from_base=agent_bool(agent, "restart_from_base", False))


@dataclass(frozen=True)
class STaROptions:
    """STaR (``agent=star``)."""

    restart_from_base: bool = False
    """As in RS; the original STaR restarts from the base model every outer loop."""
    rationalize: bool = True
    """Sample again, hinted, for problems with no accepted sample (False: plain RS)."""
    hint_k: int = 1
    """Hinted samples per unsolved problem."""

    KEYS: ClassVar[tuple[str, ...]] = ("restart_from_base", "rationalize", "hint_k")

    def __post_init__(self) -> None:
        if isinstance(self.hint_k, bool) or not isinstance(self.hint_k, int) or self.hint_k < 1:
            raise ValueError(f"agent.hint_k must be an integer >= 1, got {self.hint_k!r}")

    @classmethod
    def from_cfg(cls, agent: Any) -> STaROptions:
        return cls(
            restart_from_base=agent_bool(agent, "restart_from_base", False),
            rationalize=agent_bool(agent, "rationalize", True),
            hint_k=agent_int(agent, "hint_k", 1, minimum=1),
        )


@dataclass(frozen=True)
class DPOOptions:
    """Iterative DPO (``agent=dpo``)."""

    pairs_per_prompt: int = 1
    """(correct, incorrect) pairs drawn per training problem and iteration."""

    KEYS: ClassVar[tuple[str, ...]] = ("pairs_per_prompt",)

    def __post_init__(self) -> None:
        n = self.pairs_per_prompt
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"agent.pairs_per_prompt must be an integer >= 1, got {n!r}")

    @classmethod
    def from_cfg(cls, agent: Any) -> DPOOptions:
        return cls(pairs_per_prompt=agent_int(agent, "pairs_per_prompt", 1, minimum=1))


# -- data building (pure or nearly) ---------------------------------------------------------------
@dataclass(frozen=True)
class STaRRound:
    """One STaR round: the direct samples, the rationalization samples, and the training
    examples (accepted direct samples, then accepted rationalizations on un-hinted prompts)."""

    direct: list[GradedGeneration]
    rationalized: list[GradedGeneration]
    examples: list[SFTExample]


def star_round(
    model: Any,
    tokenizer: Any,
    task: Task,
    problems: Sequence[Problem],
    *,
    k: int,
    hint_k: int,
    rationalize: bool,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    budget: Budget,
    stage: str,
    progress: bool = True,
    finished_only: bool = True,
) -> STaRRound:
    """Sample ``k`` per problem un-hinted; for the problems none of whose samples was accepted,
    sample ``hint_k`` from the hinted prompt; keep what the verifier accepts. Both rounds count
    into ``budget``; the hinted round's examples carry the un-hinted prompt ids."""

    def sample(batch: Sequence[Problem], n: int, hinted: bool) -> list[GradedGeneration]:
        return sample_graded(
            model,
            tokenizer,
            task,
            batch,
            k=n,
            hinted=hinted,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            seed=derive_seed(seed, "hinted" if hinted else "direct"),
            budget=budget,
            stage=stage,
            progress=progress,
        )

    direct = sample(problems, k, False)
    failed = unsolved(direct) if rationalize else []
    rationalized = sample(failed, hint_k, True) if failed else []
    return STaRRound(
        direct,
        rationalized,
        accepted_examples(direct + rationalized, finished_only=finished_only),
    )


def rationale_examples(tokenizer: Any, task: Task, problems: Sequence[Problem]) -> list[SFTExample]:
    """SFT examples from the problems' human rationales, on the un-hinted chat prompt."""
    return [
        text_example(tokenizer, task.render_messages(p), p.rationale)
        for p in problems
        if p.rationale
    ]


# -- stage functions ------------------------------------------------------------------------------
def _sample_info(prefix: str, stats: SampleStats) -> dict[str, Scalar]:
    return {
        f"{prefix}_samples": stats.samples,
        f"{prefix}_correct": stats.correct,
        f"{prefix}_solved": stats.solved,
    }


def _rejection_iteration(
    ctx: StageContext, policy: Any, *, restart_from_base: bool, star_options: STaROptions | None
) -> StageOutput:
    """One RS iteration (``star_options=None``) or STaR iteration: sample from θ, filter, SFT.
    With ``restart_from_base`` the starting model is fine-tuned instead of θ (ReST-EM)."""
    s = ctx.settings
    problems = ctx.setup.train.problems
    data = star_round(
        policy,
        ctx.tokenizer,
        ctx.setup.train.task,
        problems,
        k=s.k,
        hint_k=star_options.hint_k if star_options else 1,
        rationalize=star_options.rationalize if star_options else False,
        temperature=s.temperature,
        top_p=s.top_p,
        max_new_tokens=s.max_new_tokens,
        batch_size=s.batch_size,
        seed=ctx.seed,
        budget=ctx.budget,
        stage=ctx.name,
        progress=s.progress,
        finished_only=s.finished_only,
    )
    direct = SampleStats.of(data.direct)
    ctx.log("sample", 0, direct.metrics())
    info: dict[str, Scalar] = _sample_info("sample", direct)
    if star_options is not None:
        hinted = SampleStats.of(data.rationalized)
        ctx.log("rationalize", 0, hinted.metrics())
        info.update(_sample_info("rationalize", hinted))
    if restart_from_base:
        del policy
        policy = ctx.load_model(None)
    trained = train_sft(ctx, policy, data.examples)
    info.update(train_info("sft", trained.metrics))
    return StageOutput(trained.model, info)


def _rationale_iteration(ctx: StageContext, policy: Any) -> StageOutput:
    """One pass (``agent.sft.epochs`` epochs) of SFT on the human rationales."""
    examples = rationale_examples(ctx.tokenizer, ctx.setup.train.task, ctx.setup.train.problems)
    trained = train_sft(ctx, policy, examples)
    return StageOutput(trained.model, train_info("sft", trained.metrics))


def _dpo_iteration(ctx: StageContext, policy: Any, *, options: DPOOptions) -> StageOutput:
    """Sample k per problem from θ, pair correct with incorrect, DPO against θ-now."""
    s = ctx.settings
    samples = sample_graded(
        policy,
        ctx.tokenizer,
        ctx.setup.train.task,
        ctx.setup.train.problems,
        k=s.k,
        temperature=s.temperature,
        top_p=s.top_p,
        max_new_tokens=s.max_new_tokens,
        batch_size=s.batch_size,
        seed=derive_seed(ctx.seed, "sample"),
        budget=ctx.budget,
        stage=ctx.name,
        progress=s.progress,
    )
    stats = SampleStats.of(samples)
    pairs = make_pairs(
        samples_by_prompt(samples, finished_only=s.finished_only),
        pairs_per_prompt=options.pairs_per_prompt,
        seed=derive_seed(ctx.seed, "pairs"),
    )
    ctx.log("sample", 0, {**stats.metrics(), "pairs": float(len(pairs))})
    trained = train_dpo(ctx, policy, pairs)  # reference: a frozen copy of θ as it is now
    info = {
        **_sample_info("sample", stats),
        "pairs": len(pairs),
        **train_info("dpo", trained.metrics),
    }
    return StageOutput(trained.model, info)


def _iterations(setup: TrainingSetup, fn: StageFn) -> list[Stage]:
    return [Stage(f"iter{t}", fn) for t in range(1, setup.settings.iterations + 1)]


# -- agents ---------------------------------------------------------------------------------------
def rs(setup: TrainingSetup, options: RSOptions) -> TrainingResult:
    """RS / ReST-EM for ``setup.settings.iterations`` iterations."""
    fn = partial(
        _rejection_iteration, restart_from_base=options.restart_from_base, star_options=None
    )
    return run_training(setup, _iterations(setup, fn))


def star(setup: TrainingSetup, options: STaROptions) -> TrainingResult:
    """STaR (RS with rationalization) for ``setup.settings.iterations`` iterations."""
    fn = partial(
        _rejection_iteration, restart_from_base=options.restart_from_base, star_options=options
    )
    return run_training(setup, _iterations(setup, fn))


def sft_rationales(setup: TrainingSetup) -> TrainingResult:
    """SFT on human rationales: ``iterations`` checkpointed passes of ``agent.sft.epochs``."""
    return run_training(setup, _iterations(setup, _rationale_iteration))


def iterative_dpo(setup: TrainingSetup, options: DPOOptions) -> TrainingResult:
    """Iterative DPO for ``setup.settings.iterations`` iterations."""
    fn = partial(_dpo_iteration, options=options)
    return run_training(setup, _iterations(setup, fn))


def run_rs(cfg: Any) -> int:
    """``brite-agent run agent=rs``."""
    setup = TrainingSetup.from_cfg(cfg, extra_keys=RSOptions.KEYS)
    rs(setup, RSOptions.from_cfg(cfg.agent))
    return 0


def run_star(cfg: Any) -> int:
    """``brite-agent run agent=star``."""
    setup = TrainingSetup.from_cfg(cfg, extra_keys=STaROptions.KEYS)
    star(setup, STaROptions.from_cfg(cfg.agent))
    return 0


def run_sft(cfg: Any) -> int:
    """``brite-agent run agent=sft`` (human rationales; errors if the task has none)."""
    setup = TrainingSetup.from_cfg(cfg, needs_rationales=True)
    sft_rationales(setup)
    return 0


def run_dpo(cfg: Any) -> int:
    """``brite-agent run agent=dpo``."""
    setup = TrainingSetup.from_cfg(cfg, extra_keys=DPOOptions.KEYS)
    iterative_dpo(setup, DPOOptions.from_cfg(cfg.agent))
    return 0
