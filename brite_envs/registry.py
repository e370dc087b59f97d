"""The task registry: names, aliases and Gymnasium ids for every built-in and plugin task.

Built-in tasks are registered lazily: nothing is imported or loaded until a task is built.
Third-party packages add tasks through the ``brite.tasks`` entry-point group; each entry
resolves to a :class:`~brite_envs.task.TaskSpec` (or a Task subclass, registered under the
entry-point name).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import gymnasium as gym

from brite_envs.errors import EnvConfigError, UnknownTaskError
from brite_envs.task import Task, TaskSpec

ENTRY_POINT_GROUP = "brite.tasks"
NAMESPACE = "brite"
ENV_ENTRY_POINT = "brite_envs.env:ReasoningEnv"

_T = "brite_envs.tasks"
BUILTIN_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("gsm8k", "brite/GSM8K-v0", f"{_T}.gsm8k:GSM8K", "gsm8k",
             "Grade-school math word problems (OpenAI GSM8K)."),
    TaskSpec("math", "brite/MATH-v0", f"{_T}.math_tasks:MATH", "math",
             "Competition math, 7 subjects, levels 1-5 (Hendrycks MATH)."),
    TaskSpec("math500", "brite/MATH500-v0", f"{_T}.math_tasks:MATH500", "math",
             "The 500-problem PRM800K split of the MATH test set."),
    TaskSpec("minerva", "brite/Minerva-v0", f"{_T}.math_tasks:Minerva", "math",
             "Minerva OCW undergraduate STEM problems."),
    TaskSpec("aime24", "brite/AIME24-v0", f"{_T}.math_tasks:AIME24", "math",
             "AIME 2024 I and II."),
    TaskSpec("aime25", "brite/AIME25-v0", f"{_T}.math_tasks:AIME25", "math",
             "AIME 2025 I and II."),
    TaskSpec("amc23", "brite/AMC23-v0", f"{_T}.math_tasks:AMC23", "math", "AMC 2023."),
    TaskSpec("gpqa", "brite/GPQADiamond-v0", f"{_T}.gpqa:GPQADiamond", "choice",
             "GPQA Diamond graduate-level science multiple choice."),
    TaskSpec("humaneval", "brite/HumanEval-v0", f"{_T}.code_tasks:HumanEval", "code",
             "HumanEval Python function synthesis."),
    TaskSpec("humanevalplus", "brite/HumanEvalPlus-v0", f"{_T}.code_tasks:HumanEvalPlus",
             "code", "HumanEval with EvalPlus's extra tests."),
    TaskSpec("bigcodebench", "brite/BigCodeBench-v0", f"{_T}.code_tasks:BigCodeBench", "code",
             "BigCodeBench library-heavy Python tasks."),
    TaskSpec("bigcodebench-hard", "brite/BigCodeBenchHard-v0",
             f"{_T}.code_tasks:BigCodeBenchHard", "code", "The 148-task BigCodeBench-Hard subset."),
    TaskSpec("arith", "brite/Arith-v0", f"{_T}.arith:Arith", "exact",
             "Procedural multi-step arithmetic word problems; no download."),
)  # fmt: skip

_specs: dict[str, TaskSpec] = {}
_lookup: dict[str, str] = {}  # name, alias or gym id (lower-cased) -> name
_entry_points_loaded = False
_ID_RE = re.compile(r"^(?:[\w.-]+/)?[\w.:-]+-v\d+$")


def _add(spec: TaskSpec, *, overwrite: bool) -> None:
    keys = [spec.name, spec.gym_id, *spec.aliases]
    if not overwrite:
        for key in keys:
            owner = _lookup.get(key.lower())
            if owner is not None and owner != spec.name:
                raise EnvConfigError(
                    f"{key!r} already names task {owner!r}; choose another name or pass "
                    "overwrite=True"
                )
        if spec.name in _specs:
            raise EnvConfigError(
                f"task {spec.name!r} is already registered; pass overwrite=True to replace it"
            )
    if not _ID_RE.match(spec.gym_id):
        raise EnvConfigError(
            f"gym id {spec.gym_id!r} must look like 'namespace/Name-vN' (version suffix required)"
        )
    _specs[spec.name] = spec
    for key in keys:
        _lookup[key.lower()] = spec.name
    gym.register(
        id=spec.gym_id,
        entry_point=ENV_ENTRY_POINT,
        kwargs={"task": spec.name},
        disable_env_checker=True,  # brite_envs.check_env runs it, with reward checks, in tests
    )


def register_task(
    name: str,
    factory: type[Task] | Callable[..., Task] | str,
    *,
    verifier: str | None = None,
    gym_id: str | None = None,
    description: str = "",
    aliases: tuple[str, ...] = (),
    overwrite: bool = False,
    **kwargs: Any,
) -> TaskSpec:
    """Register a task and its Gymnasium id (default ``brite/<Name>-v0``).

    ``factory`` is a Task subclass, a callable returning a Task, or ``"module:attr"`` for lazy
    import. ``kwargs`` are passed to the factory on every build.
    """
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
        raise EnvConfigError(
            f"task name must be lower-case letters, digits, '-', '_' or '.', got {name!r}"
        )
    if isinstance(factory, str):
        target = factory
        if verifier is None:
            raise EnvConfigError(f"task {name!r}: a lazy factory string needs verifier=...")
    else:
        target = f"{factory.__module__}:{factory.__qualname__}"
        _FACTORIES[target] = factory
        if verifier is None:
            verifier = getattr(factory, "verifier_name", None)
            if verifier is None:
                raise EnvConfigError(f"task {name!r}: pass verifier=... (the factory has none)")
    cap = "".join(part.capitalize() for part in re.split(r"[-_.]", name))
    spec = TaskSpec(
        name=name,
        gym_id=gym_id or f"{NAMESPACE}/{cap}-v0",
        factory=target,
        verifier=verifier,
        description=description,
        aliases=aliases,
        kwargs=dict(kwargs),
    )
    _add(spec, overwrite=overwrite)
    return spec


_FACTORIES: dict[str, Callable[..., Task]] = {}


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        if isinstance(obj, TaskSpec):
            if obj.name not in _specs:
                _add(obj, overwrite=False)
        elif isinstance(obj, type) and issubclass(obj, Task):
            if ep.name not in _specs:
                register_task(ep.name, obj)
        else:
            raise EnvConfigError(
                f"entry point {ep.name!r} = {ep.value!r} in group {ENTRY_POINT_GROUP!r} must "
                f"resolve to a TaskSpec or a Task subclass, got {type(obj).__name__}"
            )


def task_spec(name: str) -> TaskSpec:
    """The spec for a task name, alias or Gymnasium id (case-insensitive)."""
    _load_entry_points()
    key = name.lower()
    if key not in _lookup:
        raise UnknownTaskError(name, list(_specs))
    return _specs[_lookup[key]]


def list_tasks() -> list[TaskSpec]:
    """Every registered task, built-ins first."""
    _load_entry_points()
    return list(_specs.values())


def _resolve_factory(target: str) -> Callable[..., Task]:
    if target in _FACTORIES:
        return _FACTORIES[target]
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


def make_task(name: str, **kwargs: Any) -> Task:
    """Build the task registered as ``name`` (name, alias or gym id)."""
    spec = task_spec(name)
    merged = {**spec.kwargs, **kwargs}
    factory = _resolve_factory(spec.factory)
    try:
        task = factory(**merged)
    except TypeError as exc:
        raise EnvConfigError(f"task {spec.name!r} rejected its arguments {merged}: {exc}") from exc
    if not isinstance(task, Task):
        raise EnvConfigError(
            f"factory {spec.factory!r} of task {spec.name!r} returned "
            f"{type(task).__name__}, not a brite_envs.Task"
        )
    return task


def register_builtins() -> None:
    for spec in BUILTIN_TASKS:
        if spec.name not in _specs:
            _add(spec, overwrite=False)


register_builtins()
