"""What every training agent shares: settings from ``cfg.agent``, train/eval problem sets from
``cfg.env``, graded sampling that counts into the run budget, held-out evaluation, SFT/DPO steps
that log and count, and the stage loop that checkpoints, resumes and summarises a run.

Why one module: the baselines (RS, STaR, SFT, iterative DPO), PPO and BRiTE must be compared
under the same budget, on the same problems, with the same evaluation. Sharing these pieces is
what makes their numbers comparable.

A training agent is a list of :class:`Stage` s (usually one per iteration) handed to
:func:`run_training`, which adds ``eval/before`` and ``eval/after``, skips the stages a resumed run
already completed, and gives every stage function the current policy θ::

    setup = TrainingSetup.from_cfg(cfg, extra_keys=("restart_from_base",))
    result = run_training(setup, [Stage(f"iter{t}", partial(my_iteration, t=t)) for t in ...])
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import random
import sys
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

from agents.distill import (
    DPOSettings,
    GradedSample,
    PreferencePair,
    SFTExample,
    SFTSettings,
    Trained,
    TrainMetrics,
    TrainSettings,
    dpo,
    encode_prompt,
    sft,
)
from agents.errors import ConfigError
from agents.evaluate import EvalConfig, EvalSummary, evaluate, plain_settings
from agents.generate import Generation, generate
from agents.models import ModelSpec, load_model, model_spec
from agents.runs import Budget, Counts, RunDir
from brite_envs.task import Task
from brite_envs.types import Problem
from verifiers import Verdict

log = logging.getLogger(__name__)

Scalar = float | int | str | None
"""What stage info and run results hold (they are written to JSON)."""

DEFAULT_TRAIN_SPLIT = "train"
DEFAULT_TRAIN_SIZE = 64
EVAL_BEFORE = "eval/before"
EVAL_AFTER = "eval/after"


# -- reading config values ------------------------------------------------------------------------
def _int(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{key} must be >= {minimum}, got {value}")
    return value


def _float(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{key} must be finite, got {value!r}")
    return float(value)


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


def agent_int(agent: Mapping[str, Any], key: str, default: int, *, minimum: int = 0) -> int:
    """``cfg.agent[key]`` as an int >= ``minimum`` (``default`` when absent), or ConfigError
    naming ``agent.<key>``."""
    try:
        return _int(agent.get(key, default), f"agent.{key}", minimum)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def agent_bool(agent: Mapping[str, Any], key: str, default: bool) -> bool:
    """``cfg.agent[key]`` as a bool (``default`` when absent), or ConfigError naming it."""
    try:
        return _bool(agent.get(key, default), f"agent.{key}")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def derive_seed(seed: int, *parts: object) -> int:
    """A seed in [0, 2**31) that depends only on ``seed`` and ``parts`` (e.g. a stage name), so
    a resumed run samples exactly what the uninterrupted run would have."""
    digest = hashlib.sha256(repr((int(seed), *map(str, parts))).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


# -- settings -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalSettings:
    """Held-out evaluation (``cfg.agent.eval``): greedy by default, like ``agent=eval``."""

    before: bool = True
    """Evaluate the starting policy (stage ``eval/before``)."""
    after: bool = True
    """Evaluate the final policy (stage ``eval/after``)."""
    every_stage: bool = False
    """Also evaluate after every policy-updating stage (a learning curve; costs one eval each)."""
    batch_size: int = 16
    max_new_tokens: int = 256
    temperature: float = 0.0

    def __post_init__(self) -> None:
        for key in ("before", "after", "every_stage"):
            _bool(getattr(self, key), f"agent.eval.{key}")
        _int(self.batch_size, "agent.eval.batch_size", 1)
        _int(self.max_new_tokens, "agent.eval.max_new_tokens", 1)
        if _float(self.temperature, "agent.eval.temperature") < 0:
            raise ValueError(f"agent.eval.temperature must be >= 0, got {self.temperature}")


_SHARED_KEYS = (
    "name",
    "iterations",
    "k",
    "temperature",
    "top_p",
    "max_new_tokens",
    "finished_only",
    "batch_size",
    "progress",
    "eval",
    "sft",
    "dpo",
)
_EVAL_KEYS = tuple(f.name for f in dataclasses.fields(EvalSettings))
_SEED_FROM_RUN = "seed"  # train settings take their seed from cfg.seed, per stage

S = TypeVar("S", bound=TrainSettings)


@dataclass(frozen=True)
class TrainingSettings:
    """What the training agents share, from ``cfg.agent``. Agent-specific keys (e.g.
    ``restart_from_base``) are read by the agent itself; :meth:`from_cfg` only checks that no
    unknown key slipped in (a typo would otherwise be ignored silently)."""

    iterations: int = 2
    """Outer iterations T (one checkpointed stage each)."""
    k: int = 4
    """Samples per training problem per iteration."""
    temperature: float = 1.0
    """Sampling temperature of the training samples (> 0 when k > 1)."""
    top_p: float = 1.0
    max_new_tokens: int = 128
    """Longest sampled rationale, in tokens."""
    finished_only: bool = True
    """Train only on samples that ended with the stop token. A sample cut at ``max_new_tokens``
    carries no stop id: SFT on it teaches the model never to stop (and a correct verdict on a
    truncated text is often a lucky last number). In DPO, a cut sample may still be rejected."""
    batch_size: int = 16
    """Sequences per generation call while sampling."""
    progress: bool = True
    """Progress bars and one stderr line per stage."""
    eval: EvalSettings = field(default_factory=EvalSettings)
    sft: SFTSettings = field(default_factory=SFTSettings)
    dpo: DPOSettings = field(default_factory=DPOSettings)

    def __post_init__(self) -> None:
        _int(self.iterations, "agent.iterations", 1)
        _int(self.k, "agent.k", 1)
        _int(self.max_new_tokens, "agent.max_new_tokens", 1)
        _int(self.batch_size, "agent.batch_size", 1)
        _bool(self.progress, "agent.progress")
        _bool(self.finished_only, "agent.finished_only")
        temperature = _float(self.temperature, "agent.temperature")
        if temperature < 0:
            raise ValueError(f"agent.temperature must be >= 0, got {temperature}")
        if temperature == 0 and self.k > 1:
            raise ValueError(
                f"agent.temperature=0 (greedy) with agent.k={self.k} gives {self.k} identical "
                "samples per problem; set agent.temperature > 0 or agent.k=1"
            )
        top_p = _float(self.top_p, "agent.top_p")
        if not 0 < top_p <= 1:
            raise ValueError(f"agent.top_p must be in (0, 1], got {top_p}")

    @classmethod
    def from_cfg(
        cls, agent: Any, *, seed: int = 0, extra_keys: Collection[str] = ()
    ) -> TrainingSettings:
        """Settings from ``cfg.agent`` (absent keys take the defaults above); ``seed`` seeds the
        SFT/DPO settings (stages derive their own from it). Raises ConfigError naming the key."""
        values = plain_settings(agent)
        known = set(_SHARED_KEYS) | set(extra_keys)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"agent.{unknown[0]} is not a setting of agent={values.get('name')!r}; known: "
                f"{', '.join(sorted(known - {'name'}))}"
            )
        try:
            eval_values = plain_settings(values.get("eval"))
            bad = sorted(set(eval_values) - set(_EVAL_KEYS))
            if bad:
                raise ConfigError(
                    f"agent.eval.{bad[0]} is not an eval setting; known: {', '.join(_EVAL_KEYS)}"
                )
            defaults = cls()
            return cls(
                iterations=values.get("iterations", defaults.iterations),
                k=values.get("k", defaults.k),
                temperature=values.get("temperature", defaults.temperature),
                top_p=values.get("top_p", defaults.top_p),
                max_new_tokens=values.get("max_new_tokens", defaults.max_new_tokens),
                finished_only=values.get("finished_only", defaults.finished_only),
                batch_size=values.get("batch_size", defaults.batch_size),
                progress=values.get("progress", defaults.progress),
                eval=EvalSettings(**eval_values),
                sft=_train_settings(SFTSettings, values.get("sft"), "sft", seed),
                dpo=_train_settings(DPOSettings, values.get("dpo"), "dpo", seed),
            )
        except ConfigError:
            raise
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def _train_settings(cls: type[S], node: Any, key: str, seed: int) -> S:
    """SFT/DPO settings from ``cfg.agent.<key>``; error messages name ``agent.<key>.<field>``."""
    values = plain_settings(node)
    allowed = {f.name for f in dataclasses.fields(cls)} - {_SEED_FROM_RUN}
    bad = sorted(set(values) - allowed)
    if bad:
        hint = " (the seed comes from the top-level seed=)" if bad[0] == _SEED_FROM_RUN else ""
        raise ConfigError(
            f"agent.{key}.{bad[0]} is not a {key} setting{hint}; known: "
            f"{', '.join(sorted(allowed))}"
        )
    if "report_to" in values:
        values["report_to"] = tuple(values["report_to"] or ())
    try:
        return cls(**values, seed=seed)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc).replace(f"{cls.__name__}.", f"agent.{key}.")) from None


# -- problems -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProblemSet:
    """The problems of one split a run trains or evaluates on: a task and chosen indices."""

    task: Task
    split: str
    indices: tuple[int, ...]

    @property
    def problems(self) -> list[Problem]:
        return [self.task[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)


def _make_task(name: str, split: str, kwargs: Mapping[str, Any], role: str) -> Task:
    import brite_envs

    try:
        task = brite_envs.make_task(name, split=split, **dict(kwargs))
        len(task)  # load now: a missing split or unreachable data fails here, in one line
    except brite_envs.BriteEnvError as exc:
        raise ConfigError(f"{role}: {exc}") from exc
    return task


def select_indices(
    candidates: Sequence[int], size: int | None, *, seed: int, shuffle: bool
) -> tuple[int, ...]:
    """``size`` of ``candidates`` (all when None or larger): a seeded random subset in index
    order when ``shuffle``, else the first ``size`` (what ``agent=eval`` evaluates)."""
    if size is None or size >= len(candidates):
        return tuple(candidates)
    if not shuffle:
        return tuple(candidates[:size])
    rng = random.Random(derive_seed(seed, "problems"))
    return tuple(sorted(rng.sample(list(candidates), size)))


def _size(value: Any, key: str) -> int | None:
    if value is None:
        return None
    try:
        return _int(value, key, 1)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def train_problems(cfg: Any, *, needs_rationales: bool = False) -> ProblemSet:
    """The training problems: ``env.train_size`` (default 64; null: all) drawn at random (seeded
    by ``cfg.seed``) from ``env.train_split`` (default ``train``). With ``needs_rationales``
    only problems that carry a human rationale are drawn."""
    env = cfg.env
    agent = cfg.agent.name
    split = env.get("train_split", DEFAULT_TRAIN_SPLIT)
    if split is None:
        raise ConfigError(
            f"agent={agent} needs training problems, but env={env.name} has no training split "
            "(env.train_split is null); train on an env with one (arith, gsm8k, math) or set "
            "env.train_split="
        )
    split = str(split)
    size = _size(env.get("train_size", DEFAULT_TRAIN_SIZE), "env.train_size")
    role = f"agent={agent} trains on env.train_split={split!r}"
    task = _make_task(env.name, split, env.get("task_kwargs") or {}, role)
    candidates = list(range(len(task)))
    if needs_rationales:
        candidates = [i for i in candidates if task[i].rationale]
        if not candidates:
            raise ConfigError(
                f"agent={agent} trains on human rationales, but task {task.name!r} (split "
                f"{split!r}) has none; use an env with worked solutions (arith, gsm8k, math)"
            )
        if len(candidates) < len(task):
            log.warning(
                "%s: %d of %d problems have no rationale and are left out",
                task.name,
                len(task) - len(candidates),
                len(task),
            )
    if split == str(env.get("eval_split", "")):
        log.warning(
            "env.train_split and env.eval_split are both %r: training on the eval set", split
        )
    return ProblemSet(task, split, select_indices(candidates, size, seed=cfg.seed, shuffle=True))


def eval_problems(cfg: Any) -> ProblemSet:
    """The held-out problems: the first ``env.eval_size`` (null: all) of ``env.eval_split``,
    exactly those ``agent=eval`` evaluates, so numbers compare across agents."""
    env = cfg.env
    split = str(env.eval_split)
    task = _make_task(env.name, split, env.get("task_kwargs") or {}, f"env.eval_split={split!r}")
    size = _size(env.get("eval_size"), "env.eval_size")
    return ProblemSet(task, split, select_indices(range(len(task)), size, seed=0, shuffle=False))


@dataclass(frozen=True)
class TrainingSetup:
    """Everything a training run is built from, resolved and checked before any model loads."""

    agent: str
    settings: TrainingSettings
    model: ModelSpec
    train: ProblemSet
    eval: ProblemSet
    seed: int
    out: Path
    resume: bool
    config: Mapping[str, Any]
    """The resolved config as plain data: what the run directory records and compares."""

    @classmethod
    def from_cfg(
        cls, cfg: Any, *, extra_keys: Collection[str] = (), needs_rationales: bool = False
    ) -> TrainingSetup:
        """Check ``cfg`` (a composed Hydra config) and build the problem sets. Raises
        ConfigError with one line naming the bad key or the missing split/rationales."""
        from omegaconf import OmegaConf

        seed = cfg.get("seed", 0)
        try:
            seed = _int(seed, "seed", 0)
            resume = _bool(cfg.get("resume", False), "resume")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        settings = TrainingSettings.from_cfg(cfg.agent, seed=seed, extra_keys=extra_keys)
        config = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
        return cls(
            agent=str(cfg.agent.name),
            settings=settings,
            model=model_spec(cfg),
            train=train_problems(cfg, needs_rationales=needs_rationales),
            eval=eval_problems(cfg),
            seed=seed,
            out=Path(str(cfg.out)).expanduser(),
            resume=resume,
            config=dict(config),  # type: ignore[arg-type]
        )

    def stage_settings(self, kind: type[S], seed: int) -> S:
        """The SFT or DPO settings with a stage's seed."""
        base = self.settings.sft if kind is SFTSettings else self.settings.dpo
        if not isinstance(base, kind):
            raise TypeError(f"stage_settings takes SFTSettings or DPOSettings, got {kind}")
        return dataclasses.replace(base, seed=seed)


# -- graded sampling ------------------------------------------------------------------------------
@dataclass(frozen=True)
class GradedGeneration:
    """A sampled completion with its verdict. ``generation.prompt_ids`` is the prompt it was
    sampled from (hinted or not); ``train_prompt_ids`` is the UN-hinted prompt x, which is what
    training examples use: the hint is dropped from training data."""

    problem: Problem
    generation: Generation
    verdict: Verdict
    train_prompt_ids: tuple[int, ...]
    hinted: bool

    @property
    def correct(self) -> bool:
        return self.verdict.correct


def sample_graded(
    model: Any,
    tokenizer: Any,
    task: Task,
    problems: Sequence[Problem],
    *,
    k: int,
    hinted: bool = False,
    temperature: float,
    top_p: float = 1.0,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    budget: Budget,
    stage: str,
    progress: bool = True,
) -> list[GradedGeneration]:
    """``k`` samples per problem (problem-major order), graded by the task's verifier. Every
    generation counts into ``budget`` under ``stage`` (samples and generated tokens, hinted or
    not). ``hinted=True`` samples from the prompt that shows the reference answer."""
    if k < 1 or batch_size < 1:
        raise ValueError(f"sample_graded needs k >= 1 and batch_size >= 1, got {k}, {batch_size}")
    jobs = [p for p in problems for _ in range(k)]
    unhinted: dict[str, tuple[int, ...]] = {}
    out: list[GradedGeneration] = []
    label = f"{stage} {'hinted ' if hinted else ''}samples"
    with _bar(len(jobs), label, progress) as bar:
        for n, start in enumerate(range(0, len(jobs), batch_size)):
            batch = jobs[start : start + batch_size]
            gens = generate(
                model,
                tokenizer,
                [task.render_messages(p, hinted=hinted) for p in batch],
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                seed=derive_seed(seed, n),
            )
            budget.add_generations(stage, gens)
            verdicts = task.grade_many(batch, [g.text for g in gens])
            for p, g, v in zip(batch, gens, verdicts, strict=True):
                if hinted and p.id not in unhinted:
                    unhinted[p.id] = encode_prompt(tokenizer, task.render_messages(p))
                out.append(
                    GradedGeneration(
                        problem=p,
                        generation=g,
                        verdict=v,
                        train_prompt_ids=unhinted[p.id] if hinted else g.prompt_ids,
                        hinted=hinted,
                    )
                )
            bar.update(len(batch))
    return out


@contextmanager
def _bar(total: int, desc: str, enabled: bool) -> Iterator[Any]:
    bar = tqdm(total=total, desc=desc, unit="sample", disable=not enabled, leave=False)
    try:
        yield bar
    finally:
        bar.close()


def accepted_examples(
    samples: Sequence[GradedGeneration], *, finished_only: bool = True, keep_all: bool = False
) -> list[SFTExample]:
    """SFT examples from the samples the verifier accepted (status CORRECT; wrong, unparsable,
    timed-out and errored ones are dropped; every sample with ``keep_all``), on the un-hinted
    prompt ids and the exact sampled completion ids. ``finished_only`` also drops samples cut at
    the token cap, which would teach the model not to stop."""
    return [
        SFTExample(s.train_prompt_ids, s.generation.completion_ids)
        for s in samples
        if (keep_all or s.correct)
        and s.generation.completion_ids
        and (s.generation.finished or not finished_only)
    ]


def unsolved(samples: Sequence[GradedGeneration]) -> list[Problem]:
    """The problems (first-seen order) none of whose samples was accepted."""
    seen: dict[str, Problem] = {}
    solved: set[str] = set()
    for s in samples:
        seen.setdefault(s.problem.id, s.problem)
        if s.correct:
            solved.add(s.problem.id)
    return [p for pid, p in seen.items() if pid not in solved]


def samples_by_prompt(
    samples: Sequence[GradedGeneration], *, finished_only: bool = True
) -> dict[str, list[GradedSample]]:
    """Samples grouped by problem id as :class:`GradedSample` on the un-hinted prompt ids, the
    input of :func:`agents.distill.make_pairs`. Timeouts and grading errors are left out: they
    are not wrong answers, so they must not become rejected responses. With ``finished_only`` a
    correct sample cut at the token cap is left out too (it must not be a chosen response); a
    cut wrong one stays a rejected one."""
    grouped: dict[str, list[GradedSample]] = {}
    for s in samples:
        if s.verdict.failed_to_grade or not s.generation.completion_ids:
            continue
        if finished_only and s.correct and not s.generation.finished:
            continue
        grouped.setdefault(s.problem.id, []).append(
            GradedSample(s.train_prompt_ids, s.generation.completion_ids, s.correct)
        )
    return grouped


@dataclass(frozen=True)
class SampleStats:
    """What a round of sampling produced, for metrics and stage info."""

    samples: int
    correct: int
    problems: int
    solved: int
    finished: int
    generated_tokens: int
    statuses: Mapping[str, int]

    @classmethod
    def of(cls, samples: Sequence[GradedGeneration]) -> SampleStats:
        return cls(
            samples=len(samples),
            correct=sum(s.correct for s in samples),
            problems=len({s.problem.id for s in samples}),
            solved=len({s.problem.id for s in samples if s.correct}),
            finished=sum(s.generation.finished for s in samples),
            generated_tokens=sum(len(s.generation.completion_ids) for s in samples),
            statuses=dict(sorted(Counter(str(s.verdict.status) for s in samples).items())),
        )

    def metrics(self) -> dict[str, float]:
        n = max(self.samples, 1)
        values = {
            "samples": float(self.samples),
            "correct": float(self.correct),
            "accuracy": self.correct / n,
            "problems": float(self.problems),
            "solved": float(self.solved),
            "finished_fraction": self.finished / n,
            "mean_completion_tokens": self.generated_tokens / n,
        }
        values.update({f"status/{k}": float(v) for k, v in self.statuses.items()})
        return values


# -- evaluation ----------------------------------------------------------------------------------
def held_out_accuracy(
    model: Any,
    tokenizer: Any,
    problems: ProblemSet,
    settings: EvalSettings,
    *,
    out: Path,
    stage: str,
    seed: int,
) -> EvalSummary:
    """Evaluate on the held-out problems, writing samples and metrics to ``out/eval/<stage>/``."""
    config = EvalConfig(
        batch_size=settings.batch_size,
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        seed=seed,
    )
    return evaluate(
        model,
        tokenizer,
        problems.task,
        list(problems.indices),
        config,
        out_dir=out / "eval" / stage,
    )


# -- stages ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageOutput:
    """What a stage function returns: the model to checkpoint under the stage (the new policy θ
    when the stage updates the policy), small JSON info, and optional extra state."""

    model: Any
    info: Mapping[str, Scalar] = field(default_factory=dict)
    state: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class StageContext:
    """What a stage function gets besides the current policy: its name, a seed derived from
    ``cfg.seed`` and the name (the same on resume), the run (metrics, budget), the setup and
    the tokenizer."""

    name: str
    seed: int
    run: RunDir
    setup: TrainingSetup
    tokenizer: Any

    @property
    def budget(self) -> Budget:
        return self.run.budget

    @property
    def settings(self) -> TrainingSettings:
        return self.setup.settings

    def log(self, label: str, step: int, values: Mapping[str, float | None]) -> None:
        """Log ``values`` (None values dropped) to metrics.jsonl as stage ``<name>/<label>``."""
        self.run.log(
            f"{self.name}/{label}", step, {k: v for k, v in values.items() if v is not None}
        )

    def load_model(self, stage: str | None = None) -> Any:
        """The model checkpointed by a completed ``stage``, or the starting model (None) —
        e.g. ReST-EM's restart from the base, or BRiTE's θ when the latest stage saved ψ."""
        if stage is None:
            return load_model(self.setup.model, seed=self.setup.seed)[0]
        return load_model(_checkpoint_spec(self.setup.model, self.run, stage))[0]


StageFn = Callable[[StageContext, Any], StageOutput]
"""``fn(ctx, policy) -> StageOutput``; may train ``policy`` in place and return it."""


@dataclass(frozen=True)
class Stage:
    """One checkpointed step of a training agent. ``updates_policy=False`` marks a stage whose
    model is not the new θ (BRiTE's ψ-update): it is saved, but the next stage gets the policy
    from before it, and a resumed run never starts from it. Such a stage must not train the
    ``policy`` it is given in place (train a copy); a later stage gets its model with
    ``ctx.load_model(name)``."""

    name: str
    fn: StageFn
    updates_policy: bool = True


@dataclass(frozen=True)
class TrainingResult:
    """The outcome of :func:`run_training`."""

    out: Path
    final: Path
    accuracy_before: float | None
    accuracy_after: float | None
    budget: Counts
    ran: tuple[str, ...]
    """Stages run by this call (a resumed run skips completed ones)."""


def _checkpoint_spec(base: ModelSpec, run: RunDir, stage: str) -> ModelSpec:
    return ModelSpec(
        name=f"{base.name}@{stage}",
        source="path",
        name_or_path=str(run.checkpoint(stage).model_dir),
        dtype=base.dtype,
    )


class _NoWeights:
    """Eval stages record results, not weights: saved in their place, this writes nothing."""

    def save_pretrained(self, path: Path) -> None:
        return None


_NO_WEIGHTS = _NoWeights()


def _policy_checkpoint(run: RunDir, policy_stages: Collection[str]) -> str | None:
    """The latest completed stage that saved a policy θ (None: start from the base model)."""
    latest = None
    for name in run.completed_stages():
        if name in policy_stages and (run.checkpoint(name).path / "model").is_dir():
            latest = name
    return latest


def _say(enabled: bool, message: str) -> None:
    if enabled:
        tqdm.write(message, file=sys.stderr)


def run_training(setup: TrainingSetup, stages: Sequence[Stage]) -> TrainingResult:
    """Run ``eval/before``, ``stages`` in order and ``eval/after`` in the run directory
    ``setup.out``: completed stages are skipped on resume, θ comes from the latest policy
    checkpoint (or the base model), each stage is checkpointed, and the final policy, summary
    (accuracy before/after, budget) and a one-line result are written."""
    names = [s.name for s in stages]
    if not stages or len(set(names)) != len(names):
        raise ValueError(f"run_training needs distinct stage names, got {names}")
    if any(n.split("/")[0] == "eval" for n in names):
        raise ValueError(f"stage names starting with 'eval/' are reserved, got {names}")
    s = setup.settings
    plan = [EVAL_BEFORE] * s.eval.before + names + [EVAL_AFTER] * s.eval.after
    by_name = {st.name: st for st in stages}
    policy_stages = {st.name for st in stages if st.updates_policy}
    ran: list[str] = []
    with RunDir(setup.out, setup.config, resume=setup.resume) as run:
        run.next_stage(plan)  # the completed stages must be the start of this plan
        start = _policy_checkpoint(run, policy_stages)
        _say(
            s.progress,
            f"[{setup.agent}] loading {setup.model.name}" + (f" @ {start}" if start else ""),
        )
        if start is None:
            model, tokenizer = load_model(setup.model, seed=setup.seed)
        else:
            model, tokenizer = load_model(_checkpoint_spec(setup.model, run, start))
        for position, name in enumerate(plan, 1):
            if run.is_complete(name):
                continue
            ran.append(name)
            _say(s.progress, f"[{setup.agent}] stage {name} ({position}/{len(plan)}) -> {run.out}")
            if name in (EVAL_BEFORE, EVAL_AFTER):
                info = _eval_info(model, tokenizer, setup, run, name.split("/")[1])
                run.save_stage(name, model=_NO_WEIGHTS, tokenizer=_NO_WEIGHTS, info=info)
                continue
            stage = by_name[name]
            ctx = StageContext(name, derive_seed(setup.seed, name), run, setup, tokenizer)
            output = stage.fn(ctx, model)
            info = dict(output.info)
            if stage.updates_policy:
                model = output.model
                if s.eval.every_stage:
                    info.update(_eval_info(model, tokenizer, setup, run, name))
            run.save_stage(
                name, model=output.model, tokenizer=tokenizer, state=output.state, info=info
            )
        final = run.save_final(model, tokenizer)
        before = _accuracy(run, EVAL_BEFORE)
        after = _accuracy(run, EVAL_AFTER)
        results: dict[str, Scalar] = {
            "agent": setup.agent,
            "task": setup.train.task.name,
            "train_split": setup.train.split,
            "train_problems": len(setup.train),
            "eval_split": setup.eval.split,
            "eval_problems": len(setup.eval),
            "iterations": s.iterations,
            "accuracy_before": before,
            "accuracy_after": after,
        }
        run.write_summary(results)
        total = run.budget.total
    print(
        f"{setup.agent} on {setup.train.task.name} ({len(setup.train)} {setup.train.split} "
        f"problems, {len(stages)} stages): held-out accuracy {_fmt(before)} -> {_fmt(after)} "
        f"({setup.eval.split}, {len(setup.eval)} problems); samples {total.samples}, generated "
        f"tokens {total.generated_tokens}, trained tokens {total.trained_completion_tokens} "
        f"-> {final}"
    )
    return TrainingResult(setup.out, final, before, after, total, tuple(ran))


def _eval_info(
    model: Any, tokenizer: Any, setup: TrainingSetup, run: RunDir, stage: str
) -> dict[str, Scalar]:
    summary = held_out_accuracy(
        model, tokenizer, setup.eval, setup.settings.eval, out=run.out, stage=stage, seed=setup.seed
    )
    values = {
        "eval_accuracy": summary.accuracy,
        "eval_problems": float(summary.n),
        "eval_mean_completion_tokens": summary.mean_completion_tokens,
    }
    run.log(f"eval/{stage}", 0, values)
    return {**values, "eval_problems": summary.n}


def _accuracy(run: RunDir, stage: str) -> float | None:
    ckpt = run.stage(stage)
    value = ckpt.info.get("eval_accuracy") if ckpt is not None else None
    return float(value) if value is not None else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


# -- training steps that log and count ------------------------------------------------------------
def _train_metrics(m: TrainMetrics) -> dict[str, float | None]:
    return {
        "examples": float(m.examples),
        "skipped": float(m.skipped),
        "steps": float(m.steps),
        "loss_first": m.loss_first,
        "loss_last": m.loss_last,
        "margin_first": m.margin_first,
        "margin_last": m.margin_last,
        "trained_completion_tokens": float(m.trained_completion_tokens),
        "trained_total_tokens": float(m.trained_total_tokens),
        "seconds": m.seconds,
    }


def train_sft(
    ctx: StageContext,
    model: Any,
    examples: Sequence[SFTExample],
    settings: SFTSettings | None = None,
) -> Trained:
    """SFT ``model`` in place on ``examples`` (default settings: ``agent.sft`` with the stage's
    seed), logging TRL's steps and a summary under ``<stage>/sft`` and counting the trained
    tokens into the budget. No examples is not an error: the model is left as it is, logged."""
    settings = settings or ctx.setup.stage_settings(SFTSettings, ctx.seed)
    if not examples:
        _say(ctx.settings.progress, f"[{ctx.setup.agent}] {ctx.name}: no examples, SFT skipped")
    trained = sft(
        model, ctx.tokenizer, examples, settings, on_log=ctx.run.metrics.log_fn(f"{ctx.name}/sft")
    )
    ctx.budget.add_training(ctx.name, trained.metrics)
    ctx.log("sft", trained.metrics.steps, _train_metrics(trained.metrics))
    return trained


def train_dpo(
    ctx: StageContext,
    model: Any,
    pairs: Sequence[PreferencePair],
    settings: DPOSettings | None = None,
    *,
    ref_model: Any | None = None,
) -> Trained:
    """DPO ``model`` in place on ``pairs`` (reference: ``ref_model``, or a frozen copy of
    ``model`` as it is now), logged under ``<stage>/dpo`` and counted into the budget."""
    settings = settings or ctx.setup.stage_settings(DPOSettings, ctx.seed)
    if not pairs:
        _say(ctx.settings.progress, f"[{ctx.setup.agent}] {ctx.name}: no pairs, DPO skipped")
    trained = dpo(
        model,
        ref_model,
        ctx.tokenizer,
        pairs,
        settings,
        on_log=ctx.run.metrics.log_fn(f"{ctx.name}/dpo"),
    )
    ctx.budget.add_training(ctx.name, trained.metrics)
    ctx.log("dpo", trained.metrics.steps, _train_metrics(trained.metrics))
    return trained


def train_info(prefix: str, metrics: TrainMetrics) -> dict[str, Scalar]:
    """A training step's numbers for stage info (``<prefix>_examples``, ``<prefix>_steps``...)."""
    return {
        f"{prefix}_examples": metrics.examples,
        f"{prefix}_steps": metrics.steps,
        f"{prefix}_loss_first": metrics.loss_first,
        f"{prefix}_loss_last": metrics.loss_last,
    }
