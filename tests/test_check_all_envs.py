"""check_env over every registered environment whose data is reachable, in both modes."""

from __future__ import annotations

import gymnasium as gym
import pytest

import brite_envs
from brite_envs.registry import BUILTIN_TASKS


@pytest.mark.parametrize("mode", ["text", "token"])
@pytest.mark.parametrize("spec", BUILTIN_TASKS, ids=lambda s: s.name)
def test_check_env_every_registered_env(spec: brite_envs.TaskSpec, mode: str) -> None:
    where = brite_envs.make_task(spec.name).data_location()
    if not (where == "builtin" or where.startswith("local:")):
        pytest.skip(f"{spec.name}: data not reachable here ({where}); set BRITE_DATA_DIR")
    env = gym.make(spec.gym_id, mode=mode, max_new_tokens=2048)
    report = brite_envs.check_env(env, num_problems=2)
    assert report.mode == mode and len(report.problems_checked) >= 1
    env.close()
