"""as_trl_reward: verifiers as TRL GRPOTrainer reward functions.

Unit tests call the reward the way GRPOTrainer 1.16 does (keyword prompts, completions,
completion_ids, dataset columns as lists, trainer_state / log_extra / log_metric); the last
tests run GRPOTrainer itself for two steps on the tiny model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from verifiers import Status, VerifierConfigError
from verifiers.exact import ExactMatchVerifier
from verifiers.trl import TRLReward, TRLRewardConfig, as_trl_reward, completion_text

POWER_TOWER = "\\boxed{10^{10^{10^{10}}}}"


def call(reward: TRLReward, completions: list[Any], **columns: Any) -> list[float | None]:
    """Invoke ``reward`` with exactly the keywords GRPOTrainer passes."""
    return reward(
        prompts=["question"] * len(completions),
        completions=completions,
        completion_ids=[[1, 2, 3]] * len(completions),
        trainer_state=None,
        log_extra=lambda column, values: None,
        log_metric=lambda name, value: None,
        **columns,
    )


def test_plain_text_completions() -> None:
    reward = as_trl_reward("exact")
    out = call(
        reward,
        ["so the answer is \\boxed{12}", "\\boxed{13}", "no idea"],
        reference=["12", "12", "12"],
    )
    assert out == [1.0, 0.0, 0.0]
    assert reward.last_status_counts == {
        "correct": 1,
        "incorrect": 1,
        "unparsable": 1,
        "timeout": 0,
        "error": 0,
    }
    assert [v.status for v in reward.last_verdicts] == [
        Status.CORRECT,
        Status.INCORRECT,
        Status.UNPARSABLE,
    ]


def test_conversational_completions() -> None:
    reward = as_trl_reward("exact", reference_column="answer")
    completions = [
        [{"role": "assistant", "content": "It is \\boxed{7}."}],
        [{"role": "assistant", "content": "It is \\boxed{8}."}],
        # multimodal content blocks
        [{"role": "assistant", "content": [{"type": "text", "text": "\\boxed{7}"}]}],
        # a tool turn: the final assistant reply is graded
        [
            {"role": "assistant", "content": "\\boxed{1}", "tool_calls": [{"name": "calc"}]},
            {"role": "tool", "content": "7"},
            {"role": "assistant", "content": "So \\boxed{7}"},
        ],
        [{"role": "assistant", "content": ""}],
    ]
    out = call(reward, completions, answer=[7, "7", "7", "7", "7"])  # ints are read as text
    assert out == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert reward.last_verdicts[-1].status is Status.UNPARSABLE


def test_completion_text_shapes() -> None:
    assert completion_text("x") == "x"
    assert completion_text([{"role": "assistant", "content": "a"}]) == "a"
    assert completion_text([{"role": "tool", "content": "a"}]) is None
    assert completion_text(42) is None
    assert completion_text([{"role": "assistant", "content": None}]) == ""


def test_unrecognised_completion_is_an_error_not_a_wrong_answer() -> None:
    reward = as_trl_reward("exact")
    out = call(reward, [12, [{"role": "user", "content": "\\boxed{12}"}]], reference=["12"] * 2)
    assert out == [None, None]
    assert reward.last_status_counts["error"] == 2
    assert "unrecognised completion format" in reward.last_verdicts[0].reason


def test_missing_reference_column_names_it_and_the_fix() -> None:
    reward = as_trl_reward("exact")
    with pytest.raises(VerifierConfigError) as info:
        call(reward, ["\\boxed{1}"], answer=["1"])
    msg = str(info.value)
    assert "'reference'" in msg and "['answer']" in msg and "reference_column=" in msg
    assert "trainer_state" not in msg  # TRL's own keywords are not dataset columns


def test_reference_count_must_match() -> None:
    with pytest.raises(ValueError, match="2 completions but 1 values in 'reference'"):
        call(as_trl_reward("exact"), ["a", "b"], reference=["1"])


def test_timeout_is_none_by_default_and_failure_reward_when_set() -> None:
    reward = as_trl_reward("math", timeout_s=1.0, workers=1, cache_size=0)
    try:
        out = call(
            reward, [POWER_TOWER, "\\boxed{\\frac{6}{2}}", "\\boxed{4}"], reference=["3"] * 3
        )
        assert out == [None, 1.0, 0.0]
        assert reward.last_status_counts["timeout"] == 1
    finally:
        reward.close()
    scored = as_trl_reward("math", failure_reward=-0.5, timeout_s=1.0, workers=1, cache_size=0)
    try:
        assert call(scored, [POWER_TOWER], reference=["3"]) == [-0.5]
        assert scored.last_verdicts[0].status is Status.TIMEOUT
    finally:
        scored.close()


def test_grading_error_is_a_failure_not_a_wrong_answer() -> None:
    reward = as_trl_reward("exact", failure_reward=0.25)
    assert call(reward, ["\\boxed{1}", "\\boxed{1}"], reference=["", "1"]) == [0.25, 1.0]
    assert reward.last_status_counts["error"] == 1
    assert reward.status_counts == {"error": 1, "correct": 1}


def test_statuses_reach_trl_logging_hooks() -> None:
    metrics: dict[str, float] = {}
    extra: dict[str, list[Any]] = {}
    reward = as_trl_reward("exact", name="arith_exact")
    reward(
        prompts=["q"] * 4,
        completions=["\\boxed{1}", "\\boxed{2}", "nothing", "\\boxed{1}"],
        completion_ids=[[0]] * 4,
        reference=["1"] * 4,
        log_metric=metrics.__setitem__,
        log_extra=extra.__setitem__,
    )
    assert metrics == {
        "verdicts/arith_exact/correct": 0.5,
        "verdicts/arith_exact/incorrect": 0.25,
        "verdicts/arith_exact/unparsable": 0.25,
        "verdicts/arith_exact/timeout": 0.0,
        "verdicts/arith_exact/error": 0.0,
    }
    assert extra == {"arith_exact/status": ["correct", "incorrect", "unparsable", "correct"]}


def test_name_is_what_trl_logs() -> None:
    from trl.trainer.utils import get_callable_name

    assert get_callable_name(as_trl_reward("exact")) == "exact"
    assert get_callable_name(as_trl_reward(ExactMatchVerifier(), name="acc")) == "acc"


@pytest.mark.parametrize(
    ("options", "bad"),
    [
        ({"reference_column": ""}, "''"),
        ({"failure_reward": float("inf")}, "inf"),
        ({"failure_reward": True}, "True"),
        ({"failure_reward": "0"}, "'0'"),
        ({"name": " "}, "' '"),
        ({"log_statuses": 1}, "1"),
    ],
)
def test_config_rejects_bad_values_naming_them(options: dict[str, Any], bad: str) -> None:
    with pytest.raises(VerifierConfigError) as info:
        TRLRewardConfig(**options)
    assert bad in str(info.value)


def test_options_only_with_a_verifier_name() -> None:
    with pytest.raises(VerifierConfigError, match="only apply when the verifier is given by name"):
        as_trl_reward(ExactMatchVerifier(), strict=True)
    assert as_trl_reward("exact", strict=True).verifier.config.strict is True  # type: ignore[attr-defined]


# ------------------------------------------------------------------ GRPOTrainer, two steps


def _grpo(tmp_path: Path, rows: list[dict[str, Any]], reward: TRLReward) -> Any:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from agents.tiny import build_tiny

    model, tokenizer = build_tiny()
    args = GRPOConfig(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=16,
        report_to="none",
        use_cpu=True,
        bf16=False,
        logging_steps=1,
        save_strategy="no",
        seed=0,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    trainer.train()
    return trainer


@pytest.mark.parametrize("conversational", [True, False], ids=["messages", "text"])
def test_grpo_trainer_runs_two_steps_with_the_reward(tmp_path: Path, conversational: bool) -> None:
    from brite_envs.tasks.arith import Arith

    task = Arith(split="train", size=8, levels=(1,))
    rows = [
        {
            "prompt": task.render_messages(p) if conversational else task.render_prompt(p),
            "reference": p.reference,
        }
        for p in task.problems
    ]
    reward = as_trl_reward("exact")
    trainer = _grpo(tmp_path, rows, reward)
    assert trainer.state.global_step == 2
    logged = [e for e in trainer.state.log_history if "reward" in e]
    assert [e["step"] for e in logged] == [1, 2]
    for e in logged:
        assert 0.0 <= e["reward"] <= 1.0 and 0.0 <= e["rewards/exact/mean"] <= 1.0
        shares = sum(e[f"verdicts/exact/{s.value}"] for s in Status)
        assert shares == pytest.approx(1.0)
    assert sum(reward.status_counts.values()) == 2 * 4  # two steps of 4 completions each


def test_grpo_trainer_accepts_none_for_grading_failures(tmp_path: Path) -> None:
    """Every completion fails to grade (empty references): TRL 1.16 takes the Nones as
    unscorable (NaN reward, advantage 0), trains on, and logs the reward as None (no
    scorable sample) rather than as a 0 that would read as "all wrong"."""
    from brite_envs.tasks.arith import Arith

    task = Arith(split="train", size=8, levels=(1,))
    rows = [{"prompt": task.render_messages(p), "reference": ""} for p in task.problems]
    reward = as_trl_reward("exact")
    trainer = _grpo(tmp_path, rows, reward)
    assert trainer.state.global_step == 2
    logged = [e for e in trainer.state.log_history if "reward" in e]
    assert len(logged) == 2
    assert all(e["reward"] is None and e["rewards/exact/mean"] is None for e in logged)
    assert all(e["verdicts/exact/error"] == 1.0 for e in logged)
    assert all(e["loss"] == 0.0 for e in logged)  # no learning signal from unscorable samples
