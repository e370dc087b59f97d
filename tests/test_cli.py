"""The brite-agent command: list, bad overrides, and a real (tiny) run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.cli import compose, main
from agents.errors import ConfigError
from tests.test_registry import EXPECTED


def test_list_shows_all_13_envs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for alias, gym_id in EXPECTED.items():
        assert alias in out and gym_id in out
    assert "7473" not in out or "gsm8k" in out  # sizes are printed for local data
    assert "1319" in out and "1000" in out  # gsm8k test and arith sizes


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("env=gsm9k", "valid choices: aime24"),
        ("model=gpt5", "valid choices:"),
        ("agent=nope", "valid choices: "),
        ("agent.nope=1", "Could not override 'agent.nope'"),
        ("seed", "not key=value"),
    ],
)
def test_bad_override_is_one_clear_line(
    override: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("brite-agent: error:") and needle in err
    assert len(err.splitlines()) == 1


def test_unknown_command() -> None:
    assert main(["train"]) == 2


def test_compose_defaults() -> None:
    cfg = compose([])
    assert (cfg.env.name, cfg.model.name, cfg.agent.name) == ("arith", "smollm2-135m", "brite")
    with pytest.raises(ConfigError):
        compose(["env=nope"])


@pytest.mark.parametrize("env", sorted(EXPECTED))
def test_every_env_config_builds_its_eval_problems(env: str) -> None:
    """``agent=eval env=X`` passes ``env.eval_split`` to the task: each shipped env config
    must name a split its task has (a code benchmark's only split is ``test``; BigCodeBench's
    are its prompt styles)."""
    from agents.common import eval_problems

    problems = eval_problems(compose([f"env={env}"]))
    assert len(problems.indices) > 0 and problems.task.name == env


def test_run_tiny_model_on_a_code_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A code env through the agent, its verifier options passed as task arguments."""
    monkeypatch.setenv("BRITE_CACHE_DIR", str(tmp_path / "cache"))
    rc = main(
        ["run", "agent=eval", "model=tiny", "env=humanevalplus", "env.eval_size=3",
         "agent.max_new_tokens=8", "+env.task_kwargs.verifier_config={batch_size: 4}",
         f"out={tmp_path / 'run'}"]
    )  # fmt: skip
    assert rc == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    rows = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert metrics["n"] == 3 == len(rows)
    assert {r["problem_id"] for r in rows} == {f"HumanEval/{i}" for i in range(3)}


def test_bad_config_value_is_reported(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["run", "agent=eval", "model=tiny", "agent.batch_size=0", f"out={tmp_path}"]) == 2
    assert "agent.batch_size must be >= 1, got 0" in capsys.readouterr().err


def test_run_tiny_model_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        ["run", "agent=eval", "model=tiny", "env.eval_size=6", "agent.max_new_tokens=8",
         "agent.batch_size=4", f"out={tmp_path}"]
    )  # fmt: skip
    assert rc == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert metrics["n"] == 6 == len(rows)
    assert sum(metrics["status_counts"].values()) == 6
    assert all(0 < r["completion_tokens"] <= 8 for r in rows)
    assert {r["problem_id"] for r in rows} == {f"arith/test/s0/L{i % 2 + 1}/{i}" for i in range(6)}
    assert "accuracy" in capsys.readouterr().out
