"""The BRiTE agent on the tiny model and Arith: two iterations end to end (metrics, ψ and θ
checkpoints, a loadable final model), a run killed between stages finishes with resume=true,
the ψ-policy's KL anchor scores the un-hinted prompt, the answer_logprob reward is
log P_θ(y* | x, z) with z cut before the final answer, BRiTE-DPO and plain PPO run, and bad
overrides fail in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from agents import brite as brite_mod  # noqa: E402
from agents.brite import (  # noqa: E402
    PsiSettings,
    answer_ids,
    answer_logprob,
    brite,
    psi_settings,
    rationale_prefix,
    run_brite,
    run_ppo,
    theta_settings,
)
from agents.cli import compose  # noqa: E402
from agents.common import TrainingSetup  # noqa: E402
from agents.errors import ConfigError  # noqa: E402
from agents.policy import FrozenReference, token_logprobs  # noqa: E402
from agents.ppo import task_prompt_ids  # noqa: E402
from agents.runs import iter_metrics  # noqa: E402
from agents.tiny import build_tiny  # noqa: E402
from brite_envs.tasks.arith import Arith  # noqa: E402
from tests.test_baselines import HINT, Alternating, grade_training_with  # noqa: E402

SMALL = [
    "model=tiny",
    "env=arith",
    "env.train_size=4",
    "env.eval_size=4",
    "env.task_kwargs.size=40",
    "agent.eval.max_new_tokens=12",
    "agent.progress=false",
    "agent.k=2",
    "agent.max_new_tokens=12",
    "agent.finished_only=false",  # a random tiny model never reaches the stop id in 12 tokens
    "agent.batch_size=8",
    "agent.psi.updates=2",
    "agent.psi.episodes=4",
]


def cfg_for(out: Path, *extra: str, agent: str = "brite") -> Any:
    small = [o.replace("agent.psi.", "agent.rl.") if agent == "ppo" else o for o in SMALL]
    if agent == "ppo":  # plain PPO trains on its rollouts, never SFT on samples
        small.remove("agent.finished_only=false")
    return compose([f"agent={agent}", f"out={out}", *small, *extra])


def summary_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text())


def test_two_brite_iterations_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "brite"
    # keep=all: a random tiny model never reaches the answer, and the θ-update must train.
    assert run_brite(cfg_for(out, "agent.iterations=2", "agent.theta.keep=all")) == 0
    summary = summary_of(out)
    stages = [s["stage"] for s in summary["stages"]]
    assert stages == [
        "eval/before",
        "iter1/psi",
        "iter1/theta",
        "iter2/psi",
        "iter2/theta",
        "eval/after",
    ]
    for stage in stages[1:-1]:
        assert (out / "stages" / stage / "model" / "config.json").exists(), stage
    total = summary["budget"]["total"]
    # ψ: 2 updates x 4 episodes; θ: 4 problems x k=2, per iteration.
    assert total["samples"] == 2 * (2 * 4 + 4 * 2)
    assert total["generated_tokens"] > 0 and total["trained_completion_tokens"] > 0
    metrics = list(iter_metrics(out))
    psi_rows = [m for m in metrics if m["stage"] == "iter1/psi/psi"]
    assert [m["step"] for m in psi_rows] == [0, 1]
    for key in ("approx_kl", "clipfrac", "explained_variance", "score_mean", "tokens_per_s"):
        assert key in psi_rows[0], key
    sft_rows = [m for m in metrics if m["stage"].endswith("theta/sft") and "examples" in m]
    assert sft_rows and all(m["examples"] == 8 for m in sft_rows)
    # θ moved, ψ-stage checkpoints are not θ: iter2's ψ starts from iter1's θ.
    final = AutoModelForCausalLM.from_pretrained(out / "final")
    theta2 = AutoModelForCausalLM.from_pretrained(out / "stages" / "iter2/theta" / "model")
    base = build_tiny(seed=0)[0]
    assert all(
        torch.equal(a, b) for a, b in zip(final.parameters(), theta2.parameters(), strict=True)
    )
    assert not all(
        torch.equal(a, b) for a, b in zip(final.parameters(), base.parameters(), strict=True)
    )
    assert AutoTokenizer.from_pretrained(out / "final").chat_template
    printed = capsys.readouterr().out
    assert "held-out accuracy" in printed and "psi-reward iter1/psi:" in printed
    assert (out / "reward_curve.png").stat().st_size > 1000


def test_a_run_killed_between_stages_finishes_with_resume(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    args = [f"out={out}", *SMALL]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.cli", "run", "agent=brite", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    done = out / "stages" / "iter1/psi" / "DONE"
    try:
        deadline = time.monotonic() + 240
        while not done.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert done.exists(), "the ψ-stage never completed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "final").exists()
    psi_weights = (out / "stages" / "iter1/psi" / "model" / "model.safetensors").read_bytes()

    cfg = compose(["agent=brite", *args, "resume=true"])
    setup = TrainingSetup.from_cfg(cfg, extra_keys=("psi", "theta"))
    result = brite(setup, psi_settings(cfg, setup), theta_settings(cfg))
    assert result.ran == ("iter1/theta", "eval/after")
    # The completed ψ-stage was kept, not redone.
    assert (
        out / "stages" / "iter1/psi" / "model" / "model.safetensors"
    ).read_bytes() == psi_weights
    summary = summary_of(out)
    assert summary["attempts"] == 2
    assert [s["stage"] for s in summary["stages"]][-2:] == ["iter1/theta", "eval/after"]
    assert (out / "final" / "config.json").exists()


def test_psi_kl_reference_scores_the_unhinted_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[list[list[int]], list[tuple[int, ...]], torch.Tensor]] = []
    real = FrozenReference.logprobs

    def spy(self: FrozenReference, prompts: Any, completions: Any, **kw: Any) -> torch.Tensor:
        result = real(self, prompts, completions, **kw)
        seen.append(([list(p) for p in prompts], [tuple(c) for c in completions], result))
        return result

    monkeypatch.setattr(FrozenReference, "logprobs", spy)
    collected: list[Any] = []
    real_collect = brite_mod.PPOTrainer.collect

    def collect(self: Any, indices: Any, **kw: Any) -> Any:
        rollout = real_collect(self, indices, **kw)
        collected.append((self.env, rollout))
        return rollout

    monkeypatch.setattr(brite_mod.PPOTrainer, "collect", collect)
    out = tmp_path / "kl"
    cfg = cfg_for(out, "agent.eval.before=false", "agent.eval.after=false")
    assert run_brite(cfg) == 0
    assert len(collected) == 2 and len(seen) == 2
    base = build_tiny(seed=0)  # θ at iteration 1 is the starting tiny model
    for (env, rollout), (prompts, completions, ref_logp) in zip(collected, seen, strict=True):
        tok = env.codec.tokenizer
        plain = task_prompt_ids(env, rollout.indices, hinted=False)
        hinted = task_prompt_ids(env, rollout.indices, hinted=True)
        assert [list(p) for p in rollout.prompt_ids] == hinted  # the policy saw the hint ...
        assert prompts == plain  # ... its KL anchor did not
        assert all(HINT in tok.decode(p) for p in rollout.prompt_ids)
        assert not any(HINT in tok.decode(p) for p in prompts)
        # The reference is θ itself: the same numbers as scoring θ on the plain prompts.
        expected = token_logprobs(base[0], plain, completions, pad_id=tok.pad_token_id)
        width = expected.shape[1]
        assert torch.allclose(ref_logp[:, :width], expected, atol=1e-5)


def test_rationale_prefix_cuts_before_the_final_answer() -> None:
    _, tok = build_tiny()
    text = "Ava has 3. Then 3 + 4 = 7.\nSo the final answer is \\boxed{7}."
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    cut = rationale_prefix(tok, ids, tok.eos_token_id)
    z = tok.decode(ids[:cut])
    assert z.startswith("Ava has 3. Then 3 + 4 = 7.") and z.endswith("answer is")
    assert tok.decode(ids[cut:]).strip().startswith("\\boxed{7}")
    no_answer = tok("just rambling 12", add_special_tokens=False)["input_ids"]
    assert rationale_prefix(tok, no_answer, tok.eos_token_id) == len(no_answer)


def test_answer_logprob_reward_is_log_p_theta_of_the_reference(tmp_path: Path) -> None:
    model, tok = build_tiny()
    task = Arith(split="train", size=8)
    from agents.policy import PolicyWithValue
    from agents.ppo import PPOConfig, collect_rollout, token_env

    config = PPOConfig(max_new_tokens=10)
    env = token_env(task, tok, config, 3, hinted=True)
    indices = [0, 1, 2]
    plain = task_prompt_ids(env, indices, hinted=False)
    rollout = collect_rollout(PolicyWithValue(model), env, indices, seed=1, ref_prompt_ids=plain)
    got = answer_logprob(model, tok, task, rollout, normalize=False)
    for i, index in enumerate(indices):
        z = rollout.completion_ids(i)
        cut = rationale_prefix(tok, z, tok.eos_token_id)
        y = answer_ids(tok, task, task[index])
        assert HINT not in tok.decode(plain[i])
        want = token_logprobs(model, [plain[i] + list(z[:cut])], [y]).sum()
        assert torch.allclose(got[i], want, atol=1e-4)
    per_token = answer_logprob(model, tok, task, rollout, normalize=True)
    lengths = torch.tensor([len(answer_ids(tok, task, task[i])) for i in indices])
    assert torch.allclose(per_token, got / lengths, atol=1e-5)
    assert (got < 0).all()


def test_answer_logprob_and_both_rewards_run(tmp_path: Path) -> None:
    out = tmp_path / "both"
    cfg = cfg_for(
        out,
        "agent.psi.reward=both",
        "agent.psi.logprob_weight=0.5",
        "agent.eval.before=false",
        "agent.eval.after=false",
    )
    assert run_brite(cfg) == 0
    rows = [m for m in iter_metrics(out) if m["stage"] == "iter1/psi/psi"]
    assert len(rows) == 2
    for row in rows:
        # score = O + 0.5 * log P: O is 0 for a random model, so the score is the log-prob part.
        assert row["score_mean"] == pytest.approx(
            row["verifier_score_mean"] + 0.5 * row["answer_logprob_mean"], abs=1e-4
        )
        assert row["answer_logprob_mean"] < 0


def test_brite_dpo_trains_theta_on_pairs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grade_training_with(monkeypatch, Alternating())
    out = tmp_path / "dpo"
    cfg = cfg_for(out, "agent.theta.method=dpo", "agent.eval.before=false")
    assert run_brite(cfg) == 0
    dpo_rows = [m for m in iter_metrics(out) if m["stage"] == "iter1/theta/dpo" and "examples" in m]
    assert dpo_rows and dpo_rows[-1]["examples"] == 4  # one (correct, incorrect) pair a problem
    assert summary_of(out)["budget"]["total"]["trained_completion_tokens"] > 0


def test_plain_ppo_agent_runs_without_the_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts: list[str] = []
    real_collect = brite_mod.PPOTrainer.collect

    def collect(self: Any, indices: Any, **kw: Any) -> Any:
        rollout = real_collect(self, indices, **kw)
        prompts.extend(self.env.codec.tokenizer.decode(p) for p in rollout.prompt_ids)
        return rollout

    monkeypatch.setattr(brite_mod.PPOTrainer, "collect", collect)
    out = tmp_path / "ppo"
    assert run_ppo(cfg_for(out, agent="ppo")) == 0
    assert prompts and not any(HINT in p for p in prompts)
    assert [s["stage"] for s in summary_of(out)["stages"]] == ["eval/before", "iter1", "eval/after"]


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["agent.psi.reward=logp"], "agent.psi.reward must be one of"),
        (["agent.psi.beta=-1"], "agent.psi.beta must be a number >= 0, got -1"),
        (["agent.psi.ppo.lr=0"], "agent.psi.ppo.lr must be > 0, got 0"),
        (["+agent.psi.ppo.lrr=1"], "agent.psi.ppo.lrr is not a setting"),
        (["agent.theta.method=kto"], "agent.theta.method must be one of"),
        (["agent.psi.updates=0"], "agent.psi.updates must be an int >= 1, got 0"),
    ],
)
def test_bad_brite_overrides_fail_in_one_line(
    overrides: list[str], needle: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as err:
        run_brite(cfg_for(tmp_path / "out", *overrides))
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_ppo_agent_refuses_the_answer_logprob_reward(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"agent\.rl\.reward must be 'verifier'"):
        run_ppo(cfg_for(tmp_path / "out", "agent.rl.reward=answer_logprob", agent="ppo"))


def test_psi_settings_defaults_follow_the_shared_sampling_settings(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path / "o", "agent.temperature=0.7", "agent.psi.beta=0.2")
    setup = TrainingSetup.from_cfg(cfg, extra_keys=("psi", "theta"))
    s = psi_settings(cfg, setup)
    assert isinstance(s, PsiSettings)
    assert s.ppo.temperature == 0.7 and s.ppo.kl_coef == 0.2 and s.ppo.max_new_tokens == 12


def test_psi_update_with_lora_anchors_to_the_adapter_disabled_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("peft", reason="peft is not installed (pip install peft)")
    from agents.policy import AdapterDisabledReference

    anchors: list[Any] = []
    real_init = brite_mod.PPOTrainer.__init__

    def init(self: Any, *args: Any, **kw: Any) -> None:
        anchors.append(kw.get("reference"))
        real_init(self, *args, **kw)

    monkeypatch.setattr(brite_mod.PPOTrainer, "__init__", init)
    out = tmp_path / "lora"
    cfg = cfg_for(out, "agent.psi.lora_r=4", "agent.eval.before=false", "agent.eval.after=false")
    assert run_brite(cfg) == 0
    assert len(anchors) == 1 and isinstance(anchors[0], AdapterDisabledReference)
    psi_dir = out / "stages" / "iter1/psi" / "model"
    # Merged into a plain checkpoint: loadable without peft, and different from θ.
    assert (psi_dir / "config.json").exists() and not (psi_dir / "adapter_config.json").exists()
    from transformers import AutoModelForCausalLM

    psi = AutoModelForCausalLM.from_pretrained(psi_dir)
    base = build_tiny(seed=0)[0]
    assert not all(
        torch.equal(a, b) for a, b in zip(psi.parameters(), base.parameters(), strict=True)
    )


def test_a_missing_model_fails_before_the_run_dir_exists(tmp_path: Path) -> None:
    from agents.errors import ModelLoadError

    out = tmp_path / "out"
    cfg = cfg_for(out, "model.source=path", f"model.name_or_path={tmp_path / 'nope'}")
    with pytest.raises(ModelLoadError, match=r"does not exist; fix: pass model\.name_or_path="):
        run_brite(cfg)
    assert not out.exists()
