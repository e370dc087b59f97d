"""Value types shared by every sandbox backend: a job, its result, and the isolation report."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any

from sandbox.errors import SandboxConfigError

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 1024
RESERVED_FILES = ("main.py",)
"""The job's ``code`` is written to ``main.py``; ``files`` may not use that name."""


class ExecStatus(str, enum.Enum):
    """How a sandboxed program ended."""

    OK = "ok"
    """Exited with status 0."""
    ERROR = "error"
    """Exited with a non-zero status (an exception, ``sys.exit(1)``), or the sandbox itself
    failed to start the program (then ``ExecResult.sandbox_error`` says why)."""
    TIMEOUT = "timeout"
    """Ran past its wall-clock or CPU-time limit and was killed."""
    OOM = "oom"
    """Ran out of memory under the sandbox's address-space limit."""
    KILLED = "killed"
    """Died from a signal it did not ask for a limit on (SIGSEGV, SIGKILL, its supervisor
    being killed from inside, the file-size limit)."""

    def __str__(self) -> str:
        return self.value


def _frozen_str_map(value: Mapping[str, str] | None, what: str) -> Mapping[str, str]:
    data = dict(value or {})
    for k, v in data.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise SandboxConfigError(
                f"{what} must map str to str, got {k!r}: {type(v).__name__} ({str(v)[:60]!r})"
            )
    return MappingProxyType(data)


def check_relative_path(name: str) -> str:
    """A job file name must stay inside the working directory: no absolute paths, no '..'."""
    p = PurePosixPath(name)
    if not name or p.is_absolute() or ".." in p.parts or name.startswith("~"):
        raise SandboxConfigError(
            f"file name {name!r} must be a relative path inside the working directory "
            "(no leading '/', no '..')"
        )
    if str(p) in RESERVED_FILES:
        raise SandboxConfigError(
            f"file name {name!r} is reserved: the job's code is written to it; pass the code "
            "as `code` instead"
        )
    return str(p)


@dataclass(frozen=True)
class Job:
    """One program to run: Python source plus optional stdin, extra files and limits."""

    code: str
    stdin: str | None = None
    files: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Extra files written into the working directory first (relative path -> text)."""
    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Extra environment variables; the host environment is never passed through."""
    max_output_bytes: int | None = None
    """Per-stream cap on kept stdout/stderr; None uses the backend's default."""

    def __post_init__(self) -> None:
        if not isinstance(self.code, str):
            raise SandboxConfigError(f"Job.code must be a str, got {type(self.code).__name__}")
        if self.stdin is not None and not isinstance(self.stdin, str):
            raise SandboxConfigError(
                f"Job.stdin must be a str or None, got {type(self.stdin).__name__}"
            )
        if (
            isinstance(self.timeout_s, bool)
            or not isinstance(self.timeout_s, (int, float))
            or not math.isfinite(self.timeout_s)
            or self.timeout_s <= 0
        ):
            raise SandboxConfigError(
                f"Job.timeout_s must be a finite number > 0, got {self.timeout_s!r}"
            )
        if isinstance(self.memory_mb, bool) or not isinstance(self.memory_mb, int):
            raise SandboxConfigError(f"Job.memory_mb must be an int, got {self.memory_mb!r}")
        if self.memory_mb < 16:
            raise SandboxConfigError(f"Job.memory_mb must be >= 16, got {self.memory_mb}")
        if self.max_output_bytes is not None and (
            isinstance(self.max_output_bytes, bool)
            or not isinstance(self.max_output_bytes, int)
            or self.max_output_bytes < 64
        ):
            raise SandboxConfigError(
                f"Job.max_output_bytes must be an int >= 64 or None, got {self.max_output_bytes!r}"
            )
        files = _frozen_str_map(self.files, "Job.files")
        for name in files:
            check_relative_path(name)
        object.__setattr__(self, "files", files)
        object.__setattr__(self, "env", _frozen_str_map(self.env, "Job.env"))
        object.__setattr__(self, "timeout_s", float(self.timeout_s))


@dataclass(frozen=True)
class ExecResult:
    """What happened to one job. Output streams are capped: when a stream was longer than the
    cap its head and tail are kept, a marker line says how much was dropped in between, and
    ``*_truncated`` is True."""

    status: ExecStatus
    exit_code: int | None
    """The exit status; minus the signal number when killed by a signal; None if unknown."""
    stdout: str
    stderr: str
    wall_s: float
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    detail: str = ""
    """A short human-readable reason for a non-ok status (which limit, which signal)."""
    sandbox_error: str | None = None
    """Set when the sandbox itself failed (could not start the program): not the code's fault."""

    def __post_init__(self) -> None:
        if not isinstance(self.status, ExecStatus):
            object.__setattr__(self, "status", ExecStatus(self.status))

    @classmethod
    def sandbox_failed(cls, detail: str, sandbox_error: str, wall_s: float) -> ExecResult:
        """A job the sandbox itself could not run: status ``error``, no output, and
        ``sandbox_error`` set (never the program's fault)."""
        return cls(
            ExecStatus.ERROR, None, "", "", wall_s, detail=detail, sandbox_error=sandbox_error
        )

    @property
    def ok(self) -> bool:
        return self.status is ExecStatus.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "wall_s": self.wall_s,
            "stdout_truncated": self.stdout_truncated,
            "stderr_truncated": self.stderr_truncated,
            "detail": self.detail,
            "sandbox_error": self.sandbox_error,
        }


@dataclass(frozen=True)
class Capabilities:
    """The isolation a backend actually enforces on this machine (not what it would like to)."""

    backend: str
    isolation: str
    """How programs are wrapped: ``bwrap``, ``unshare`` or ``none`` for the process backend."""
    pid_namespace: bool
    """Every process the program starts dies with it (its own PID namespace)."""
    network_isolated: bool
    """The program has its own empty network namespace: no route to the host or internet."""
    read_only_fs: bool
    """Everything except the working directory and a private /tmp is read-only."""
    user_namespace: bool
    rlimits: tuple[str, ...]
    env_scrubbed: bool
    kills_orphans: bool
    """A supervisor adopts and kills processes that detach from the program (subreaper)."""
    hidden_paths: tuple[str, ...] = ()
    """Host paths replaced by an empty directory inside the sandbox."""
    process_limit: str = "none"
    """What bounds the number of processes (fork bombs): a cgroup's ``pids.max``,
    ``RLIMIT_NPROC`` (binds non-root users only), or ``none``."""
    python: str = ""
    notes: tuple[str, ...] = ()
    fork_server: bool = False
    """Jobs are forked from a warm sandboxed interpreter into fresh namespaces of their own
    (process backend, ``bwrap``; see :mod:`sandbox.forkserver`), not started one by one."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "isolation": self.isolation,
            "pid_namespace": self.pid_namespace,
            "network_isolated": self.network_isolated,
            "read_only_fs": self.read_only_fs,
            "user_namespace": self.user_namespace,
            "rlimits": list(self.rlimits),
            "env_scrubbed": self.env_scrubbed,
            "kills_orphans": self.kills_orphans,
            "hidden_paths": list(self.hidden_paths),
            "process_limit": self.process_limit,
            "python": self.python,
            "notes": list(self.notes),
            "fork_server": self.fork_server,
        }

    def summary(self) -> str:
        flags = [
            f"pid-namespace={'yes' if self.pid_namespace else 'no'}",
            f"network={'isolated' if self.network_isolated else 'HOST'}",
            f"filesystem={'read-only' if self.read_only_fs else 'WRITABLE'}",
            f"rlimits={','.join(self.rlimits) or 'none'}",
            f"process-limit={self.process_limit!r}",
            f"env={'scrubbed' if self.env_scrubbed else 'inherited'}",
            f"fork-server={'yes' if self.fork_server else 'no'}",
        ]
        return f"sandbox backend {self.backend!r} isolation {self.isolation!r}: " + " ".join(flags)
