"""Reproduce the paper's Table 1 claim at a scale this machine can run: BRiTE against rejection
sampling (RS), STaR, SFT on human rationales, iterative DPO and the untrained base model, for
the same model, the same training problems and the same generation budget, with confidence
intervals over problems *and* training seeds.

Why a script: every number in ``docs/RESULTS.md`` must come from one command that anyone can
rerun. It trains each method with ``brite-agent run``, evaluates every final model on the same
held-out problems with ``brite-agent eval``, builds the table with ``brite-agent compare``,
and renders the budgets, curves and a seed-and-problem bootstrap into the results document.

    python -m benchmarks.repro_table1                       # CPU scale: smollm2-135m on arith
    python -m benchmarks.repro_table1 --smoke               # model=tiny, every method, < 3 min
    python -m benchmarks.repro_table1 --preset gpu          # qwen2.5-0.5b, gsm8k + math500
    python -m benchmarks.repro_table1 --seeds 0 --methods base,rs,brite-t1 --out runs/pilot \
        --tag pilot --set eval_size=64                      # a pilot
    python -m benchmarks.repro_table1 --resume --out DIR    # continue a killed run
    python -m benchmarks.repro_table1 --report-only --out DIR   # re-render the results doc
    python -m benchmarks.repro_table1 --dry-run             # the plan, budgets and commands

Equal budget: every sampling method draws the same number of completions per training run
(``budget_samples``), all with the same ``max_new_tokens`` cap and temperature, so the
sampled-token budget is capped at ``budget_samples * max_new_tokens`` for each; the tokens
actually sampled (from each run's ``summary.json``) are reported beside it. SFT on human
rationales samples nothing; it trains ``iterations`` passes over the same problems.

Format warm-up (``warmup_size`` > 0, the CPU preset): every method of a seed starts from the
same model, a brief SFT on the human rationales of ``warmup_size`` *other* training problems
(drawn with seed + 1000). The paper starts from instruct models that already answer in the
task's format; a 135M model does not, and without the warm-up nearly every sample is cut at the
token cap, so "correct" means a lucky last number. "base" is then that warm-up model, evaluated
per seed, and every method's budget is its own (the warm-up is shared and not counted).

The results document keeps everything outside its generated block (the hand-written reading)
when it is rendered again.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import os
import platform
import re
import shlex
import shutil
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.errors import AgentError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = REPO_ROOT / "docs" / "RESULTS.md"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"
"""Offline benchmark data (GSM8K, MATH, ...) when BRITE_DATA_DIR is unset."""

METHODS = ("base", "sft", "rs", "star", "dpo", "brite-t1", "brite-t2", "brite-dpo")
"""Every method, in table order."""
REFERENCES = ("base", "sft", "rs", "star", "dpo", "brite-t1")
"""Methods every other method is compared with (paired differences)."""
DESCRIPTIONS = {
    "base": "the starting model, no training (with a warm-up: the warm-up model)",
    "sft": "SFT on the dataset's human rationales (no sampling)",
    "rs": "rejection sampling / ReST-EM: k samples from θ, keep the correct ones, SFT",
    "star": "STaR: RS plus rationalization (hinted resampling of unsolved problems)",
    "dpo": "iterative DPO on (correct, incorrect) pairs sampled from θ",
    "brite-t1": "BRiTE, T=1: ψ-update (PPO, hinted) then θ-update (SFT on ψ's correct samples)",
    "brite-t2": "BRiTE, T=2 iterations of the same",
    "brite-dpo": "BRiTE-DPO: ψ-update then a DPO θ-update on ψ's (correct, incorrect) pairs",
}
COMPARISONS = (
    ("brite-t1", "rs"),
    ("brite-t2", "rs"),
    ("brite-t1", "sft"),
    ("brite-t2", "sft"),
    ("brite-t1", "star"),
    ("brite-dpo", "dpo"),
    ("brite-t2", "brite-t1"),
)
"""The paper's claims, as (method, against): BRiTE beats RS and STaR at equal cost, matches or
beats SFT on human rationales, BRiTE-DPO beats iterative DPO, more iterations help."""
BLOCK_START = "<!-- repro_table1:{tag}:start (generated: edit outside this block) -->"
BLOCK_END = "<!-- repro_table1:{tag}:end -->"
LEVEL = 0.95


class ReproError(AgentError):
    """The reproduction cannot run or report as asked; the message names the fix."""


# -- the plan ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Track:
    """One training env and the held-out envs its models are evaluated on (the GPU scale
    trains on MATH and evaluates on MATH-500). ``overrides`` (Hydra ``key=value``) apply to
    the training run and to every eval, e.g. Arith's difficulty levels."""

    name: str
    train_env: str
    eval_envs: tuple[str, ...]
    overrides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(
                f"Track.name must be a plain name (letters, digits, -_), got {self.name!r}"
            )
        if not self.eval_envs:
            raise ValueError(f"Track {self.name!r} needs at least one eval env, got none")
        bad = [o for o in self.overrides if "=" not in o]
        if bad:
            raise ValueError(f"Track {self.name!r}: overrides must be key=value, got {bad}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "train_env": self.train_env,
            "eval_envs": list(self.eval_envs),
            "overrides": list(self.overrides),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Track:
        return cls(
            name=str(data["name"]),
            train_env=str(data["train_env"]),
            eval_envs=tuple(data["eval_envs"]),
            overrides=tuple(data.get("overrides", ())),
        )


@dataclass(frozen=True)
class Plan:
    """Everything the reproduction runs. Budgets are derived from it (:func:`method_spec`) and
    checked here, so a plan that cannot give every method the same budget fails at once."""

    name: str
    model: str
    tracks: tuple[Track, ...]
    methods: tuple[str, ...] = METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    train_size: int = 32
    """Training problems per run (drawn per seed, the same for every method of that seed)."""
    eval_size: int | None = 128
    """Held-out problems (the first ``eval_size`` of each eval env's eval split; None: all)."""
    budget_samples: int = 256
    """Sampled completions per training run, the same for every sampling method."""
    iterations: int = 2
    """Outer iterations of RS, STaR, DPO, SFT, and BRiTE-DPO."""
    max_new_tokens: int = 64
    """Cap on every sampled completion (training samples and PPO rollouts)."""
    temperature: float = 0.7
    finished_only: bool = True
    """Train only on samples that ended with the stop token (``agent.finished_only``)."""
    batch_size: int = 32
    psi_updates: int = 8
    """PPO updates of the ψ-update per training run (split evenly over BRiTE's T iterations)."""
    psi_episodes: int = 8
    psi_reward: str = "both"
    psi_beta: float = 0.05
    hint: str = ""
    """BRiTE's ψ-prompt (also STaR's rationalization prompt), with ``{question}`` and
    ``{reference}`` slots; empty: the task's default (``brite_envs.task.PromptTemplate``)."""
    hint_k: int = 1
    """STaR: hinted samples per unsolved problem (STaR's k is RS's k minus this, so that its
    budget never exceeds RS's even when every problem needs rationalizing)."""
    dpo_pairs: int = 2
    """(correct, incorrect) pairs per problem and iteration, for DPO and BRiTE-DPO."""
    sft_lr: float = 1.0e-4
    sft_epochs: int = 1
    dpo_lr: float = 5.0e-6
    dpo_beta: float = 0.1
    eval_max_new_tokens: int = 96
    eval_batch_size: int = 32
    backend: str = "hf"
    """Eval backend: hf or vllm (training always samples with HF)."""
    progress: bool = True
    keep_stage_models: bool = False
    """Keep every stage checkpoint's weights (about 0.5 GB each for SmolLM2-135M); by default
    only ``final/`` is kept once a run is complete, so 3 seeds x 7 methods fit on one disk."""
    extra: tuple[str, ...] = ()
    """Hydra overrides added to every training run (keys every agent config has)."""
    warmup_size: int = 0
    """Human-rationale problems of the shared format warm-up every method starts from (drawn
    with seed + WARMUP_SEED_OFFSET, so other problems than the training ones); 0: none, every
    method starts from ``model`` itself."""
    warmup_iterations: int = 2
    """SFT passes of the warm-up."""
    warmup_lr: float = 1.0e-4
    """SFT learning rate of the warm-up (it must teach a format in a few steps; the methods'
    own SFT, ``sft_lr``, refines a model that already has it)."""

    def __post_init__(self) -> None:
        if not self.tracks:
            raise ValueError("Plan.tracks must name at least one track, got none")
        names = [t.name for t in self.tracks]
        if len(set(names)) != len(names):
            raise ValueError(f"Plan.tracks has duplicate names: {names}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"Plan.methods must be drawn from {METHODS}, got {self.methods!r}")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"Plan.methods names a method twice: {self.methods!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"Plan.seeds must be distinct, at least one, got {self.seeds!r}")
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise ValueError(f"Plan.seeds must be ints >= 0, got {self.seeds!r}")
        for key in (
            "train_size",
            "budget_samples",
            "iterations",
            "max_new_tokens",
            "batch_size",
            "psi_updates",
            "psi_episodes",
            "hint_k",
            "dpo_pairs",
            "sft_epochs",
            "eval_max_new_tokens",
            "eval_batch_size",
            "warmup_iterations",
        ):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Plan.{key} must be an int >= 1, got {value!r}")
        w = self.warmup_size
        if isinstance(w, bool) or not isinstance(w, int) or w < 0:
            raise ValueError(f"Plan.warmup_size must be an int >= 0 (0: no warm-up), got {w!r}")
        if self.eval_size is not None and (
            isinstance(self.eval_size, bool) or not isinstance(self.eval_size, int)
        ):
            raise ValueError(f"Plan.eval_size must be an int >= 1 or None, got {self.eval_size!r}")
        if self.eval_size is not None and self.eval_size < 1:
            raise ValueError(f"Plan.eval_size must be >= 1 or None, got {self.eval_size}")
        for key in ("temperature", "psi_beta", "sft_lr", "dpo_lr", "dpo_beta", "warmup_lr"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"Plan.{key} must be a number > 0, got {value!r}")
        if self.psi_reward not in ("verifier", "answer_logprob", "both"):
            raise ValueError(
                f"Plan.psi_reward must be verifier, answer_logprob or both, got {self.psi_reward!r}"
            )
        if self.hint and ("{question}" not in self.hint or "{reference}" not in self.hint):
            raise ValueError(
                f"Plan.hint must contain {{question}} and {{reference}}, got {self.hint!r}"
            )
        if "${" in self.hint:
            raise ValueError(
                f"Plan.hint must not contain '${{' (an OmegaConf interpolation), got {self.hint!r}"
            )
        if self.warmup_size and "base" not in self.methods:
            raise ValueError(
                "Plan.warmup_size > 0 needs the 'base' method: it trains and evaluates the "
                "warm-up model every other method starts from; add base to --methods or set "
                "warmup_size=0"
            )
        if self.backend not in ("hf", "vllm"):
            raise ValueError(f"Plan.backend must be hf or vllm, got {self.backend!r}")
        for method in self.methods:
            method_spec(self, method)  # raises ValueError naming the plan field to change

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["tracks"] = [t.to_dict() for t in self.tracks]
        for key in ("methods", "seeds", "extra"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"plan has unknown key(s) {unknown}; known: {sorted(known)}")
        values = dict(data)
        values["tracks"] = tuple(Track.from_dict(t) for t in data["tracks"])
        for key in ("methods", "seeds", "extra"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    @property
    def token_cap(self) -> int:
        """The sampled-token budget every sampling method is capped at."""
        return self.budget_samples * self.max_new_tokens

    @property
    def base_seeds(self) -> tuple[int | None, ...]:
        """Seeds the base model is evaluated for: one seed-independent eval, or one per seed
        when each seed has its own warm-up model."""
        return self.seeds if self.warmup_size else (None,)

    @property
    def eval_envs(self) -> tuple[str, ...]:
        out: list[str] = []
        for t in self.tracks:
            out += [e for e in t.eval_envs if e not in out]
        return tuple(out)


SETTABLE = tuple(
    f.name
    for f in dataclasses.fields(Plan)
    if f.name not in ("name", "tracks", "methods", "seeds", "extra")
)
"""Plan fields ``--set key=value`` may change."""


# -- methods and budgets -----------------------------------------------------------------------
@dataclass(frozen=True)
class MethodSpec:
    """How one method runs under the plan: its agent, its Hydra overrides and the samples it
    may draw (the nominal budget; STaR's is an upper bound, reached only if every problem
    needs rationalizing)."""

    method: str
    agent: str | None
    """The ``brite-agent run agent=`` (None: the base model, nothing to train)."""
    overrides: tuple[str, ...]
    nominal_samples: int
    detail: str
    """The budget split in words, for the budget table."""

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "overrides": list(self.overrides)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MethodSpec:
        return cls(
            method=str(data["method"]),
            agent=data["agent"],
            overrides=tuple(data["overrides"]),
            nominal_samples=int(data["nominal_samples"]),
            detail=str(data["detail"]),
        )


def _exact(total: int, parts: int, what: str, fix: str) -> int:
    if parts < 1 or total % parts:
        raise ValueError(f"{what}: {total} is not divisible by {parts}; {fix}")
    return total // parts


def _brite_k(plan: Plan, iterations: int, method: str) -> tuple[int, int]:
    """(PPO updates per iteration, θ-samples k per problem) so that ψ's rollouts plus θ's
    samples over ``iterations`` use exactly ``budget_samples``."""
    fix = "change budget_samples, psi_updates, psi_episodes or train_size"
    updates = _exact(
        plan.psi_updates, iterations, f"{method}: psi_updates over T={iterations}", fix
    )
    per_iter = _exact(plan.budget_samples, iterations, f"{method}: budget_samples over T", fix)
    theta = per_iter - updates * plan.psi_episodes
    if theta < plan.train_size:
        raise ValueError(
            f"{method}: ψ uses {updates * plan.psi_episodes} of the {per_iter} samples per "
            f"iteration, leaving {theta} for θ's {plan.train_size} problems (need k >= 1); {fix}"
        )
    k = _exact(theta, plan.train_size, f"{method}: θ-samples per iteration over train_size", fix)
    return updates, k


WARMUP_SEED_OFFSET = 1000
"""The warm-up of seed s draws its problems with seed s + this (other problems than s's)."""


def hydra_quoted(text: str) -> str:
    """``text`` as a quoted Hydra override value: Hydra unescapes a backslash only before a
    quote or at the end, so only those are doubled."""
    return '"' + re.sub(r'(\\*)("|$)', lambda m: m[1] * 2 + ('\\"' if m[2] else ""), text) + '"'


def _hint_overrides(plan: Plan) -> tuple[str, ...]:
    return (f"+env.task_kwargs.template.hint={hydra_quoted(plan.hint)}",) if plan.hint else ()


def method_spec(plan: Plan, method: str) -> MethodSpec:
    """The agent, overrides and nominal sample budget of ``method`` under ``plan``. Raises
    ValueError naming the plan field to change when the budget cannot be matched exactly."""
    n, i, s = plan.train_size, plan.iterations, plan.budget_samples
    fix = "change budget_samples, iterations or train_size"
    sampling = (
        f"agent.temperature={plan.temperature}",
        f"agent.max_new_tokens={plan.max_new_tokens}",
        f"agent.finished_only={str(plan.finished_only).lower()}",
        f"agent.batch_size={plan.batch_size}",
    )
    sft = (f"agent.sft.learning_rate={plan.sft_lr}", f"agent.sft.epochs={plan.sft_epochs}")
    dpo = (f"agent.dpo.learning_rate={plan.dpo_lr}", f"agent.dpo.beta={plan.dpo_beta}")
    if method == "base" and plan.warmup_size:
        return MethodSpec(
            method,
            "sft",
            (
                f"agent.iterations={plan.warmup_iterations}",
                f"agent.sft.learning_rate={plan.warmup_lr}",
                f"agent.sft.epochs={plan.sft_epochs}",
            ),
            0,
            f"format warm-up: {plan.warmup_iterations} passes over {plan.warmup_size} other "
            "problems' human rationales, shared by every method",
        )
    if method == "base":
        return MethodSpec(method, None, (), 0, "no training")
    if method == "sft":
        return MethodSpec(
            method,
            "sft",
            (f"agent.iterations={i}", *sft),
            0,
            f"{i} passes over {n} human rationales, no sampling",
        )
    per_iter = _exact(s, i, f"{method}: budget_samples over iterations", fix)
    k_rs = _exact(per_iter, n, f"{method}: samples per iteration over train_size", fix)
    if method == "rs":
        return MethodSpec(
            method,
            "rs",
            (f"agent.iterations={i}", f"agent.k={k_rs}", *sampling, *sft),
            i * n * k_rs,
            f"{i} iterations x {n} problems x k={k_rs}",
        )
    if method == "star":
        k = k_rs - plan.hint_k
        if k < 1:
            raise ValueError(
                f"star: RS's k={k_rs} leaves no direct sample after hint_k={plan.hint_k}; "
                "raise budget_samples or lower hint_k"
            )
        return MethodSpec(
            method,
            "star",
            (
                f"agent.iterations={i}",
                f"agent.k={k}",
                f"agent.hint_k={plan.hint_k}",
                *sampling,
                *sft,
                *_hint_overrides(plan),
            ),
            i * n * (k + plan.hint_k),
            f"{i} iterations x {n} problems x (k={k} + at most {plan.hint_k} hinted)",
        )
    if method == "dpo":
        if k_rs < 2:
            raise ValueError(f"dpo: k={k_rs} < 2 gives no (correct, incorrect) pairs; {fix}")
        return MethodSpec(
            method,
            "dpo",
            (
                f"agent.iterations={i}",
                f"agent.k={k_rs}",
                f"agent.pairs_per_prompt={plan.dpo_pairs}",
                *sampling,
                *dpo,
            ),
            i * n * k_rs,
            f"{i} iterations x {n} problems x k={k_rs}",
        )
    t = {"brite-t1": 1, "brite-t2": 2, "brite-dpo": i}[method]
    updates, k = _brite_k(plan, t, method)
    theta = "dpo" if method == "brite-dpo" else "sft"
    if theta == "dpo" and k < 2:
        raise ValueError(f"{method}: θ's k={k} < 2 gives no pairs; raise budget_samples")
    overrides = (
        f"agent.iterations={t}",
        f"agent.k={k}",
        f"agent.psi.updates={updates}",
        f"agent.psi.episodes={plan.psi_episodes}",
        f"agent.psi.reward={plan.psi_reward}",
        f"agent.psi.beta={plan.psi_beta}",
        f"agent.theta.method={theta}",
        f"agent.theta.pairs_per_prompt={plan.dpo_pairs}",
        *sampling,
        *sft,
        *dpo,
        *_hint_overrides(plan),
    )
    psi = updates * plan.psi_episodes
    return MethodSpec(
        method,
        "brite",
        overrides,
        t * (psi + n * k),
        f"T={t} x (ψ {updates} PPO updates x {plan.psi_episodes} episodes"
        f" + θ {n} problems x k={k})",
    )


# -- presets ----------------------------------------------------------------------------------
ARITH = Track("arith", "arith", ("arith",), ("env.task_kwargs.levels=[1]",))

PRESETS: dict[str, Plan] = {
    # SmolLM2-135M on Arith level 1, every method from a shared format warm-up (SFT on 16 other
    # problems' rationales): without it nearly every sample is cut at the cap (pilot in
    # docs/RESULTS.md).
    # SFT at 1e-4 after the warm-up cost 20-45 points (greedy: 66% -> 44% SFT, 33% RS, 20%
    # STaR on seed 0); at 1e-5 SFT gains instead (71%).
    "cpu": Plan(
        name="cpu",
        model="smollm2-135m",
        tracks=(ARITH,),
        warmup_size=16,
        warmup_lr=1.0e-4,
        sft_lr=1.0e-5,
    ),
    "gpu": Plan(
        name="gpu",
        model="qwen2.5-0.5b-instruct",
        tracks=(
            Track("gsm8k", "gsm8k", ("gsm8k",)),
            Track("math", "math", ("math500",)),
        ),
        train_size=256,
        eval_size=None,
        budget_samples=2048,
        iterations=2,
        max_new_tokens=512,
        temperature=0.7,
        batch_size=64,
        psi_updates=32,
        psi_episodes=16,
        psi_reward="both",
        sft_lr=1.0e-5,
        dpo_lr=5.0e-7,
        eval_max_new_tokens=1024,
        eval_batch_size=64,
        backend="vllm",
    ),
    "smoke": Plan(
        name="smoke",
        model="tiny",
        tracks=(ARITH,),
        seeds=(0,),
        train_size=4,
        eval_size=4,
        budget_samples=24,
        iterations=2,
        max_new_tokens=8,
        temperature=1.0,
        batch_size=16,
        psi_updates=2,
        psi_episodes=4,
        psi_reward="both",
        eval_max_new_tokens=8,
        eval_batch_size=16,
        progress=False,
        warmup_size=2,
        warmup_iterations=1,
        # A random tiny model never reaches the stop id in 8 tokens: train on cut samples too.
        finished_only=False,
    ),
}


def _override_key(override: str) -> str:
    """The config key a Hydra ``[+~]key=value`` override sets."""
    return override.partition("=")[0].lstrip("+~")


def apply_track_overrides(plan: Plan, items: Sequence[str]) -> Plan:
    """``plan`` with each ``key=value`` Hydra override put on every track (training and
    evals), replacing the track's own override of that key: ``env.task_kwargs.levels=[2]``
    runs the Arith track on level 2."""
    tracks = list(plan.tracks)
    for item in items:
        key = _override_key(item)
        if "=" not in item or not key or key != key.strip():
            raise ReproError(
                f"--track-override {item!r}: expected key=value, e.g. 'env.task_kwargs.levels=[2]'"
            )
        tracks = [
            dataclasses.replace(
                t, overrides=(*(o for o in t.overrides if _override_key(o) != key), item)
            )
            for t in tracks
        ]
    try:
        return dataclasses.replace(plan, tracks=tuple(tracks))
    except ValueError as exc:
        raise ReproError(f"--track-override: {exc}") from None


def apply_sets(plan: Plan, sets: Sequence[str]) -> Plan:
    """``plan`` with ``--set key=value`` changes (scalar fields only), typed like the field."""
    types = {f.name: type(getattr(plan, f.name)) for f in dataclasses.fields(plan)}
    changes: dict[str, Any] = {}
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep or key not in SETTABLE:
            raise ReproError(
                f"--set {item!r}: expected key=value with key one of {', '.join(SETTABLE)}"
            )
        kind = types[key]
        try:
            if text.lower() in ("none", "null") and key == "eval_size":
                changes[key] = None
            elif kind is bool:
                if text.lower() not in ("true", "false"):
                    raise ValueError(text)
                changes[key] = text.lower() == "true"
            elif kind is int or key == "eval_size":
                changes[key] = int(text)
            elif kind is float:
                changes[key] = float(text)
            else:
                changes[key] = text
        except ValueError:
            raise ReproError(f"--set {item!r}: {text!r} is not a {kind.__name__}") from None
    try:
        return dataclasses.replace(plan, **changes)
    except ValueError as exc:
        raise ReproError(f"--set {' '.join(sets)}: {exc}") from None


# -- layout and commands ----------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """Where everything goes under ``--out``."""

    out: Path

    def run_dir(self, track: str, method: str, seed: int) -> Path:
        return self.out / "runs" / track / f"{method}-s{seed}"

    def eval_dir(self, track: str, method: str, seed: int | None) -> Path:
        name = method if seed is None else f"{method}-s{seed}"
        return self.out / "evals" / track / name

    def pooled_dir(self, label: str) -> Path:
        return self.out / "pooled" / label

    @property
    def plan_json(self) -> Path:
        return self.out / "plan.json"

    @property
    def timings(self) -> Path:
        return self.out / "timings.jsonl"

    @property
    def summary(self) -> Path:
        return self.out / "summary.json"

    @property
    def command(self) -> Path:
        return self.out / "command.txt"

    @property
    def plots(self) -> Path:
        return self.out / "plots"


def train_command(
    plan: Plan, track: Track, spec: MethodSpec, seed: int, run_dir: Path
) -> list[str]:
    """``brite-agent run`` arguments of one training run (held-out eval is left to eval)."""
    if spec.agent is None:
        raise ValueError(f"method {spec.method!r} has nothing to train")
    warmup = spec.method == "base"  # base has an agent only when it is the warm-up
    model = [f"model={plan.model}"]
    if plan.warmup_size and not warmup:
        start = run_dir.parent / f"base-s{seed}" / "final"
        model += _model_path(plan, start, "warmup")
    return [
        "run",
        f"agent={spec.agent}",
        f"env={track.train_env}",
        *model,
        f"seed={seed + WARMUP_SEED_OFFSET if warmup else seed}",
        f"out={run_dir}",
        f"env.train_size={plan.warmup_size if warmup else plan.train_size}",
        "agent.eval.before=false",
        "agent.eval.after=false",
        f"agent.progress={str(plan.progress).lower()}",
        *track.overrides,
        *spec.overrides,
        *plan.extra,
    ]


def eval_command(
    plan: Plan, track: Track, label: str, seed: int, eval_dir: Path, model_dir: Path | None
) -> list[str]:
    """``brite-agent eval`` arguments: greedy, on the first ``eval_size`` held-out problems of
    every eval env of ``track``; ``model_dir`` is a trained run's ``final/`` (None: base)."""
    model = [f"model={plan.model}"]
    if model_dir is not None:
        model += _model_path(plan, model_dir, label)
    size = "null" if plan.eval_size is None else str(plan.eval_size)
    return [
        "eval",
        f"env=[{','.join(track.eval_envs)}]",
        *model,
        f"out={eval_dir}",
        f"label={label}",
        f"env.eval_size={size}",
        "n=1",
        "temperature=0",
        f"max_new_tokens={plan.eval_max_new_tokens}",
        f"batch_size={plan.eval_batch_size}",
        f"backend={plan.backend}",
        f"seed={seed}",
        f"agent.progress={str(plan.progress).lower()}",
        *track.overrides,
    ]


def _model_path(plan: Plan, model_dir: Path, label: str) -> list[str]:
    """Overrides that load a trained checkpoint directory instead of ``plan.model``'s weights."""
    return [
        "model.source=path",
        f"model.name_or_path={model_dir}",
        "model.gguf_file=null",
        f"model.name={plan.model}-{label}",
    ]


def shell(args: Sequence[str]) -> str:
    return "brite-agent " + shlex.join(args)


def brite_agent(args: Sequence[str], *, subprocess: bool = False) -> None:
    """Run ``brite-agent ARGS`` in this process, or in a fresh Python process (``subprocess``:
    each job's memory, threads and global state go away with it, which a two-hour run of 40
    jobs wants); a non-zero exit is a ReproError."""
    if subprocess:
        import subprocess as sp

        code = sp.run([sys.executable, "-m", "agents.cli", *args], check=False).returncode
    else:
        from agents.cli import main

        code = main(list(args))
    if code != 0:
        raise ReproError(
            f"`{shell(args)}` exited with {code} (its error is printed above); fix it and "
            "rerun this script with --resume to continue where it stopped"
        )


# -- jobs ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One method on one track for one seed (base: one seed-independent greedy eval)."""

    track: Track
    spec: MethodSpec
    seed: int | None

    @property
    def key(self) -> str:
        seed = "" if self.seed is None else f"-s{self.seed}"
        return f"{self.track.name}/{self.spec.method}{seed}"

    @property
    def label(self) -> str:
        return self.spec.method if self.seed is None else f"{self.spec.method}-s{self.seed}"


def plan_jobs(plan: Plan) -> list[Job]:
    """Base evals first, then seed by seed (a killed run has whole seeds done), each method
    in table order."""
    specs = {m: method_spec(plan, m) for m in plan.methods}
    jobs = []
    if not plan.warmup_size and "base" in specs:
        jobs = [Job(t, specs["base"], None) for t in plan.tracks]
    for seed in plan.seeds:
        for method in plan.methods:
            if method != "base" or plan.warmup_size:
                jobs += [Job(t, specs[method], seed) for t in plan.tracks]
    return jobs


def job_commands(plan: Plan, layout: Layout, job: Job) -> tuple[list[str] | None, list[str]]:
    seed = 0 if job.seed is None else job.seed
    eval_dir = layout.eval_dir(job.track.name, job.spec.method, job.seed)
    if job.spec.agent is None:
        return None, eval_command(plan, job.track, job.label, seed, eval_dir, None)
    run_dir = layout.run_dir(job.track.name, job.spec.method, seed)
    train = train_command(plan, job.track, job.spec, seed, run_dir)
    return train, eval_command(plan, job.track, job.label, seed, eval_dir, run_dir / "final")


def _trained(run_dir: Path) -> bool:
    return (run_dir / "summary.json").is_file() and (run_dir / "final").is_dir()


def _evaluated(eval_dir: Path, envs: Sequence[str]) -> bool:
    return (eval_dir / "run.json").is_file() and all(
        (eval_dir / e / "metrics.json").is_file() for e in envs
    )


def prune_stage_models(run_dir: Path) -> int:
    """Delete the weights of a finished run's stage checkpoints (their metadata, budget and
    ``final/`` stay); returns how many were deleted. Only ever called on complete runs, which
    are never resumed, so nothing needs them again."""
    if not _trained(run_dir):
        raise ReproError(f"{run_dir} is not a finished run; its checkpoints are still needed")
    pruned = 0
    for done in sorted((run_dir / "stages").rglob("DONE")):
        model = done.parent / "model"
        if model.is_dir():
            shutil.rmtree(model)
            pruned += 1
    return pruned


def _record_time(layout: Layout, job: Job, step: str, seconds: float) -> None:
    with layout.timings.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"job": job.key, "step": step, "seconds": round(seconds, 2)}) + "\n")


def execute(plan: Plan, layout: Layout, *, resume: bool, subprocess: bool = False) -> None:
    """Train and evaluate every job; finished ones are skipped with ``resume``."""
    from tqdm.auto import tqdm

    jobs = plan_jobs(plan)
    start = time.monotonic()
    bar = tqdm(total=len(jobs), desc="repro_table1", unit="job", position=0, file=sys.stdout)
    try:
        for number, job in enumerate(jobs, 1):
            train, evaluate = job_commands(plan, layout, job)
            seed = 0 if job.seed is None else job.seed
            run_dir = layout.run_dir(job.track.name, job.spec.method, seed)
            eval_dir = layout.eval_dir(job.track.name, job.spec.method, job.seed)
            if train is not None and not _trained(run_dir):
                if run_dir.exists() and not resume:
                    raise ReproError(f"{run_dir} holds an unfinished run; pass --resume")
                bar.write(f"[{number}/{len(jobs)}] {job.key}: training\n  {shell(train)}")
                t0 = time.monotonic()
                brite_agent([*train, *(["resume=true"] if resume else [])], subprocess=subprocess)
                _record_time(layout, job, "train", time.monotonic() - t0)
                gc.collect()
            if train is not None and not plan.keep_stage_models:
                prune_stage_models(run_dir)
            if not _evaluated(eval_dir, job.track.eval_envs):
                bar.write(f"[{number}/{len(jobs)}] {job.key}: evaluating\n  {shell(evaluate)}")
                t0 = time.monotonic()
                brite_agent(evaluate, subprocess=subprocess)
                _record_time(layout, job, "eval", time.monotonic() - t0)
                gc.collect()
            bar.update(1)
            done = time.monotonic() - start
            bar.write(f"[{number}/{len(jobs)}] {job.key}: done ({done / 60:.1f} min so far)")
    finally:
        bar.close()


# -- reading results ------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobRecord:
    """What one job produced: its budget, wall time, held-out accuracy and curves."""

    track: str
    method: str
    seed: int | None
    train_command: str | None
    eval_command: str
    samples: int
    generated_tokens: int
    trained_completion_tokens: int
    trained_total_tokens: int
    train_s: float | None
    eval_s: float | None
    accuracy: dict[str, float]
    """Held-out accuracy per eval env."""
    finished: dict[str, float]
    """Fraction of held-out completions that ended with EOS, per eval env (the rest hit the
    length cap and are graded on whatever number they reached)."""
    stated: dict[str, float]
    """Held-out accuracy when only a stated answer counts (``\\boxed{}``, "the answer is"):
    the same samples regraded with the verifier's ``strict`` option, per env whose verifier
    has one. The gap to ``accuracy`` is what the last-number fallback credits."""
    sample_accuracy: tuple[float, ...]
    """Accuracy of the training samples per sampling round (θ's samples for BRiTE)."""
    psi_reward: tuple[float, ...]
    """ψ's PPO reward per update (BRiTE), all iterations in order."""
    psi_verifier: tuple[float, ...]
    """The verifier's part of it: the fraction of ψ's rollouts reaching the reference."""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("sample_accuracy", "psi_reward", "psi_verifier"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRecord:
        values = dict(data)
        for key in ("sample_accuracy", "psi_reward", "psi_verifier"):
            values[key] = tuple(float(x) for x in data[key])
        for key in ("accuracy", "finished", "stated"):
            values[key] = {str(k): float(v) for k, v in data[key].items()}
        return cls(**values)


def _timings(layout: Layout) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    if not layout.timings.is_file():
        return out
    for number, line in enumerate(layout.timings.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key = (str(row["job"]), str(row["step"]))
            out[key] = out.get(key, 0.0) + float(row["seconds"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ReproError(
                f"{layout.timings}:{number}: malformed timing line ({exc}); fix or delete it"
            ) from None
    return out


def _curves(run_dir: Path) -> tuple[list[float], list[float], list[float]]:
    """(training-sample accuracy per round, ψ reward per update, ψ verifier score per update)
    from a run's metrics.jsonl, in the order logged."""
    from agents.runs import iter_metrics

    sample, reward, verifier = [], [], []
    for row in iter_metrics(run_dir):
        stage = str(row.get("stage", ""))
        if stage.endswith("/sample") and row.get("accuracy") is not None:
            sample.append(float(row["accuracy"]))
        elif stage.endswith("/psi/psi") and row.get("score_mean") is not None:
            reward.append(float(row["score_mean"]))
            verifier.append(float(row.get("verifier_score_mean") or 0.0))
    return sample, reward, verifier


STRICT_VERIFIERS = ("exact", "math", "gsm8k")
"""Verifiers with a ``strict`` option (no last-number guess)."""


def stated_accuracy(eval_dir: Path, records: Mapping[str, Sequence[Any]]) -> dict[str, float]:
    """Accuracy per env of ``records`` regraded with ``strict=True`` (envs whose verifier has
    no such option are left out). The task is rebuilt from the eval's run.json (split and
    task arguments), so the regrade sees exactly the problems the eval graded."""
    import brite_envs

    info = json.loads((eval_dir / "run.json").read_text(encoding="utf-8"))
    selections = {e["name"]: e for e in info.get("config", {}).get("envs", [])}
    out: dict[str, float] = {}
    for env, recs in records.items():
        sel = selections.get(env)
        if sel is None:
            raise ReproError(
                f"{eval_dir / 'run.json'} does not describe env {env!r}; rerun the eval"
            )
        kwargs = dict(sel.get("task_kwargs") or {})
        config = {**dict(kwargs.pop("verifier_config", None) or {}), "strict": True}
        task = brite_envs.make_task(env, split=sel["split"], **kwargs, verifier_config=config)
        if task.verifier_name not in STRICT_VERIFIERS:
            continue
        problems = [task[task.index_of(r.problem_id)] for r in recs]
        verdicts = task.grade_many(problems, [r.completion for r in recs])
        out[env] = float(np.mean([v.score for v in verdicts]))
    return out


def read_job(
    plan: Plan, layout: Layout, job: Job, times: Mapping[tuple[str, str], float]
) -> JobRecord:
    """The record of a finished job; ReproError naming what is missing otherwise."""
    from agents.compare import load_eval_dir
    from agents.metrics import problem_scores

    train, evaluate = job_commands(plan, layout, job)
    seed = 0 if job.seed is None else job.seed
    eval_dir = layout.eval_dir(job.track.name, job.spec.method, job.seed)
    if not _evaluated(eval_dir, job.track.eval_envs):
        raise ReproError(
            f"{job.key} has no finished eval in {eval_dir}; rerun with --resume to finish it"
        )
    run = load_eval_dir(eval_dir)
    accuracy = {
        env: float(np.mean(list(problem_scores(recs).values()))) for env, recs in run.envs.items()
    }
    finished = {
        env: float(np.mean([bool(r.finished) for r in recs])) for env, recs in run.envs.items()
    }
    stated = stated_accuracy(eval_dir, run.envs)
    counts = {"samples": 0, "generated_tokens": 0, "trained_completion_tokens": 0}
    counts["trained_total_tokens"] = 0
    curves: tuple[list[float], list[float], list[float]] = ([], [], [])
    if train is not None:
        run_dir = layout.run_dir(job.track.name, job.spec.method, seed)
        if not _trained(run_dir):
            raise ReproError(f"{job.key}: {run_dir} holds no finished run; rerun with --resume")
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        total = summary["budget"]["total"]
        counts = {key: int(total.get(key, 0)) for key in counts}
        curves = _curves(run_dir)
    return JobRecord(
        track=job.track.name,
        method=job.spec.method,
        seed=job.seed,
        train_command=None if train is None else shell(train),
        eval_command=shell(evaluate),
        train_s=times.get((job.key, "train")),
        eval_s=times.get((job.key, "eval")),
        accuracy=accuracy,
        finished=finished,
        stated=stated,
        sample_accuracy=tuple(curves[0]),
        psi_reward=tuple(curves[1]),
        psi_verifier=tuple(curves[2]),
        **counts,
    )


# -- statistics ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """A mean (fraction) with its 95% interval."""

    mean: float
    lo: float
    hi: float

    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Estimate:
        return cls(float(data["mean"]), float(data["lo"]), float(data["hi"]))


def score_matrix(records: Mapping[int, Mapping[str, float]]) -> tuple[list[str], np.ndarray]:
    """(problem ids, seeds x problems matrix) of per-problem scores; every seed must cover the
    same problems (they are the first ``eval_size`` of the same split)."""
    seeds = sorted(records)
    ids = sorted(records[seeds[0]])
    for s in seeds[1:]:
        if sorted(records[s]) != ids:
            raise ReproError(
                f"seed {s} was evaluated on other problems than seed {seeds[0]}; every eval of "
                "a method must use the same eval_size and split (rerun the evals)"
            )
    return ids, np.array([[records[s][p] for p in ids] for s in seeds], dtype=float)


def hierarchical_bootstrap(
    a: np.ndarray, b: np.ndarray | None = None, *, n_boot: int = 2000, seed: int = 0
) -> np.ndarray:
    """Bootstrap replicates of mean(a) (or mean(a) - mean(b), paired) resampling training
    seeds (rows) and problems (columns) with replacement, the same draws for ``a`` and ``b``.
    A one-row matrix (the base model: greedy, seed-independent) is broadcast over seeds.

    Why two levels: problems vary, and so do training runs; an interval over problems alone
    treats three training runs as if they were one and is too narrow."""
    if b is not None and b.shape[1] != a.shape[1]:
        raise ValueError(f"paired bootstrap needs the same problems, got {a.shape} and {b.shape}")
    rows = [a.shape[0]] if b is None else [a.shape[0], b.shape[0]]
    seeds = max(rows)
    if any(r not in (1, seeds) for r in rows):
        raise ValueError(f"paired bootstrap needs the same seeds (or one row), got {rows}")
    rng = np.random.default_rng(seed)
    problems = a.shape[1]
    seed_w = rng.multinomial(seeds, [1 / seeds] * seeds, size=n_boot) / seeds
    prob_w = rng.multinomial(problems, [1 / problems] * problems, size=n_boot) / problems

    def replicate(m: np.ndarray) -> np.ndarray:
        per_problem = m if m.shape[0] == 1 else seed_w @ m  # (n_boot or 1, problems)
        return (per_problem * prob_w).sum(axis=1)

    reps = replicate(a)
    return reps if b is None else reps - replicate(b)


def estimate(reps: np.ndarray, point: float) -> Estimate:
    lo, hi = np.percentile(reps, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    return Estimate(float(point), float(lo), float(hi))


@dataclass(frozen=True)
class MethodResult:
    """One method on one eval env, over seeds: the accuracy, the per-seed accuracies, and
    paired differences to the reference methods."""

    method: str
    env: str
    seeds: int
    problems: int
    accuracy: Estimate
    per_seed: tuple[float, ...]
    vs: dict[str, Estimate]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "env": self.env,
            "seeds": self.seeds,
            "problems": self.problems,
            "accuracy": self.accuracy.to_dict(),
            "per_seed": list(self.per_seed),
            "vs": {k: v.to_dict() for k, v in self.vs.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MethodResult:
        return cls(
            method=str(data["method"]),
            env=str(data["env"]),
            seeds=int(data["seeds"]),
            problems=int(data["problems"]),
            accuracy=Estimate.from_dict(data["accuracy"]),
            per_seed=tuple(float(x) for x in data["per_seed"]),
            vs={k: Estimate.from_dict(v) for k, v in data["vs"].items()},
        )


def method_results(
    scores: Mapping[tuple[str, str], Mapping[int, Mapping[str, float]]],
    methods: Sequence[str],
    envs: Sequence[str],
    *,
    n_boot: int = 2000,
) -> list[MethodResult]:
    """``scores[(method, env)][seed][problem]`` → a result per (method, env), with paired
    seed-and-problem bootstrap differences to every reference method present."""
    matrices: dict[tuple[str, str], tuple[list[str], np.ndarray]] = {
        key: score_matrix(value) for key, value in scores.items()
    }
    results = []
    for env in envs:
        for method in methods:
            if (method, env) not in matrices:
                continue
            ids, m = matrices[(method, env)]
            vs: dict[str, Estimate] = {}
            for ref in REFERENCES:
                if ref == method or (ref, env) not in matrices:
                    continue
                ref_ids, r = matrices[(ref, env)]
                if ref_ids != ids:
                    raise ReproError(
                        f"{method} and {ref} were evaluated on different {env} problems; "
                        "rerun their evals with the same eval_size"
                    )
                if m.shape[0] != r.shape[0] and 1 not in (m.shape[0], r.shape[0]):
                    continue  # different seed sets (a partial run): no paired difference
                reps = hierarchical_bootstrap(m, r, n_boot=n_boot)
                vs[ref] = estimate(reps, float(m.mean() - r.mean()))
            results.append(
                MethodResult(
                    method=method,
                    env=env,
                    seeds=m.shape[0],
                    problems=m.shape[1],
                    accuracy=estimate(hierarchical_bootstrap(m, n_boot=n_boot), float(m.mean())),
                    per_seed=tuple(float(x) for x in m.mean(axis=1)),
                    vs=vs,
                )
            )
    return results


# -- pooled eval dirs and the compare tables --------------------------------------------------
def _write_eval_dir(out: Path, label: str, model: str, records: Mapping[str, list[Any]]) -> Path:
    """An eval directory in the layout ``brite-agent eval`` writes (run.json, per env
    samples.jsonl and metrics.json), so ``brite-agent compare`` reads it like any other."""
    from agents.metrics import compute_metrics

    if out.exists():
        shutil.rmtree(out)
    for env, recs in records.items():
        (out / env).mkdir(parents=True)
        with (out / env / "samples.jsonl").open("w", encoding="utf-8") as f:
            for r in recs:
                f.write(json.dumps(r.to_json()) + "\n")
        metrics = compute_metrics(recs).to_dict()
        (out / env / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    per_problem = [
        count for recs in records.values() for count in Counter(r.problem_id for r in recs).values()
    ]
    run = {
        "label": label,
        "model": model,
        "envs": list(records),
        "n": min(per_problem),
        "config": {"pooled_by": "benchmarks/repro_table1.py"},
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    return out


def pool_evals(plan: Plan, layout: Layout) -> tuple[list[Path], list[Path]]:
    """Write one eval dir per method with its seeds pooled as samples (sample_index = seed
    position; base: its one greedy eval), and one per (method, seed) merging the tracks.
    Returns (pooled dirs, per-seed dirs), base first."""
    from agents.compare import load_eval_dir

    pooled: list[Path] = []
    per_seed: list[Path] = []
    for method in plan.methods:
        seeds: list[int | None] = list(plan.base_seeds) if method == "base" else list(plan.seeds)
        merged: dict[str, list[Any]] = {}
        for position, seed in enumerate(seeds):
            one: dict[str, list[Any]] = {}
            for track in plan.tracks:
                run = load_eval_dir(layout.eval_dir(track.name, method, seed))
                for env, recs in run.envs.items():
                    one.setdefault(env, []).extend(recs)
                    merged.setdefault(env, []).extend(
                        dataclasses.replace(r, sample_index=position) for r in recs
                    )
            if seed is not None:
                label = f"{method}-s{seed}"
                per_seed.append(
                    _write_eval_dir(layout.pooled_dir(f"per-seed/{label}"), label, plan.model, one)
                )
        where = _write_eval_dir(layout.pooled_dir(method), method, plan.model, merged)
        pooled.append(where)
        if method == "base" and not plan.warmup_size:
            per_seed.insert(0, where)
    return pooled, per_seed


def run_compare(dirs: Sequence[Path], out: Path, baseline: str) -> str:
    """``brite-agent compare DIRS baseline=... out=...``; returns the Markdown table."""
    brite_agent(["compare", *map(str, dirs), f"baseline={baseline}", f"out={out}"])
    return (out / "compare.md").read_text(encoding="utf-8")


# -- plots -----------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_rewards(records: Sequence[JobRecord], out: Path) -> Path | None:
    """ψ's PPO reward (and the part that is the verifier) per update, per BRiTE method and
    seed; None when no BRiTE method ran."""
    brite = [r for r in records if r.psi_reward]
    if not brite:
        return None
    plt = _pyplot()
    methods = [m for m in METHODS if any(r.method == m for r in brite)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, method in enumerate(methods):
        for j, r in enumerate(x for x in brite if x.method == method):
            label = method if j == 0 else None
            xs = range(1, len(r.psi_reward) + 1)
            axes[0].plot(xs, r.psi_reward, color=colors[i % len(colors)], alpha=0.8, label=label)
            axes[1].plot(xs, r.psi_verifier, color=colors[i % len(colors)], alpha=0.8, label=label)
    axes[0].set_title("ψ reward per PPO update (one line per seed)")
    axes[1].set_title("ψ rollouts reaching the reference (verifier)")
    for ax in axes:
        ax.set_xlabel("PPO update (all iterations)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "psi_reward.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sample_accuracy(records: Sequence[JobRecord], out: Path) -> Path | None:
    """Accuracy of the training samples per sampling round (the learning curve each method
    sees while it trains), mean over seeds."""
    rows = [r for r in records if r.sample_accuracy]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for method in METHODS:
        curves = [r.sample_accuracy for r in rows if r.method == method]
        if not curves:
            continue
        width = min(len(c) for c in curves)
        mean = np.mean([c[:width] for c in curves], axis=0)
        ax.plot(range(1, width + 1), 100 * mean, marker="o", label=method)
    rounds = max(len(r.sample_accuracy) for r in rows)
    ax.set_xticks(range(1, rounds + 1))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("sampling round (iteration)")
    ax.set_ylabel("training samples correct (%)")
    ax.set_title("Training-sample accuracy per round (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "sample_accuracy.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_accuracy(results: Sequence[MethodResult], out: Path) -> Path | None:
    """Held-out accuracy per method with the seed-and-problem 95% interval and each seed."""
    if not results:
        return None
    plt = _pyplot()
    envs = list(dict.fromkeys(r.env for r in results))
    fig, axes = plt.subplots(1, len(envs), figsize=(1.2 + 5.5 * len(envs), 3.8), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        rows = [r for r in results if r.env == env]
        xs = np.arange(len(rows))
        means = [100 * r.accuracy.mean for r in rows]
        err = [
            [100 * (r.accuracy.mean - r.accuracy.lo) for r in rows],
            [100 * (r.accuracy.hi - r.accuracy.mean) for r in rows],
        ]
        ax.bar(xs, means, yerr=err, capsize=4, color="#8fb8de", edgecolor="#33658a")
        for x, r in zip(xs, rows, strict=True):
            ax.scatter([x] * len(r.per_seed), [100 * s for s in r.per_seed], color="#33658a", s=12)
        ax.set_xticks(xs, [r.method for r in rows], rotation=30, ha="right")
        ax.set_ylabel("held-out accuracy (%)")
        ax.set_title(f"{env}: mean over seeds, 95% CI (seeds x problems); dots: seeds")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = out / "accuracy.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- the summary ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    """Everything the results document is rendered from (``summary.json``)."""

    tag: str
    plan: Plan
    specs: tuple[MethodSpec, ...]
    jobs: tuple[JobRecord, ...]
    results: tuple[MethodResult, ...]
    compare_pooled: str
    compare_per_seed: str
    plots: tuple[str, ...]
    """Plot file names (in ``out/plots``)."""
    command: str
    out: str
    machine: dict[str, str]
    created: str
    wall_s: float
    """Wall time of the invocation that wrote the summary."""
    compute_s: float
    """Training and eval time summed over every job and attempt (``timings.jsonl``)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "plan": self.plan.to_dict(),
            "specs": [s.to_dict() for s in self.specs],
            "jobs": [j.to_dict() for j in self.jobs],
            "results": [r.to_dict() for r in self.results],
            "compare_pooled": self.compare_pooled,
            "compare_per_seed": self.compare_per_seed,
            "plots": list(self.plots),
            "command": self.command,
            "out": self.out,
            "machine": dict(self.machine),
            "created": self.created,
            "wall_s": self.wall_s,
            "compute_s": self.compute_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Summary:
        return cls(
            tag=str(data["tag"]),
            plan=Plan.from_dict(data["plan"]),
            specs=tuple(MethodSpec.from_dict(s) for s in data["specs"]),
            jobs=tuple(JobRecord.from_dict(j) for j in data["jobs"]),
            results=tuple(MethodResult.from_dict(r) for r in data["results"]),
            compare_pooled=str(data["compare_pooled"]),
            compare_per_seed=str(data["compare_per_seed"]),
            plots=tuple(data["plots"]),
            command=str(data["command"]),
            out=str(data["out"]),
            machine={str(k): str(v) for k, v in data["machine"].items()},
            created=str(data["created"]),
            wall_s=float(data["wall_s"]),
            compute_s=float(data["compute_s"]),
        )


def machine_info() -> dict[str, str]:
    """The machine the numbers come from, in a few words."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": str(cores),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_at_end": load,
    }


def summarize(
    plan: Plan, layout: Layout, *, tag: str, command: str, wall_s: float, n_boot: int
) -> Summary:
    """Read every job, pool the evals, run ``brite-agent compare``, bootstrap, plot."""
    from agents.compare import load_eval_dir
    from agents.metrics import problem_scores

    times = _timings(layout)
    jobs = plan_jobs(plan)
    records = [read_job(plan, layout, job, times) for job in jobs]
    scores: dict[tuple[str, str], dict[int, dict[str, float]]] = {}
    for job in jobs:
        run = load_eval_dir(layout.eval_dir(job.track.name, job.spec.method, job.seed))
        for env, recs in run.envs.items():
            seed = -1 if job.seed is None else job.seed
            scores.setdefault((job.spec.method, env), {})[seed] = problem_scores(recs)
    results = method_results(scores, plan.methods, plan.eval_envs, n_boot=n_boot)
    pooled, per_seed = pool_evals(plan, layout)
    baseline = "base" if "base" in plan.methods else plan.methods[0]
    per_seed_base = (
        baseline if baseline == "base" and not plan.warmup_size else f"{baseline}-s{plan.seeds[0]}"
    )
    compare_pooled = run_compare(pooled, layout.out / "compare" / "pooled", baseline)
    compare_per_seed = run_compare(per_seed, layout.out / "compare" / "per-seed", per_seed_base)
    layout.plots.mkdir(parents=True, exist_ok=True)
    plots = [
        plot_accuracy(results, layout.plots),
        plot_rewards(records, layout.plots),
        plot_sample_accuracy(records, layout.plots),
    ]
    summary = Summary(
        tag=tag,
        plan=plan,
        specs=tuple(method_spec(plan, m) for m in plan.methods),
        jobs=tuple(records),
        results=tuple(results),
        compare_pooled=compare_pooled,
        compare_per_seed=compare_per_seed,
        plots=tuple(p.name for p in plots if p is not None),
        command=command,
        out=str(layout.out),
        machine=machine_info(),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        wall_s=round(wall_s, 1),
        compute_s=round(sum(times.values()), 1),
    )
    layout.summary.write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    return summary


# -- the results document -----------------------------------------------------------------------
def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _ci(e: Estimate, signed: bool = False) -> str:
    if signed:
        return f"{100 * e.mean:+.1f} [{100 * e.lo:+.1f}, {100 * e.hi:+.1f}]"
    return f"{_pct(e.mean)} [{_pct(e.lo)}, {_pct(e.hi)}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _mean(values: Sequence[float | int | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _demote(markdown: str) -> str:
    """``brite-agent compare``'s Markdown with its headings moved under this section's."""
    return "\n".join(
        "###" + line if line.startswith("#") else line for line in markdown.strip().splitlines()
    )


def verdicts(summary: Summary) -> list[str]:
    """The paper's claims checked against the measured differences, one sentence each."""
    by = {(r.method, r.env): r for r in summary.results}
    lines = []
    for env in summary.plan.eval_envs:
        for method, ref in COMPARISONS:
            r = by.get((method, env))
            if r is None or ref not in r.vs:
                continue
            d = r.vs[ref]
            width = (d.hi - d.lo) / 2
            if d.lo > 0:
                word = "**beats**"
            elif d.hi < 0:
                word = "**loses to**"
            else:
                word = "is **not distinguishable** from"
            lines.append(
                f"- {env}: {method} {word} {ref}: {_ci(d, signed=True)} points "
                f"(difference / CI half-width = {d.mean / width:+.1f})"
                if width > 0
                else f"- {env}: {method} {word} {ref}: {_ci(d, signed=True)} points"
            )
    return lines


def render_block(summary: Summary, plots_rel: str) -> str:
    """The generated Markdown block of one tag."""
    plan = summary.plan
    by_method: dict[str, list[JobRecord]] = {}
    for j in summary.jobs:
        by_method.setdefault(j.method, []).append(j)
    envs = ", ".join(plan.eval_envs)
    lines = [
        BLOCK_START.format(tag=summary.tag),
        f"## `{summary.tag}`: {plan.model} on {envs}",
        "",
        f"Generated by `benchmarks/repro_table1.py` on {summary.created}; training and "
        f"evaluation took {summary.compute_s / 60:.1f} min in all; machine: "
        f"{summary.machine.get('cores')} CPU cores, "
        f"GPU {summary.machine.get('gpu')}, torch {summary.machine.get('torch')}, load average "
        f"at the end {summary.machine.get('load_average_at_end')}.",
        "",
        f"Command: `{summary.command}` (outputs in `{summary.out}`).",
        "",
        "### Settings",
        "",
    ]
    tracks = "; ".join(
        f"{t.name}: train `{t.train_env}` → eval `{','.join(t.eval_envs)}`"
        + (f" ({' '.join(t.overrides)})" if t.overrides else "")
        for t in plan.tracks
    )
    settings = [
        ("model", f"`{plan.model}`"),
        ("tracks", tracks),
        ("seeds", ", ".join(map(str, plan.seeds))),
        ("training problems per run", f"{plan.train_size} (drawn per seed, shared by methods)"),
        ("held-out problems", "all" if plan.eval_size is None else str(plan.eval_size)),
        (
            "generation budget",
            f"{plan.budget_samples} samples x ≤ {plan.max_new_tokens} tokens "
            f"= ≤ {plan.token_cap} sampled tokens per run",
        ),
        ("sampling", f"temperature {plan.temperature}, top_p 1, batch {plan.batch_size}"),
        (
            "ψ-update",
            f"PPO, reward `{plan.psi_reward}`, β {plan.psi_beta}, {plan.psi_updates} "
            f"updates x {plan.psi_episodes} episodes per run",
        ),
        (
            "hint template (ψ, STaR)",
            "the task's default" if not plan.hint else "`" + plan.hint.replace("\n", "⏎") + "`",
        ),
        ("θ-update / SFT", f"lr {plan.sft_lr}, {plan.sft_epochs} epoch(s) per iteration"),
        ("DPO", f"lr {plan.dpo_lr}, β {plan.dpo_beta}, {plan.dpo_pairs} pairs per problem"),
        ("eval", f"greedy, ≤ {plan.eval_max_new_tokens} new tokens, backend {plan.backend}"),
    ]
    lines += _table(["setting", "value"], [[k, v] for k, v in settings])
    lines += ["", "### Budget (per training run, mean over seeds)", ""]
    rows = []
    for spec in summary.specs:
        js = by_method.get(spec.method, [])
        gen = [j.generated_tokens for j in js]
        span = f" ({min(gen)}–{max(gen)})" if len(gen) > 1 else ""
        rows.append(
            [
                spec.method,
                spec.detail,
                str(spec.nominal_samples),
                f"{_mean([j.samples for j in js]) or 0:.0f}",
                f"{_mean(gen) or 0:.0f}{span}",
                f"{100 * (_mean(gen) or 0) / plan.token_cap:.0f}%",
                f"{_mean([j.trained_completion_tokens for j in js]) or 0:.0f}",
                "–"
                if _mean([j.train_s for j in js]) is None
                else f"{_mean([j.train_s for j in js]):.0f}",
                "–"
                if _mean([j.eval_s for j in js]) is None
                else f"{_mean([j.eval_s for j in js]):.0f}",
            ]
        )
    lines += _table(
        [
            "method",
            "configuration",
            "nominal samples",
            "samples",
            "sampled tokens (min–max)",
            "of token cap",
            "trained tokens",
            "train s",
            "eval s",
        ],
        rows,
    )
    lines += [
        "",
        "Sampled tokens count every completion token drawn for training (PPO rollouts included; "
        "prompts and held-out evals not); trained tokens, the completion tokens trained on "
        "over all epochs (PPO's epochs included). STaR's nominal budget is an upper bound.",
        "",
        "### Held-out accuracy (%)",
        "",
        "Mean over seeds; 95% intervals from a bootstrap that resamples training seeds *and* "
        + (
            "problems (base: each seed's warm-up model, greedy). "
            if plan.warmup_size
            else "problems (the base model is greedy and seed-independent). "
        )
        + "Differences are paired: the "
        "same seeds and problems are drawn for both methods. *Stated answer only*: the same "
        "samples regraded with the verifier's `strict` option, which credits only a stated "
        'answer (`\\boxed{}`, "the answer is"), not the last number of a completion cut off '
        "at the length cap; *ended with EOS*: completions that finished.",
        "",
    ]
    refs = [r for r in REFERENCES if r in plan.methods and r != "brite-t1"]
    for env in plan.eval_envs:
        rows = []
        for r in (x for x in summary.results if x.env == env):
            seeds = " ".join(_pct(s) for s in r.per_seed)
            jobs = by_method.get(r.method, [])
            eos = _mean([j.finished.get(env) for j in jobs])
            stated = _mean([j.stated.get(env) for j in jobs])
            rows.append(
                [
                    r.method,
                    _ci(r.accuracy),
                    seeds,
                    "–" if stated is None else _pct(stated),
                    "–" if eos is None else _pct(eos),
                ]
                + [_ci(r.vs[ref], signed=True) if ref in r.vs else "—" for ref in refs]
            )
        header = [f"{env}: method", "accuracy [95% CI]", "per seed", "stated answer only"]
        header += ["ended with EOS"]
        header += [f"Δ vs {r}" for r in refs]
        lines += [*_table(header, rows), ""]
    claims = verdicts(summary)
    if claims:
        lines += ["### The paper's claims, measured", "", *claims, ""]
    lines += [
        "### `brite-agent compare`: seeds pooled as samples",
        "",
        "One eval directory per method, its seeds' greedy samples pooled as samples of the same "
        "problem; the intervals resample problems only, so they ignore run-to-run variation "
        "(use the table above for claims).",
        "",
        _demote(summary.compare_pooled),
        "",
        "### `brite-agent compare`: every seed",
        "",
        _demote(summary.compare_per_seed),
        "",
        "### Curves",
        "",
    ]
    captions = {
        "accuracy.png": "Held-out accuracy per method (bars: mean, whiskers: 95% CI, dots: seeds).",
        "psi_reward.png": "BRiTE's ψ-update: PPO reward, and the fraction of hinted rollouts "
        "reaching the reference, per update.",
        "sample_accuracy.png": "Accuracy of the training samples per sampling round.",
    }
    for name in summary.plots:
        lines += [f"![{name}]({plots_rel}/{name})", "", captions.get(name, ""), ""]
    lines += [
        "### Reproduce",
        "",
        f"The whole table: `{summary.command}`. Each job, as run:",
        "",
        "<details><summary>commands</summary>",
        "",
        "```bash",
    ]
    for j in summary.jobs:
        if j.train_command:
            lines.append(j.train_command)
        lines.append(j.eval_command)
    lines += ["```", "", "</details>", "", BLOCK_END.format(tag=summary.tag)]
    return "\n".join(lines) + "\n"


DOC_HEADER = """# Results: reproducing BRiTE's Table 1 at small scale

The paper (Zhong et al., ICML 2025; see `../shared/docs/BRITE.md`) claims that RL-generated
thinking processes (BRiTE) beat rejection sampling at equal cost and match or beat SFT on
human rationales (Table 1), and that BRiTE-DPO beats iterative DPO (Figure 3).
`benchmarks/repro_table1.py` runs that comparison here: base (no training), SFT on human
rationales, RS, STaR, iterative DPO, BRiTE with T=1 and T=2 (SFT θ-update) and BRiTE-DPO, for
the same model, the same training problems per seed and the same generation budget, each
evaluated with `brite-agent eval` on the same held-out problems and tabulated with
`brite-agent compare`. Each section below between `repro_table1` markers is generated by the
script (`--report-only` re-renders it from its `summary.json`); text outside them is kept.

## How to run

```bash
# CPU scale: SmolLM2-135M on Arith level 1, 3 seeds, every method (~1 h 40 min on 2 idle cores)
python -m benchmarks.repro_table1 --out runs/repro-cpu
python -m benchmarks.repro_table1 --out runs/repro-cpu --resume       # continue after a kill
python -m benchmarks.repro_table1 --out runs/repro-cpu --report-only  # re-render this file
python -m benchmarks.repro_table1 --dry-run                           # plan, budgets, commands

# Smoke: model=tiny, every method, one seed, well under a minute (CI: tests/test_repro_table1.py)
python -m benchmarks.repro_table1 --smoke --out /tmp/repro-smoke

# GPU scale: Qwen2.5-0.5B-Instruct, train on GSM8K -> eval GSM8K test, train on MATH -> eval
# MATH-500, 3 seeds, 256 training problems, 2048 samples x <= 512 tokens per run; evals on vLLM
pip install -e ".[vllm]"
python -m benchmarks.repro_table1 --preset gpu --out runs/repro-gpu
python -m benchmarks.repro_table1 --preset gpu --set model=qwen2.5-1.5b-instruct \\
    --tag gpu-1.5b --out runs/repro-gpu-1.5b
```

Options: `--seeds 0,1`, `--methods base,rs,brite-t1`, `--set KEY=VALUE` for any scalar plan
field (`train_size`, `eval_size`, `budget_samples`, `iterations`, `max_new_tokens`,
`temperature`, `psi_updates`, `psi_episodes`, `psi_reward`, `psi_beta`, `sft_lr`, ...), `--tag`
(the section name below), `--results` (this file by default).

**Equal budget.** Every sampling method draws the same number of completions per training run
(`budget_samples`: RS, STaR and DPO over their iterations; BRiTE's ψ PPO rollouts plus its θ
samples), all capped at the same `max_new_tokens` and drawn at the same temperature, so each
is capped at the same number of sampled tokens; the tokens actually sampled (from each run's
`summary.json`) are in the budget table. STaR's budget is an upper bound (its hinted resamples
depend on how many problems stay unsolved). The agents do not stop at a token budget
(`agents.runs.BudgetLimit` exists but no agent checks it), so budgets are matched in samples.
SFT on human rationales samples nothing; it trains `iterations` passes over the same problems.

**Intervals.** Each trained method has one greedy eval per seed on the same held-out problems.
The headline table bootstraps seeds *and* problems (paired between methods); the
`brite-agent compare` tables bootstrap problems only (seeds pooled as samples of a problem, or
one row per seed) and are narrower than the run-to-run variation warrants.

**Limits.** Training always samples with Hugging Face (`agents.ppo.PPOTrainer` takes a vLLM
sampler, but `brite-agent run` has no option that passes one; on a GPU only the evals use
vLLM). The hint template of BRiTE's ψ-prompt is not configurable from the command line (a
`PromptTemplate`, not a plain value), so the script cannot vary it.

"""
READING_PLACEHOLDER = """
## Reading

(Hand-written: what the numbers mean, and what was tried where BRiTE did not win.)
"""


def write_results(summary: Summary, layout: Layout, results: Path) -> Path:
    """Insert or replace this tag's block in ``results`` and copy the plots beside it."""
    plots_dir = results.parent / "results" / summary.tag
    plots_dir.mkdir(parents=True, exist_ok=True)
    for name in summary.plots:
        source = layout.plots / name
        if not source.is_file():
            raise ReproError(f"{source} is missing; rerun without --report-only to redraw it")
        shutil.copy2(source, plots_dir / name)
    block = render_block(summary, f"results/{summary.tag}")
    start, end = BLOCK_START.format(tag=summary.tag), BLOCK_END.format(tag=summary.tag)
    if results.is_file():
        text = results.read_text(encoding="utf-8")
        if (start in text) != (end in text):
            raise ReproError(
                f"{results}: the block of tag {summary.tag!r} has only one of its markers; "
                "restore the other or delete the block"
            )
        if start in text:
            head, rest = text.split(start, 1)
            tail = rest.split(end, 1)[1].lstrip("\n")
            text = head + block + "\n" + tail
        else:
            marker = "\n## Reading"
            if marker in text:
                head, tail = text.split(marker, 1)
                text = head.rstrip("\n") + "\n\n" + block + marker + tail
            else:
                text = text.rstrip("\n") + "\n\n" + block
    else:
        text = DOC_HEADER + block + READING_PLACEHOLDER
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(text, encoding="utf-8")
    return results


# -- the command line ---------------------------------------------------------------------------
def _csv(text: str, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise ReproError(f"--{what} needs a comma-separated list, got {text!r}")
    return items


def build_plan(args: argparse.Namespace) -> Plan:
    preset = "smoke" if args.smoke else args.preset
    plan = PRESETS[preset]
    changes: dict[str, Any] = {}
    if args.seeds:
        try:
            changes["seeds"] = tuple(int(s) for s in _csv(args.seeds, "seeds"))
        except ValueError:
            raise ReproError(f"--seeds must be integers like 0,1,2, got {args.seeds!r}") from None
    if args.methods:
        methods = _csv(args.methods, "methods")
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ReproError(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}")
        changes["methods"] = tuple(m for m in METHODS if m in methods)
    if changes:
        try:
            plan = dataclasses.replace(plan, **changes)
        except ValueError as exc:
            raise ReproError(str(exc)) from None
    plan = apply_track_overrides(plan, args.track_override or [])
    return apply_sets(plan, args.set or [])


def _check_out(layout: Layout, plan: Plan, *, resume: bool, command: str = "") -> str:
    """A new run needs a new (or empty) out; a resumed one the same plan. Returns the command
    that started the reproduction (recorded in ``out/command.txt``)."""
    if layout.plan_json.is_file():
        old = json.loads(layout.plan_json.read_text(encoding="utf-8"))
        if not resume:
            raise ReproError(
                f"{layout.out} holds a reproduction already; pass --resume to continue it, "
                "--report-only to re-render it, or choose a new --out"
            )
        diff = sorted(
            k for k in set(old) | set(plan.to_dict()) if old.get(k) != plan.to_dict().get(k)
        )
        if diff == ["seeds"] and set(plan.seeds) < set(old["seeds"]):
            # Finishing early on the seeds already run (--seeds 0,1 of a 0,1,2 plan): the
            # summary and the tables cover those seeds only, and say so.
            print(
                f"repro_table1: finishing with seeds {list(plan.seeds)} of the planned "
                f"{old['seeds']}",
                file=sys.stderr,
            )
        elif diff:
            raise ReproError(
                f"{layout.plan_json} was written by another plan (differs in {', '.join(diff)}); "
                "resume with the same options, or choose a new --out"
            )
        first = (
            layout.command.read_text(encoding="utf-8").strip() if layout.command.is_file() else ""
        )
        return first or command
    if layout.out.exists() and any(layout.out.iterdir()):
        raise ReproError(f"{layout.out} is not empty and holds no reproduction; choose a new --out")
    layout.out.mkdir(parents=True, exist_ok=True)
    layout.plan_json.write_text(json.dumps(plan.to_dict(), indent=2) + "\n", encoding="utf-8")
    layout.command.write_text(command + "\n", encoding="utf-8")
    return command


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.repro_table1",
        description="BRiTE vs RS vs STaR vs SFT vs DPO vs base at equal generation budget.",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--smoke", action="store_true", help="the smoke preset (model=tiny)")
    p.add_argument("--seeds", help="comma-separated training seeds (default: the preset's)")
    p.add_argument("--methods", help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="change a plan field")
    p.add_argument(
        "--track-override",
        action="append",
        metavar="KEY=VALUE",
        help="a Hydra override for every track's training and evals, replacing the track's "
        "own for that key (e.g. 'env.task_kwargs.levels=[2]')",
    )
    p.add_argument("--out", type=Path, help="output folder (default runs/repro-TAG)")
    p.add_argument("--tag", help="name of this reproduction in the results document")
    p.add_argument("--results", type=Path, help="the results document to write")
    p.add_argument("--resume", action="store_true", help="continue a killed run in --out")
    p.add_argument("--report-only", action="store_true", help="re-render from summary.json")
    p.add_argument("--dry-run", action="store_true", help="print the plan and commands only")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--subprocess",
        dest="subprocess",
        action="store_true",
        default=None,
        help="run each brite-agent command in a fresh process (default, except --smoke)",
    )
    mode.add_argument(
        "--inline",
        dest="subprocess",
        action="store_false",
        help="run each brite-agent command in this process (default with --smoke)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        plan = build_plan(args)
        tag = args.tag or plan.name
        layout = Layout((args.out or Path("runs") / f"repro-{tag}").expanduser())
        results = args.results or (
            layout.out / "RESULTS.md" if plan.name == "smoke" else DEFAULT_RESULTS
        )
        if args.n_boot < 1:
            raise ReproError(f"--n-boot must be >= 1, got {args.n_boot}")
        if args.report_only:
            if not layout.summary.is_file():
                raise ReproError(f"{layout.summary} not found; run the reproduction first")
            try:
                summary = Summary.from_dict(json.loads(layout.summary.read_text(encoding="utf-8")))
            except (KeyError, TypeError, ValueError) as exc:
                raise ReproError(f"{layout.summary}: malformed summary ({exc}); rerun") from None
            print(f"-> {write_results(summary, layout, results)}")
            return 0
        if args.dry_run:
            print(json.dumps(plan.to_dict(), indent=2))
            for spec in (method_spec(plan, m) for m in plan.methods):
                print(f"{spec.method:10s} {spec.nominal_samples:6d} samples  {spec.detail}")
            for job in plan_jobs(plan):
                for cmd in job_commands(plan, layout, job):
                    if cmd is not None:
                        print(shell(cmd))
            return 0
        argv_text = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
        command = f"python -m benchmarks.repro_table1 {argv_text}".strip()
        command = _check_out(layout, plan, resume=args.resume, command=command)
        if "BRITE_DATA_DIR" not in os.environ and DEFAULT_DATA.is_dir():
            os.environ["BRITE_DATA_DIR"] = str(DEFAULT_DATA)
        t0 = time.monotonic()
        subprocess = plan.name != "smoke" if args.subprocess is None else args.subprocess
        execute(plan, layout, resume=args.resume, subprocess=subprocess)
        summary = summarize(
            plan, layout, tag=tag, command=command, wall_s=time.monotonic() - t0, n_boot=args.n_boot
        )
        path = write_results(summary, layout, results)
        print("\n".join(verdicts(summary)))
        print(f"-> {layout.summary}\n-> {path}")
        return 0
    except AgentError as exc:
        print(f"repro_table1: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
