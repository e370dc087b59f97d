"""The task registry, Gymnasium registration, plugins, and the README's task example."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import pytest

import brite_envs
from brite_envs import EnvConfigError, Problem, ProblemMeta, Task, UnknownTaskError

README = Path(__file__).resolve().parent.parent / "README.md"

EXPECTED = {
    "gsm8k": "brite/GSM8K-v0",
    "math": "brite/MATH-v0",
    "math500": "brite/MATH500-v0",
    "minerva": "brite/Minerva-v0",
    "aime24": "brite/AIME24-v0",
    "aime25": "brite/AIME25-v0",
    "amc23": "brite/AMC23-v0",
    "gpqa": "brite/GPQADiamond-v0",
    "humaneval": "brite/HumanEval-v0",
    "humanevalplus": "brite/HumanEvalPlus-v0",
    "bigcodebench": "brite/BigCodeBench-v0",
    "bigcodebench-hard": "brite/BigCodeBenchHard-v0",
    "arith": "brite/Arith-v0",
}


def test_all_13_builtin_tasks_registered_with_gym_ids() -> None:
    specs = {s.name: s for s in brite_envs.list_tasks()}
    for alias, gym_id in EXPECTED.items():
        assert specs[alias].gym_id == gym_id
        assert gym_id in gym.registry
        assert brite_envs.task_spec(gym_id).name == alias
        assert brite_envs.task_spec(alias.upper()).name == alias


def test_unknown_task_lists_choices() -> None:
    with pytest.raises(UnknownTaskError) as err:
        brite_envs.make_task("gsm9k")
    assert "gsm8k" in str(err.value) and "register_task" in str(err.value)


def test_register_task_validates_names_and_conflicts() -> None:
    with pytest.raises(EnvConfigError, match="lower-case"):
        brite_envs.register_task("Bad Name", "x:y", verifier="exact")
    with pytest.raises(EnvConfigError, match="already"):
        brite_envs.register_task("gsm8k", "x:y", verifier="exact")
    with pytest.raises(EnvConfigError, match="version suffix"):
        brite_envs.register_task("noversion", "x:y", verifier="exact", gym_id="brite/NoVersion")


def test_factory_returning_non_task_is_rejected() -> None:
    brite_envs.register_task("not-a-task", lambda: object(), verifier="exact", overwrite=True)
    with pytest.raises(EnvConfigError, match=r"not a brite_envs\.Task"):
        brite_envs.make_task("not-a-task")


class _Squares(Task):
    name = "squares"
    verifier_name = "exact"

    def _load(self) -> list[Problem]:
        return [
            Problem(f"sq/{i}", f"What is {i} squared?", str(i * i), ProblemMeta("squares", i))
            for i in range(2, 30)
        ]

    def wrong_completion(self, problem: Problem) -> str:
        return self.format_answer(str(int(problem.reference) + 1))


def test_registered_task_gets_gym_id_and_passes_checker() -> None:
    spec = brite_envs.register_task("squares", _Squares, overwrite=True)
    assert spec.gym_id == "brite/Squares-v0"
    env = gym.make("brite/Squares-v0")
    report = brite_envs.check_env(env)
    assert report.problems_checked and report.mode == "text"


def _readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- example:register-task -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README lost its register-task example"
    return match.group(1)


def test_readme_register_task_example_runs() -> None:
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(_readme_example(), str(README), "exec"), namespace)
    env = gym.make("brite/Capitals-v0")
    _obs, _info = env.reset(seed=0)
    task = env.unwrapped.task
    _, reward, *_ = env.step(task.reference_completion(env.unwrapped.problem))
    assert reward == 1.0


def test_entry_point_plugins_register_tasks_and_verifiers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package that declares 'brite.tasks'/'brite.verifiers' entry points is picked up
    without being imported by the user."""
    import importlib.metadata
    import sys

    import verifiers
    from brite_envs import registry

    pkg = tmp_path / "brite_plugin_demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from brite_envs import Problem, ProblemMeta, Task\n"
        "from verifiers.exact import ExactMatchVerifier\n"
        "class Evens(Task):\n"
        "    name = 'evens'\n"
        "    verifier_name = 'exact'\n"
        "    def _load(self):\n"
        "        return [Problem(f'ev/{i}', f'Double {i}?', str(2 * i), ProblemMeta('evens', i))\n"
        "                for i in range(25)]\n"
        "    def wrong_completion(self, p):\n"
        "        return self.format_answer(str(int(p.reference) + 1))\n"
        "def make_strict():\n"
        "    return ExactMatchVerifier()\n"
    )
    dist = tmp_path / "brite_plugin_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brite-plugin-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[brite.tasks]\nevens = brite_plugin_demo:Evens\n\n"
        "[brite.verifiers]\nstrict-exact = brite_plugin_demo:make_strict\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(verifiers, "_entry_points_loaded", False)
    names = [s.name for s in brite_envs.list_tasks()]
    assert "evens" in names
    env = gym.make("brite/Evens-v0")
    assert brite_envs.check_env(env).problems_checked
    assert "strict-exact" in verifiers.available()
    assert verifiers.get("strict-exact").verify("\\boxed{4}", "4").correct
    sys.modules.pop("brite_plugin_demo", None)


def test_a_template_given_as_a_mapping_replaces_only_those_fields() -> None:
    """``env.task_kwargs.template.hint=...`` reaches the task as a mapping: BRiTE's hint
    template is configuration, changed without code."""
    task = brite_envs.make_task(
        "arith", split="train", template={"hint": "{question} = {reference}?"}
    )
    problem = task.problems[0]
    hinted = task.render_messages(problem, hinted=True)[-1]["content"]
    assert hinted == f"{problem.question} = {problem.reference}?"
    assert task.template.user == type(task).default_template.user  # the rest is the default
    with pytest.raises(EnvConfigError, match=r"unknown field\(s\) \['hnt'\]"):
        brite_envs.make_task("arith", template={"hnt": "{question}"})
    with pytest.raises(EnvConfigError, match=r"PromptTemplate.hint must contain '\{reference\}'"):
        brite_envs.make_task("arith", template={"hint": "{question} only"})
