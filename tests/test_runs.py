"""Run directories: stages complete atomically and are skipped on resume, configs must match,
budgets and metrics persist, and the final model round-trips through from_pretrained."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from agents.runs import (
    Budget,
    BudgetLimit,
    Counts,
    MetricsLogger,
    RunDir,
    RunDirError,
    iter_metrics,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG = {"agent": {"name": "brite", "iterations": 2, "beta": 1.0}, "seed": 0, "resume": False}
PLAN = ["iter1/psi", "iter1/theta", "iter2/psi", "iter2/theta"]


class FakeModel:
    """Stands in for a HF model: save_pretrained writes one file."""

    def __init__(self, weights: str) -> None:
        self.weights = weights

    def save_pretrained(self, path: Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "weights.txt").write_text(self.weights)


class FakeTokenizer:
    def save_pretrained(self, path: Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "tokenizer.txt").write_text("tok")


def weights(run: RunDir, stage: str) -> str:
    return (run.checkpoint(stage).model_dir / "weights.txt").read_text()


def run_plan(run: RunDir, upto: int) -> list[str]:
    """Do the plan's stages up to ``upto`` (skipping completed ones); return those done now."""
    done = []
    for name in PLAN[:upto]:
        if run.is_complete(name):
            continue
        run.budget.add(name, samples=4, generated_tokens=40)
        run.save_stage(name, model=FakeModel(f"w-{name}"), tokenizer=FakeTokenizer())
        done.append(name)
    return done


# -- stages and resume ---------------------------------------------------------------------------
def test_fresh_run_writes_config_and_completes_stages_in_order(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with RunDir(out, CONFIG, resume=False) as run:
        assert run.latest_checkpoint() is None
        assert run.next_stage(PLAN) == "iter1/psi"
        assert run_plan(run, 2) == ["iter1/psi", "iter1/theta"]
        assert run.completed_stages() == ["iter1/psi", "iter1/theta"]
        assert run.is_complete("iter1/theta") and not run.is_complete("iter2/psi")
        assert run.stage("iter2/psi") is None
        latest = run.latest_checkpoint()
        assert latest is not None and (latest.stage, latest.index) == ("iter1/theta", 1)
        assert weights(run, "iter1/psi") == "w-iter1/psi"
        assert run.next_stage(PLAN) == "iter2/psi"
    assert json.loads((out / "config.json").read_text()) == CONFIG
    yaml = pytest.importorskip("yaml")
    assert yaml.safe_load((out / "config.yaml").read_text()) == CONFIG
    assert (out / "stages" / "iter1" / "psi" / "model" / "tokenizer.txt").exists()


def test_resume_skips_completed_stages_and_restarts_at_the_first_incomplete(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    with RunDir(out, CONFIG, resume=False) as run:
        run_plan(run, 3)
    with RunDir(out, {**CONFIG, "resume": True}, resume=True) as run:
        assert run.attempt == 2
        assert run.next_stage(PLAN) == "iter2/theta"
        assert run_plan(run, 4) == ["iter2/theta"]
        assert run.next_stage(PLAN) is None
        assert [run.checkpoint(s).index for s in PLAN] == [0, 1, 2, 3]
        with pytest.raises(RunDirError, match="not the start of the plan"):
            run.next_stage(["iter1/psi", "other"])
        with pytest.raises(RunDirError, match="already complete"):
            run.save_stage("iter1/psi", model=FakeModel("x"), tokenizer=FakeTokenizer())


def test_a_crash_mid_stage_leaves_earlier_stages_intact_and_is_cleaned(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with RunDir(out, CONFIG, resume=False) as run:
        run_plan(run, 1)
    # A real kill (os._exit) in the middle of writing iter1/theta's weights.
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from agents.runs import RunDir

        class Dying:
            def save_pretrained(self, path):
                Path(path).mkdir(parents=True, exist_ok=True)
                (Path(path) / "weights.txt").write_text("half")
                os._exit(9)

        run = RunDir({str(out)!r}, {CONFIG!r}, resume=True)
        run.save_stage("iter1/theta", model=Dying(), tokenizer=None)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == 9, proc.stderr.decode()
    leftovers = list((out / "stages" / ".tmp").iterdir())
    assert len(leftovers) == 1 and (leftovers[0] / "model" / "weights.txt").exists()

    with RunDir(out, CONFIG, resume=True) as run:
        assert not (out / "stages" / ".tmp").exists(), "the half-written stage is cleaned"
        assert run.completed_stages() == ["iter1/psi"]
        assert weights(run, "iter1/psi") == "w-iter1/psi"
        assert run.next_stage(PLAN) == "iter1/theta"
        assert run_plan(run, 2) == ["iter1/theta"]
        assert weights(run, "iter1/theta") == "w-iter1/theta"


def test_a_stage_folder_without_done_is_incomplete(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with RunDir(out, CONFIG, resume=False) as run:
        stray = out / "stages" / "iter1" / "psi" / "model"
        stray.mkdir(parents=True)
        (stray / "weights.txt").write_text("stale")
        assert not run.is_complete("iter1/psi")
        assert run.latest_checkpoint() is None
        run_plan(run, 1)
        assert weights(run, "iter1/psi") == "w-iter1/psi"


def test_failed_save_does_not_complete_the_stage(tmp_path: Path) -> None:
    class Broken:
        def save_pretrained(self, path: Path) -> None:
            raise OSError("disk full")

    with RunDir(tmp_path / "run", CONFIG, resume=False) as run:
        with pytest.raises(OSError, match="disk full"):
            run.save_stage("iter1/psi", model=Broken(), tokenizer=FakeTokenizer())
        assert not run.is_complete("iter1/psi")
        assert run.completed_stages() == []


def test_stage_names_are_checked(tmp_path: Path) -> None:
    with RunDir(tmp_path / "run", CONFIG, resume=False) as run:
        for bad in ("", "a//b", "../x", ".tmp/x", "iter 1"):
            with pytest.raises(RunDirError, match="bad stage name"):
                run.is_complete(bad)
        run_plan(run, 1)
        with pytest.raises(RunDirError, match="nests with completed stage 'iter1/psi'"):
            run.save_stage("iter1", model=FakeModel("x"), tokenizer=FakeTokenizer())
        with pytest.raises(RunDirError, match="'iter9' is not complete"):
            run.checkpoint("iter9")


def test_extra_state_and_rng_round_trip(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    import random

    with RunDir(tmp_path / "run", CONFIG, resume=False) as run:
        head = {"weight": torch.arange(6.0).reshape(2, 3)}
        random.seed(1)
        torch.manual_seed(1)
        ckpt = run.save_stage(
            "iter1/psi",
            model=FakeModel("w"),
            tokenizer=FakeTokenizer(),
            state={"value_head": head, "step": 7},
            info={"reward": 0.5},
        )
        expected = (random.random(), torch.rand(3))
        random.seed(99)
        torch.manual_seed(99)
        ckpt.restore_rng()
        assert (random.random(), torch.rand(3).tolist()) == (expected[0], expected[1].tolist())
        state = run.checkpoint("iter1/psi").load_state()
        assert state["step"] == 7 and torch.equal(state["value_head"]["weight"], head["weight"])
        assert run.checkpoint("iter1/psi").info == {"reward": 0.5}


def test_prune_models_keeps_metadata(tmp_path: Path) -> None:
    with RunDir(tmp_path / "run", CONFIG, resume=False) as run:
        run_plan(run, 3)
        assert run.prune_models(keep={"iter2/psi"}) == ["iter1/psi", "iter1/theta"]
        assert run.completed_stages() == PLAN[:3]
        assert weights(run, "iter2/psi") == "w-iter2/psi"
        with pytest.raises(RunDirError, match="no model folder"):
            _ = run.checkpoint("iter1/psi").model_dir


# -- config and reuse rules ------------------------------------------------------------------------
def test_a_different_config_is_refused_naming_the_key_and_the_fix(tmp_path: Path) -> None:
    out = tmp_path / "run"
    RunDir(out, CONFIG, resume=False).close()
    changed = {**CONFIG, "agent": {**CONFIG["agent"], "beta": 0.5}}
    for resume in (True, False):
        with pytest.raises(RunDirError) as err:
            RunDir(out, changed, resume=resume)
        message = str(err.value)
        assert "\n" not in message
        assert "agent.beta: 1.0 -> 0.5" in message and "new out=" in message


def test_reusing_a_run_needs_resume_true(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with RunDir(out, CONFIG, resume=False) as run:
        run_plan(run, 1)
    with pytest.raises(RunDirError, match=r"1 stages complete\); pass resume=true .* new out="):
        RunDir(out, CONFIG, resume=False)
    # "resume" and "out" themselves may differ between the runs.
    RunDir(out, {**CONFIG, "resume": True, "out": "elsewhere"}, resume=True).close()


def test_resume_without_a_previous_run_starts_fresh(tmp_path: Path) -> None:
    with RunDir(tmp_path / "new", CONFIG, resume=True) as run:
        assert run.attempt == 1 and run.completed_stages() == []
    assert (tmp_path / "new" / "run.json").exists()


def test_a_non_empty_folder_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    for resume in (False, True):
        with pytest.raises(RunDirError, match=r"holds no brite run \(found \['notes.txt'\]\)"):
            RunDir(tmp_path, CONFIG, resume=resume)


def test_configs_must_be_plain_data(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match=r"config.model holds a object .*OmegaConf.to_container"):
        RunDir(tmp_path / "run", {"model": object()}, resume=False)
    with RunDir(tmp_path / "ok", {"path": tmp_path, "ids": (1, 2)}, resume=False) as run:
        assert run.config == {"path": str(tmp_path), "ids": [1, 2]}


def test_a_run_in_use_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with RunDir(out, CONFIG, resume=False):
        script = (
            f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r})\n"
            "from agents.runs import RunDir, RunDirError\n"
            f"try:\n    RunDir({str(out)!r}, {CONFIG!r}, resume=True)\n"
            "except RunDirError as e:\n    print(e); sys.exit(3)\n"
        )
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
        assert proc.returncode == 3 and b"in use by another process" in proc.stdout
    RunDir(out, CONFIG, resume=True).close()  # released on close


# -- budget ---------------------------------------------------------------------------------------
def test_budget_persists_across_resume_up_to_the_last_completed_stage(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with RunDir(out, CONFIG, resume=False) as run:
        run_plan(run, 2)
        run.budget.add("iter1/theta", trained_completion_tokens=100, trained_total_tokens=300)
        run.budget.add("iter2/psi", samples=1000)  # work of a stage that never completes
        snapshot_total = run.checkpoint("iter1/theta").budget().total
    assert snapshot_total == Counts(samples=8, generated_tokens=80)

    with RunDir(out, CONFIG, resume=True) as run:
        assert run.budget.total == Counts(samples=8, generated_tokens=80)
        assert run.budget.stage("iter2/psi") == Counts()
        run_plan(run, 4)
        run.budget.add("iter2/theta", trained_completion_tokens=50, trained_total_tokens=90)
        run.write_summary({"accuracy": 0.25, "note": "tiny"})
    summary = json.loads((out / "summary.json").read_text())
    assert summary["budget"]["total"] == {
        "samples": 16,
        "generated_tokens": 160,
        "trained_completion_tokens": 50,
        "trained_total_tokens": 90,
    }
    assert summary["budget"]["stages"]["iter2/psi"]["samples"] == 4
    assert [s["stage"] for s in summary["stages"]] == PLAN
    assert summary["stages"][1]["budget"]["samples"] == 8  # cumulative at iter1/theta
    assert summary["results"] == {"accuracy": 0.25, "note": "tiny"}
    assert summary["attempts"] == 2 and summary["config"] == CONFIG


def test_budget_counts_generations_training_and_limits() -> None:
    from agents.distill import TrainMetrics
    from agents.generate import Generation

    budget = Budget()
    gens = [Generation((1,), (5, 6, 7), "a", True), Generation((1,), (8,), "b", False)]
    budget.add_generations("s", gens)
    metrics = TrainMetrics(
        kind="sft",
        examples=2,
        skipped=0,
        epochs=3,
        steps=1,
        loss_first=1.0,
        loss_last=0.5,
        completion_tokens=10,
        total_tokens=25,
        seconds=0.1,
    )
    budget.add_training("t", metrics)
    assert budget.stage("s") == Counts(samples=2, generated_tokens=4)
    assert budget.stage("t") == Counts(trained_completion_tokens=30, trained_total_tokens=75)
    assert Budget.from_json(json.loads(json.dumps(budget.to_json()))) == budget
    assert budget.exhausted(BudgetLimit(samples=3)) is None
    assert budget.exhausted(BudgetLimit(trained_tokens=30)) == (
        "budget reached: trained_tokens 30 >= limit 30"
    )
    with pytest.raises(ValueError, match=r"Counts.samples must be an int >= 0, got -10"):
        budget.add("s", samples=-10)
    with pytest.raises(ValueError, match=r"BudgetLimit.samples must be >= 1"):
        BudgetLimit(samples=0)


# -- metrics --------------------------------------------------------------------------------------
def test_metrics_are_jsonl_lines_with_stage_step_time_and_attempt(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with RunDir(out, CONFIG, resume=False, tensorboard=False) as run:
        run.log("iter1/psi", 0, {"reward": 0.5, "kl": float("nan")})
        on_log = run.metrics.log_fn("iter1/theta")
        on_log(3, {"loss": 2.0})
        with pytest.raises(ValueError, match=r"\['step'\] are reserved"):
            run.log("iter1/psi", 1, {"step": 1.0})
    with RunDir(out, CONFIG, resume=True) as run:
        run.log("iter1/theta", 4, {"loss": 1.5})
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3
    rows = list(iter_metrics(out))
    assert [(r["stage"], r["step"], r["attempt"]) for r in rows] == [
        ("iter1/psi", 0, 1),
        ("iter1/theta", 3, 1),
        ("iter1/theta", 4, 2),
    ]
    assert rows[0]["reward"] == 0.5 and rows[0]["kl"] is None
    assert all(isinstance(r["time"], float) and r["time"] > 0 for r in rows)
    assert rows[0]["time"] <= rows[1]["time"] <= rows[2]["time"]


def test_metrics_without_tensorboard_still_write_jsonl(tmp_path: Path) -> None:
    logger = MetricsLogger(tmp_path, tensorboard=True)  # tensorboard may be absent: no error
    logger.log("s", 1, {"x": 1})
    logger.close()
    [row] = list(iter_metrics(tmp_path))
    assert row["x"] == 1.0 and math.isfinite(row["time"])


# -- real models ---------------------------------------------------------------------------------
def test_final_model_and_stage_checkpoints_round_trip_with_from_pretrained(
    tmp_path: Path, tiny: tuple[Any, Any]
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agents.models import ModelSpec, load_model

    model, tok = tiny
    messages = [{"role": "user", "content": "What is 2 + 3?"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    with torch.no_grad():
        expected = model(input_ids=torch.tensor([ids])).logits

    with RunDir(tmp_path / "run", CONFIG, resume=False) as run:
        ckpt = run.save_stage("iter1/theta", model=model, tokenizer=tok)
        final = run.save_final(model, tok)
        assert run.save_final(model, tok) == final  # replacing an older final works
        run.write_summary()
    assert final == tmp_path / "run" / "final"
    assert not list((tmp_path / "run").glob(".final*"))
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["final"] == str(final)

    loaded = AutoModelForCausalLM.from_pretrained(final)
    loaded_tok = AutoTokenizer.from_pretrained(final)
    again = loaded_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    again = again["input_ids"] if hasattr(again, "keys") else again
    assert list(again) == list(ids)
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=torch.tensor([ids])).logits, expected, atol=1e-5)

    stage_model, _ = load_model(
        ModelSpec(name="ckpt", source="path", name_or_path=str(ckpt.model_dir))
    )
    with torch.no_grad():
        assert torch.allclose(
            stage_model(input_ids=torch.tensor([ids])).logits, expected, atol=1e-5
        )
