"""The ray backend: the same jobs spread over a Ray cluster, each one run by the process backend
on the worker that picks it up.

Why: grading thousands of programs (RL rollouts, full benchmark sweeps) outgrows one machine;
Ray already schedules the training job, so sandbox jobs become Ray tasks (one CPU each by
default) and inherit its scheduling, while the isolation on each node stays the process
backend's (bwrap/unshare namespaces, rlimits, per-job pids cgroup, orphan killing).

Jobs and results travel as plain dicts (the frozen dataclasses hold read-only mappings, which
pickle does not take). Results come back in job order. Ray is imported only when the backend is
first used; when Ray is not initialised yet the backend starts (and on ``close`` stops) a local
instance, or connects to ``RayBackendConfig.address``.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from sandbox.backend import Backend, check_concurrency
from sandbox.errors import IsolationUnavailableError, SandboxConfigError
from sandbox.process import ProcessBackend, ProcessConfig
from sandbox.types import Capabilities, ExecResult, Job

logger = logging.getLogger("sandbox")

_PROCESS_FIELDS = frozenset(f.name for f in fields(ProcessConfig))
_worker_backends: dict[tuple[tuple[str, Any], ...], ProcessBackend] = {}
_worker_lock = threading.Lock()


@dataclass(frozen=True)
class RayBackendConfig:
    """Settings of the ray backend."""

    address: str | None = None
    """Cluster to connect to when Ray is not initialised yet (``ray://host:10001``, ``auto``);
    None starts a local instance. An already-initialised Ray is always used as is."""
    num_cpus_per_job: float = 1.0
    """CPUs Ray reserves for each job (its scheduling unit)."""
    process_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Keyword settings of the process backend on the workers (``ProcessConfig`` fields, e.g.
    ``{"isolation": "bwrap"}``); the workers' own interpreter is used unless ``python`` is set."""
    init_kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Extra ``ray.init`` arguments, used only when this backend starts Ray."""
    max_retries: int = 0
    """Ray retries of a job whose worker died (0: a program runs at most once)."""

    def __post_init__(self) -> None:
        if self.address is not None and (not isinstance(self.address, str) or not self.address):
            raise SandboxConfigError(
                f"RayBackendConfig.address must be a cluster address or None, got {self.address!r}"
            )
        if (
            isinstance(self.num_cpus_per_job, bool)
            or not isinstance(self.num_cpus_per_job, (int, float))
            or not 0 < self.num_cpus_per_job < math.inf
        ):
            raise SandboxConfigError(
                f"RayBackendConfig.num_cpus_per_job must be a finite number > 0, got "
                f"{self.num_cpus_per_job!r}"
            )
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise SandboxConfigError(
                f"RayBackendConfig.max_retries must be an int, got {self.max_retries!r}"
            )
        if self.max_retries < 0:
            raise SandboxConfigError(
                f"RayBackendConfig.max_retries must be >= 0, got {self.max_retries}"
            )
        options = dict(self.process_options)
        unknown = sorted(set(options) - _PROCESS_FIELDS)
        if unknown:
            raise SandboxConfigError(
                f"RayBackendConfig.process_options has unknown ProcessConfig field(s) {unknown}; "
                f"known: {sorted(_PROCESS_FIELDS)}"
            )
        ProcessConfig(**options)  # validate the values here, not on a remote worker
        object.__setattr__(self, "process_options", MappingProxyType(options))
        object.__setattr__(self, "init_kwargs", MappingProxyType(dict(self.init_kwargs)))


def _plain_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in options.items()}


def _job_fields(job: Job) -> dict[str, Any]:
    return {
        "code": job.code,
        "stdin": job.stdin,
        "files": dict(job.files),
        "timeout_s": job.timeout_s,
        "memory_mb": job.memory_mb,
        "env": dict(job.env),
        "max_output_bytes": job.max_output_bytes,
    }


def _worker_backend(options: dict[str, Any]) -> ProcessBackend:
    """One process backend per option set per worker (its isolation is probed once)."""
    key = tuple(sorted((k, repr(v)) for k, v in options.items()))
    with _worker_lock:
        backend = _worker_backends.get(key)
        if backend is None:
            backend = ProcessBackend(**options)
            _worker_backends[key] = backend
    return backend


def _run_on_worker(job: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The Ray task: run one job with the process backend on this worker."""
    return _worker_backend(options).run(Job(**job)).to_dict()


def _probe_on_worker(options: dict[str, Any]) -> dict[str, Any]:
    caps = _worker_backend(options).capabilities().to_dict()
    caps["node"] = socket.gethostname()
    return caps


def _result_from(data: Mapping[str, Any]) -> ExecResult:
    return ExecResult(**{k: data[k] for k in (f.name for f in fields(ExecResult))})


class RayBackend(Backend):
    """Runs jobs as Ray tasks; each task runs its job with the process backend on its node."""

    name = "ray"

    def __init__(self, config: RayBackendConfig | None = None, **overrides: Any) -> None:
        if config is not None and overrides:
            raise SandboxConfigError(
                f"pass either a RayBackendConfig or keyword overrides, not both (got {overrides})"
            )
        self.config = config or RayBackendConfig(**overrides)
        self._options = _plain_options(self.config.process_options)
        self._started_ray = False
        self._caps: Capabilities | None = None
        self._lock = threading.Lock()
        self._tasks: dict[str, Any] = {}

    def _ray(self) -> Any:
        """The ``ray`` module, initialised (a local instance or ``config.address``)."""
        try:
            import ray
        except ImportError:
            raise IsolationUnavailableError(
                "the ray backend needs Ray: pip install 'brite[ray]'"
            ) from None
        with self._lock:
            if not ray.is_initialized():
                where = self.config.address or "a new local instance"
                logger.info("sandbox: starting Ray (%s) for the ray backend", where)
                try:
                    ray.init(address=self.config.address, **dict(self.config.init_kwargs))
                except Exception as exc:
                    raise IsolationUnavailableError(
                        f"cannot start or reach Ray ({where}): {type(exc).__name__}: {exc}"
                    ) from exc
                self._started_ray = True
            if not self._tasks:
                self._tasks["run"] = ray.remote(
                    num_cpus=self.config.num_cpus_per_job, max_retries=self.config.max_retries
                )(_run_on_worker)
                self._tasks["probe"] = ray.remote(num_cpus=0)(_probe_on_worker)
        return ray

    def capabilities(self) -> Capabilities:
        """The process backend's isolation as a worker reports it (probed once)."""
        if self._caps is None:
            ray = self._ray()
            data = ray.get(self._tasks["probe"].remote(self._options))
            node = data.pop("node")
            nodes = len([n for n in ray.nodes() if n.get("Alive")])
            notes = (
                f"jobs run as Ray tasks ({self.config.num_cpus_per_job:g} CPU each) on "
                f"{nodes} node(s), each with the process backend; probed on {node}",
                *data.pop("notes"),
            )
            data.pop("backend")
            self._caps = Capabilities(
                backend="ray",
                notes=notes,
                rlimits=tuple(data.pop("rlimits")),
                hidden_paths=tuple(data.pop("hidden_paths")),
                **data,
            )
        return self._caps

    def run(self, job: Job) -> ExecResult:
        return self.run_many([job])[0]

    def run_many(self, jobs: Sequence[Job], *, concurrency: int | None = None) -> list[ExecResult]:
        """Submit every job as a Ray task (at most ``concurrency`` in flight when given; Ray's
        CPU accounting bounds it otherwise) and return the results in job order."""
        jobs = list(jobs)
        if not jobs:
            return []
        limit = len(jobs) if concurrency is None else check_concurrency(concurrency)
        ray = self._ray()
        task = self._tasks["run"]
        starts: dict[int, float] = {}
        results: list[ExecResult | None] = [None] * len(jobs)
        in_flight: dict[Any, int] = {}
        next_job = 0
        while next_job < len(jobs) or in_flight:
            while next_job < len(jobs) and len(in_flight) < limit:
                starts[next_job] = time.perf_counter()
                ref = task.remote(_job_fields(jobs[next_job]), self._options)
                in_flight[ref] = next_job
                next_job += 1
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                i = in_flight.pop(ref)
                results[i] = self._collect(ray, ref, time.perf_counter() - starts[i])
        return [r for r in results if r is not None]

    @staticmethod
    def _collect(ray: Any, ref: Any, elapsed: float) -> ExecResult:
        try:
            return _result_from(ray.get(ref))
        except Exception as exc:  # the worker or Ray failed, never the program
            logger.warning("sandbox: a ray job failed outside the sandbox: %s", exc)
            return ExecResult.sandbox_failed(
                "the Ray task failed", f"{type(exc).__name__}: {str(exc)[:500]}", elapsed
            )

    def close(self) -> None:
        """Stop Ray if this backend started it."""
        if self._started_ray:
            try:
                import ray

                ray.shutdown()
            finally:
                self._started_ray = False
                self._tasks.clear()
