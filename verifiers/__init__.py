"""Evaluation signals O: verifiers that grade completions and return typed verdicts.

``verifiers.get(name, **config)`` builds a verifier; ``verifiers.register(name, factory)``
adds one. Third-party packages add verifiers through the ``brite.verifiers`` entry-point
group (``name = "module:factory"``).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from verifiers.base import Status, Verdict, Verifier
from verifiers.distributed import RayConfig, RayVerifier
from verifiers.errors import UnknownVerifierError, VerifierConfigError, VerifierError
from verifiers.rubric import Rubric, RubricScore
from verifiers.trl import TRLReward, TRLRewardConfig, as_trl_reward

__all__ = [
    "RayConfig",
    "RayVerifier",
    "Rubric",
    "RubricScore",
    "Status",
    "TRLReward",
    "TRLRewardConfig",
    "UnknownVerifierError",
    "Verdict",
    "Verifier",
    "VerifierConfigError",
    "VerifierError",
    "as_trl_reward",
    "available",
    "get",
    "register",
    "shared",
]

ENTRY_POINT_GROUP = "brite.verifiers"

VerifierFactory = Callable[..., Verifier]

# Built-ins are imported lazily: "math" pulls in sympy/math-verify, "code" the sandbox.
_BUILTIN: dict[str, str] = {
    "exact": "verifiers.exact:ExactMatchVerifier",
    "math": "verifiers.math:MathVerifier",
    "gsm8k": "verifiers.numeric:GSM8KVerifier",
    "choice": "verifiers.choice:ChoiceVerifier",
    "code": "verifiers.code:CodeVerifier",
    # verifiers.get("ray", verifier="math", num_actors=2): any verifier, sharded over Ray actors
    "ray": "verifiers.distributed:ray_verifier",
}
_registry: dict[str, VerifierFactory | str] = dict(_BUILTIN)
_shared: dict[tuple[str, tuple[tuple[str, Any], ...]], Verifier] = {}
_shared_lock = threading.Lock()
_entry_points_loaded = False


def register(name: str, factory: VerifierFactory | str, *, overwrite: bool = False) -> None:
    """Register a verifier factory (a callable or a ``"module:attr"`` string) under ``name``."""
    if not name or not isinstance(name, str):
        raise VerifierConfigError(f"verifier name must be a non-empty string, got {name!r}")
    if name in _registry and not overwrite:
        raise VerifierConfigError(
            f"verifier {name!r} is already registered; pass overwrite=True to replace it"
        )
    _registry[name] = factory


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _registry.setdefault(ep.name, ep.value)


def available() -> list[str]:
    """Names of every registered verifier."""
    _load_entry_points()
    return sorted(_registry)


def _resolve(target: VerifierFactory | str) -> VerifierFactory:
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


def get(name: str, **config: Any) -> Verifier:
    """Build the verifier registered as ``name`` with keyword ``config``."""
    _load_entry_points()
    if name not in _registry:
        raise UnknownVerifierError(name, list(_registry))
    return _resolve(_registry[name])(**config)


def shared(name: str, **config: Any) -> Verifier:
    """A process-wide verifier for (name, config), built once and reused.

    Verifiers with worker pools are thread-safe; sharing one across every env of a task
    keeps the number of worker processes bounded however many envs are made.
    """
    try:
        key = (name, tuple(sorted(config.items())))
        hash(key)
    except TypeError:  # unhashable config values: build a private instance
        return get(name, **config)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = get(name, **config)
        return _shared[key]
