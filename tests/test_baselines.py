"""Baselines RS, STaR, SFT on human rationales and iterative DPO, on the tiny model and Arith:
each runs end to end through the shared agent loop (metrics, stage checkpoints, budget,
summary, a loadable final model), RS keeps only accepted samples, STaR's rationalizations train
on the un-hinted prompt, a killed run resumes where it stopped, and bad configs fail in one line.

A random tiny model almost never answers correctly, so the tests that need accepted samples
grade the training split with scripted verifiers (held-out evaluation keeps the real one)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

import brite_envs  # noqa: E402
from agents import baselines  # noqa: E402
from agents.baselines import (  # noqa: E402
    DPOOptions,
    RSOptions,
    STaROptions,
    rs,
    run_dpo,
    run_rs,
    run_sft,
    run_star,
    star_round,
)
from agents.cli import compose  # noqa: E402
from agents.common import (  # noqa: E402
    GradedGeneration,
    TrainingSettings,
    TrainingSetup,
    accepted_examples,
    samples_by_prompt,
    unsolved,
)
from agents.distill import GradedSample, SFTExample, encode_prompt  # noqa: E402
from agents.errors import ConfigError  # noqa: E402
from agents.generate import Generation  # noqa: E402
from agents.runs import Budget, iter_metrics  # noqa: E402
from brite_envs.tasks.arith import Arith  # noqa: E402
from brite_envs.types import Problem  # noqa: E402
from verifiers import Status, Verdict, Verifier  # noqa: E402

HINT = "The correct final answer is"
"""Text only the hinted prompt (the default PromptTemplate.hint) contains."""

SMALL = [
    "model=tiny",
    "env=arith",
    "env.train_size=4",
    "env.eval_size=4",
    "env.task_kwargs.size=40",
    "agent.iterations=2",
    "agent.eval.max_new_tokens=12",
    "agent.progress=false",
]
# A random tiny model never reaches the stop id in 12 tokens: train on cut samples too.
SAMPLING = [
    "agent.k=2",
    "agent.max_new_tokens=12",
    "agent.batch_size=8",
    "agent.finished_only=false",
]


def cfg_for(agent: str, out: Path, *extra: str) -> Any:
    sampling = [] if agent == "sft" else SAMPLING
    return compose([f"agent={agent}", f"out={out}", *SMALL, *sampling, *extra])


def verdict(status: Status) -> Verdict:
    return Verdict(1.0 if status is Status.CORRECT else 0.0, status, None, "scripted")


class SecondTimeRight(Verifier):
    """Wrong the first time a question is graded (within one verify_many call), right after:
    STaR's first round fails, so its rationalization round (and later rounds) succeed."""

    def __init__(self) -> None:
        self.seen: set[str | None] = set()

    def verify(self, completion: str, reference: str, *, question: str | None = None) -> Verdict:
        return verdict(Status.CORRECT if question in self.seen else Status.INCORRECT)

    def verify_many(
        self,
        completions: Sequence[str],
        references: Sequence[str],
        *,
        questions: Sequence[str | None] | None = None,
    ) -> list[Verdict]:
        qs = list(questions or [None] * len(completions))
        triples = zip(completions, references, qs, strict=True)
        out = [self.verify(c, r, question=q) for c, r, q in triples]
        self.seen.update(qs)
        return out


class Alternating(Verifier):
    """Right at even positions of each batch: with k=2, every problem gets one right and one
    wrong sample, so iterative DPO has a pair per problem."""

    def verify(self, completion: str, reference: str, *, question: str | None = None) -> Verdict:
        return verdict(Status.CORRECT)

    def verify_many(
        self,
        completions: Sequence[str],
        references: Sequence[str],
        *,
        questions: Sequence[str | None] | None = None,
    ) -> list[Verdict]:
        statuses = [Status.INCORRECT if i % 2 else Status.CORRECT for i in range(len(completions))]
        return [verdict(status) for status in statuses]


def grade_training_with(monkeypatch: pytest.MonkeyPatch, verifier: Verifier) -> None:
    """Build the training split of Arith with ``verifier``; the eval split stays real."""
    real = brite_envs.make_task

    def make_task(name: str, **kwargs: Any) -> Any:
        if kwargs.get("split") == "train":
            return Arith(verifier=verifier, **kwargs)
        return real(name, **kwargs)

    monkeypatch.setattr(brite_envs, "make_task", make_task)


def summary_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text())


def stage_info(out: Path, stage: str) -> dict[str, Any]:
    return json.loads((out / "stages" / stage / "DONE").read_text())["info"]


def check_run_outputs(out: Path, *, sampled: bool) -> dict[str, Any]:
    """What every baseline run must leave: metrics, eval + iteration stages with model
    checkpoints, a summary with the budget, and a final model from_pretrained can load."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    summary = summary_of(out)
    assert [s["stage"] for s in summary["stages"]] == [
        "eval/before",
        "iter1",
        "iter2",
        "eval/after",
    ]
    for it in ("iter1", "iter2"):
        assert (out / "stages" / it / "model" / "config.json").exists()
    for ev in ("before", "after"):
        assert (out / "eval" / ev / "samples.jsonl").exists()
    results = summary["results"]
    assert results["train_problems"] == 4 and results["eval_problems"] == 4
    assert 0.0 <= results["accuracy_before"] <= 1.0 and 0.0 <= results["accuracy_after"] <= 1.0
    total = summary["budget"]["total"]
    if sampled:
        assert total["samples"] > 0 and total["generated_tokens"] > 0
    else:
        assert total["samples"] == 0 and total["generated_tokens"] == 0
    labels = {m["stage"] for m in iter_metrics(out)}
    assert {"eval/before", "eval/after"} <= labels
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    tokenizer = AutoTokenizer.from_pretrained(out / "final")
    assert model.config.vocab_size == len(tokenizer) and tokenizer.chat_template
    return summary


def same_weights(a: Any, b: Any) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


# -- data building --------------------------------------------------------------------------------
def graded(
    problem: Problem,
    completion: tuple[int, ...],
    status: Status,
    *,
    hinted: bool = False,
    finished: bool = True,
) -> GradedGeneration:
    prompt = (9, 9, 1, 2) if hinted else (1, 2)
    gen = Generation(prompt_ids=prompt, completion_ids=completion, text="", finished=finished)
    return GradedGeneration(problem, gen, verdict(status), train_prompt_ids=(1, 2), hinted=hinted)


def test_rs_keeps_only_the_samples_the_verifier_accepted() -> None:
    p0, p1, p2 = Arith(split="train", size=3).problems
    samples = [
        graded(p0, (10,), Status.CORRECT),
        graded(p0, (11,), Status.INCORRECT),
        graded(p0, (12,), Status.UNPARSABLE),
        graded(p1, (13,), Status.TIMEOUT),
        graded(p1, (14,), Status.ERROR),
        graded(p1, (15,), Status.INCORRECT),
        graded(p2, (16,), Status.CORRECT, hinted=True),
    ]
    assert accepted_examples(samples) == [SFTExample((1, 2), (10,)), SFTExample((1, 2), (16,))]
    assert unsolved(samples) == [p1]
    grouped = samples_by_prompt(samples)
    # Timeouts and grading errors are not wrong answers: never rejected responses of a pair.
    assert grouped[p1.id] == [GradedSample((1, 2), (15,), False)]
    assert [s.correct for s in grouped[p0.id]] == [True, False, False]
    assert grouped[p2.id] == [GradedSample((1, 2), (16,), True)]


def test_samples_cut_at_the_token_cap_are_not_trained_on_unless_asked() -> None:
    p0, p1 = Arith(split="train", size=2).problems
    samples = [
        graded(p0, (10,), Status.CORRECT),
        graded(p0, (11,), Status.CORRECT, finished=False),  # right answer, but never stopped
        graded(p0, (12,), Status.INCORRECT, finished=False),
        graded(p1, (13,), Status.CORRECT, finished=False),
    ]
    # A cut sample carries no stop id: SFT on it would teach the model never to stop.
    assert accepted_examples(samples) == [SFTExample((1, 2), (10,))]
    assert accepted_examples(samples, finished_only=False) == [
        SFTExample((1, 2), (10,)),
        SFTExample((1, 2), (11,)),
        SFTExample((1, 2), (13,)),
    ]
    assert accepted_examples(samples, keep_all=True) == [SFTExample((1, 2), (10,))]
    grouped = samples_by_prompt(samples)
    # A cut correct sample is never a chosen response; a cut wrong one is still a rejected one.
    assert grouped[p0.id] == [GradedSample((1, 2), (10,), True), GradedSample((1, 2), (12,), False)]
    assert p1.id not in grouped
    assert len(samples_by_prompt(samples, finished_only=False)[p0.id]) == 3


def test_star_rationalizes_unsolved_problems_and_trains_on_the_unhinted_prompt() -> None:
    from agents.tiny import build_tiny

    model, tok = build_tiny(seed=0)
    task = Arith(split="train", size=3, verifier=SecondTimeRight())
    problems = list(task.problems)
    budget = Budget()
    data = star_round(
        model,
        tok,
        task,
        problems,
        k=2,
        hint_k=2,
        rationalize=True,
        temperature=1.0,
        top_p=1.0,
        max_new_tokens=8,
        batch_size=16,
        seed=0,
        budget=budget,
        stage="iter1",
        progress=False,
        finished_only=False,  # 8 tokens of a random model never reach the stop id
    )
    assert len(data.direct) == 6 and not any(s.correct for s in data.direct)
    assert [s.problem.id for s in data.rationalized] == [p.id for p in problems for _ in range(2)]
    assert all(s.correct and s.hinted for s in data.rationalized)
    assert len(data.examples) == 6
    for example, sample in zip(data.examples, data.rationalized, strict=True):
        unhinted = encode_prompt(tok, task.render_messages(sample.problem))
        assert example.prompt_ids == unhinted
        assert HINT not in tok.decode(example.prompt_ids)
        assert HINT in tok.decode(sample.generation.prompt_ids)  # it was sampled with the hint
        assert example.completion_ids == sample.generation.completion_ids
    counts = budget.stage("iter1")
    assert counts.samples == 12
    assert counts.generated_tokens == sum(
        len(s.generation.completion_ids) for s in data.direct + data.rationalized
    )


# -- end to end ------------------------------------------------------------------------------------
def test_rs_end_to_end_and_resume_after_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "rs"
    real_train = baselines.train_sft

    def killed_in_iter2(ctx: Any, model: Any, examples: Any, settings: Any = None) -> Any:
        if ctx.name == "iter2":
            raise RuntimeError("killed")
        return real_train(ctx, model, examples, settings)

    monkeypatch.setattr(baselines, "train_sft", killed_in_iter2)
    with pytest.raises(RuntimeError, match="killed"):
        run_rs(cfg_for("rs", out))
    assert sorted(p.name for p in (out / "stages").iterdir() if p.name != ".tmp") == [
        "eval",
        "iter1",
    ]
    assert not (out / "final").exists()
    monkeypatch.setattr(baselines, "train_sft", real_train)

    cfg = cfg_for("rs", out, "resume=true")
    result = rs(TrainingSetup.from_cfg(cfg, extra_keys=RSOptions.KEYS), RSOptions())
    assert result.ran == ("iter2", "eval/after")
    summary = check_run_outputs(out, sampled=True)
    assert summary["attempts"] == 2
    # Four problems, k=2, two iterations: the crashed attempt's iter2 samples are not counted.
    assert summary["budget"]["total"]["samples"] == 16 == result.budget.samples

    metrics = list(iter_metrics(out))
    sampled = {(m["stage"], m["attempt"]): m for m in metrics if m["stage"].endswith("/sample")}
    # The resumed iter2 starts from iter1's checkpoint with the same seeds: the same samples.
    first, again = sampled[("iter2/sample", 1)], sampled[("iter2/sample", 2)]
    drop = {"time", "attempt"}
    assert {k: v for k, v in first.items() if k not in drop} == {
        k: v for k, v in again.items() if k not in drop
    }
    # Training on the accepted samples only (usually none for a random model) is logged.
    for it in ("iter1", "iter2"):
        trained = [m for m in metrics if m["stage"] == f"{it}/sft" and "examples" in m]
        assert (
            trained[-1]["examples"]
            == sampled[(f"{it}/sample", 1 if it == "iter1" else 2)]["correct"]
        )
        assert stage_info(out, it)["sft_examples"] == trained[-1]["examples"]


def test_star_end_to_end_rationalizes_then_trains_from_the_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agents.tiny import build_tiny

    grade_training_with(monkeypatch, SecondTimeRight())
    out = tmp_path / "star"
    assert run_star(cfg_for("star", out, "agent.restart_from_base=true")) == 0
    summary = check_run_outputs(out, sampled=True)
    iter1, iter2 = stage_info(out, "iter1"), stage_info(out, "iter2")
    # Iteration 1: every direct sample wrong, every problem rationalized (hint_k=1) and kept.
    assert (iter1["sample_correct"], iter1["rationalize_samples"]) == (0, 4)
    assert iter1["rationalize_correct"] == 4 and iter1["sft_examples"] == 4
    # Iteration 2: every direct sample right, nothing left to rationalize.
    assert iter2["sample_correct"] == 8 and iter2["rationalize_samples"] == 0
    assert iter2["sft_examples"] == 8
    assert iter2["sft_steps"] >= 1
    assert summary["budget"]["total"]["samples"] == 8 + 4 + 8
    assert summary["budget"]["total"]["trained_completion_tokens"] > 0
    base, _ = build_tiny(seed=0)
    from transformers import AutoModelForCausalLM

    assert not same_weights(AutoModelForCausalLM.from_pretrained(out / "final"), base)


def test_sft_on_human_rationales_trains_without_generating(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from agents.tiny import build_tiny

    out = tmp_path / "sft"
    cfg = cfg_for("sft", out, "agent.sft.batch_size=2", "agent.sft.learning_rate=1e-3")
    assert run_sft(cfg) == 0
    summary = check_run_outputs(out, sampled=False)
    total = summary["budget"]["total"]
    assert total["trained_completion_tokens"] > 0 and total["trained_total_tokens"] > 0
    for it in ("iter1", "iter2"):
        info = stage_info(out, it)
        assert info["sft_examples"] == 4 and info["sft_steps"] == 2
    losses = [m["loss"] for m in iter_metrics(out) if m["stage"].endswith("/sft") and "loss" in m]
    assert len(losses) == 4 and losses[-1] < losses[0]
    base, _ = build_tiny(seed=0)
    assert not same_weights(AutoModelForCausalLM.from_pretrained(out / "final"), base)


def test_iterative_dpo_end_to_end_trains_on_pairs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grade_training_with(monkeypatch, Alternating())
    out = tmp_path / "dpo"
    assert run_dpo(cfg_for("dpo", out)) == 0
    summary = check_run_outputs(out, sampled=True)
    for it in ("iter1", "iter2"):
        info = stage_info(out, it)
        assert info["pairs"] == 4 and info["dpo_examples"] == 4 and info["dpo_steps"] >= 1
    assert summary["budget"]["total"]["samples"] == 16
    assert summary["budget"]["total"]["trained_completion_tokens"] > 0
    dpo_logs = [m for m in iter_metrics(out) if m["stage"] == "iter1/dpo" and "loss" in m]
    assert dpo_logs, "TRL's DPO steps are logged under <stage>/dpo"


# -- configuration ---------------------------------------------------------------------------------
class NoRationales(Arith):
    def _load(self) -> list[Problem]:
        return [dataclasses.replace(p, rationale=None) for p in super()._load()]


@pytest.mark.parametrize(
    ("agent", "overrides", "needle"),
    [
        ("rs", ["agent.k=0"], "agent.k must be >= 1, got 0"),
        ("rs", ["agent.temperature=0"], "agent.temperature=0 (greedy) with agent.k=2"),
        ("rs", ["+agent.kk=3"], "agent.kk is not a setting of agent='rs'"),
        ("star", ["agent.hint_k=0"], "agent.hint_k must be >= 1, got 0"),
        ("dpo", ["agent.pairs_per_prompt=x"], "agent.pairs_per_prompt must be an integer"),
        ("dpo", ["agent.dpo.beta=0"], "agent.dpo.beta must be > 0"),
        ("sft", ["agent.sft.learning_rate=0"], "agent.sft.learning_rate must be > 0, got 0"),
        ("sft", ["+agent.sft.seed=3"], "the seed comes from the top-level seed="),
        ("sft", ["agent.eval.batch_size=0"], "agent.eval.batch_size must be >= 1, got 0"),
        ("rs", ["env.train_split=valid"], "arith split must be one of"),
        ("rs", ["env.train_size=0"], "env.train_size must be >= 1, got 0"),
        ("star", ["resume=maybe"], "resume must be true or false"),
    ],
)
def test_bad_configs_fail_in_one_line_before_any_model_loads(
    agent: str, overrides: list[str], needle: str, tmp_path: Path
) -> None:
    run = {"rs": run_rs, "star": run_star, "sft": run_sft, "dpo": run_dpo}[agent]
    with pytest.raises(ConfigError) as err:
        run(cfg_for(agent, tmp_path / "out", *overrides))
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_an_env_without_a_training_split_is_refused(tmp_path: Path) -> None:
    cfg = compose(["agent=rs", "env=aime24", "model=tiny", f"out={tmp_path / 'out'}"])
    with pytest.raises(ConfigError, match=r"env=aime24 has no training split .*env.train_split="):
        run_rs(cfg)


def test_sft_needs_human_rationales(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(brite_envs, "make_task", lambda name, **kw: NoRationales(**kw))
    with pytest.raises(ConfigError, match="trains on human rationales, but task 'arith'"):
        run_sft(cfg_for("sft", tmp_path / "out"))


@pytest.mark.parametrize("agent", ["rs", "star", "sft", "dpo"])
def test_agent_configs_parse_with_their_own_keys(agent: str) -> None:
    keys = {"rs": RSOptions.KEYS, "star": STaROptions.KEYS, "sft": (), "dpo": DPOOptions.KEYS}
    cfg = compose([f"agent={agent}", "model=tiny"])
    settings = TrainingSettings.from_cfg(cfg.agent, seed=3, extra_keys=keys[agent])
    assert cfg.agent.name == agent and settings.iterations >= 1 and settings.sft.seed == 3
    assert settings.eval.temperature == 0.0  # held-out evaluation is greedy, like agent=eval
