"""Running untrusted code: ``sandbox.run(code)`` executes Python source in an isolated, limited,
throw-away process tree and returns an :class:`ExecResult`; ``sandbox.run_many`` runs many in
parallel. ``sandbox.capabilities()`` reports the isolation actually in force.

Backends are pluggable by name: ``"process"`` (local process trees, the default),
``"docker"`` (a throw-away container per job; ``pip install 'brite[docker]'``) and ``"ray"``
(jobs spread over a Ray cluster, each run by the process backend on its worker;
``pip install 'brite[ray]'``). The optional ones are imported only when first used. A name
selects a shared default instance; pass a :class:`Backend` object to use your own settings,
e.g. ``backend=ProcessBackend(ProcessConfig(isolation="bwrap"))`` or
``backend=DockerBackend(DockerConfig(image="my/image:tag", mount_host_python=False))``.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sandbox.backend import Backend
from sandbox.errors import (
    IsolationUnavailableError,
    SandboxConfigError,
    SandboxError,
    UnknownBackendError,
)
from sandbox.types import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    Capabilities,
    ExecResult,
    ExecStatus,
    Job,
)

__all__ = [
    "Backend",
    "Capabilities",
    "ExecResult",
    "ExecStatus",
    "IsolationUnavailableError",
    "Job",
    "SandboxConfigError",
    "SandboxError",
    "UnknownBackendError",
    "available_backends",
    "capabilities",
    "get_backend",
    "register_backend",
    "run",
    "run_many",
]

BackendFactory = Callable[..., Backend]

_registry: dict[str, BackendFactory | str] = {
    "process": "sandbox.process:ProcessBackend",
    # Optional backends: resolved (and their SDKs imported) only when first used.
    "docker": "sandbox.docker_backend:DockerBackend",
    "ray": "sandbox.ray_backend:RayBackend",
}
_defaults: dict[str, Backend] = {}
_lock = threading.Lock()


def register_backend(name: str, factory: BackendFactory | str, *, overwrite: bool = False) -> None:
    """Register a backend factory (a callable or ``"module:attr"``) under ``name``."""
    if not name or not isinstance(name, str):
        raise SandboxConfigError(f"backend name must be a non-empty string, got {name!r}")
    if name in _registry and not overwrite:
        raise SandboxConfigError(
            f"sandbox backend {name!r} is already registered; pass overwrite=True to replace it"
        )
    with _lock:
        _registry[name] = factory
        _defaults.pop(name, None)


def available_backends() -> list[str]:
    return sorted(_registry)


def _resolve(target: BackendFactory | str) -> BackendFactory:
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def get_backend(backend: str | Backend = "process", **config: Any) -> Backend:
    """A backend instance: ``backend`` itself if it is one; a shared default for a bare name;
    a fresh instance when ``config`` is given."""
    if isinstance(backend, Backend):
        if config:
            raise SandboxConfigError(
                f"configuration {sorted(config)} cannot be applied to an existing backend object"
            )
        return backend
    if backend not in _registry:
        raise UnknownBackendError(backend, list(_registry))
    if config:
        return _resolve(_registry[backend])(**config)
    with _lock:
        inst = _defaults.get(backend)
        if inst is None:
            inst = _resolve(_registry[backend])()
            _defaults[backend] = inst
    return inst


def run(
    code: str,
    *,
    stdin: str | None = None,
    files: Mapping[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    backend: str | Backend = "process",
    env: Mapping[str, str] | None = None,
    max_output_bytes: int | None = None,
) -> ExecResult:
    """Run Python ``code`` (as ``main.py`` in a fresh working directory holding ``files``)
    with ``stdin``, a wall-clock ``timeout_s`` and an address-space limit ``memory_mb``."""
    job = Job(
        code,
        stdin=stdin,
        files=files or {},
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        env=env or {},
        max_output_bytes=max_output_bytes,
    )
    return get_backend(backend).run(job)


def _as_job(item: Job | str | Mapping[str, Any]) -> Job:
    if isinstance(item, Job):
        return item
    if isinstance(item, str):
        return Job(item)
    if isinstance(item, Mapping):
        return Job(**item)
    raise SandboxConfigError(
        f"run_many takes Job objects, code strings or dicts of Job fields, got {type(item)}"
    )


def run_many(
    jobs: Iterable[Job | str | Mapping[str, Any]],
    *,
    concurrency: int | None = None,
    backend: str | Backend = "process",
) -> list[ExecResult]:
    """Run many jobs, at most ``concurrency`` at once (default: one per CPU), in job order."""
    return get_backend(backend).run_many([_as_job(j) for j in jobs], concurrency=concurrency)


def capabilities(backend: str | Backend = "process") -> Capabilities:
    """The isolation ``backend`` actually enforces here (probed once, then cached)."""
    return get_backend(backend).capabilities()
