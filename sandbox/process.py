"""The process backend: each job runs as a fresh local process tree, wrapped in the strongest
isolation this machine offers.

Isolation levels, strongest first (``ProcessConfig.isolation="auto"`` picks the first that
works, probing once per process):

* ``bwrap`` (bubblewrap installed, user namespaces allowed): new user, PID, network, IPC and UTS
  namespaces, all capabilities dropped, the host filesystem mounted read-only with only the
  working directory and a private ``/tmp`` writable, ``/root`` and ``/home`` hidden.
* ``unshare`` (util-linux ``unshare``, user namespaces allowed): new user, PID, mount and
  network namespaces, but a writable filesystem.
* ``none``: rlimits, a scrubbed environment and the supervisor's orphan killing only.

In every mode a small supervisor (``sandbox/_runner.py``) sits between host and program: it
applies the rlimits, enforces the deadline, adopts detached processes (child subreaper) and
kills every one of them before it exits; in the namespace modes the kernel additionally kills
everything in the PID namespace when it goes.

With ``bwrap`` isolation jobs run through a **fork server** by default
(``ProcessConfig.fork_server``, see :mod:`sandbox.forkserver`): one warm interpreter inside a
bwrap sandbox forks each job into fresh namespaces of its own, which saves the ~50 ms of CPU a
sandbox and interpreter start-up cost per job. The plain per-job path above remains for the
other levels, for jobs that set interpreter start-up variables, and as the fallback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sandbox import cgroups
from sandbox.backend import Backend
from sandbox.cgroups import JobCgroup, PidsController
from sandbox.errors import IsolationUnavailableError, SandboxConfigError
from sandbox.forkserver import (
    DEFAULT_PRELOAD,
    FORK_SERVER_MODES,
    STARTUP_ENV_PREFIXES,
    ForkServer,
    ForkServerError,
    Outcome,
    build_payload,
)
from sandbox.types import Capabilities, ExecResult, ExecStatus, Job

logger = logging.getLogger("sandbox")

ISOLATION_LEVELS = ("auto", "bwrap", "unshare", "none")
FORK_SERVER_WORKDIR = "/tmp/brite-sbx-job/work"
"""A fork-server job's working directory, on its own private /tmp."""
_RUNNER_SOURCE = (Path(__file__).with_name("_runner.py")).read_text(encoding="utf-8")
_TOKEN_VAR = "BRITE_SANDBOX_TOKEN"
_RLIMIT_NAMES = ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_NPROC")
_OOM_RE = re.compile(
    r"(^|\W)(MemoryError|_ArrayMemoryError)\b|Cannot allocate memory|std::bad_alloc"
    r"|out of memory",
    re.MULTILINE,
)

BASE_ENV: Mapping[str, str] = MappingProxyType(
    {
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        # Headless plotting, and one thread per numeric library: thread pools multiply
        # virtual memory (RLIMIT_AS) and fight over the CPUs run_many already fills.
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
)
"""The whole environment a program sees, plus PATH, HOME, TMPDIR and the job's own ``env``.
Nothing is inherited from the host's ``os.environ``."""


@dataclass(frozen=True)
class ProcessConfig:
    """Settings of the process backend; per-job limits (time, memory) live on :class:`Job`."""

    isolation: str = "auto"
    """``auto`` (strongest available), or require ``bwrap``, ``unshare`` or ``none``."""
    max_output_bytes: int = 1 << 20
    """Default per-stream cap on kept stdout/stderr (head and tail are kept)."""
    max_file_mb: int = 256
    """RLIMIT_FSIZE: the largest file the program may write."""
    max_open_files: int = 1024
    max_processes: int = 256
    """RLIMIT_NPROC (processes and threads). Enforced per sandbox in a user namespace; without
    one it counts all of the user's processes, so the host's count is added."""
    kill_grace_s: float = 3.0
    """How long after the deadline the host waits for the supervisor before killing it."""
    python: str = sys.executable
    """Interpreter for the supervisor and the program (the host's own by default)."""
    hide_paths: tuple[str, ...] = ("/root", "/home", "~")
    """Host folders replaced by empty ones in ``bwrap`` mode (paths the interpreter needs are
    mounted back read-only)."""
    sandbox_uid: int = 65534
    """The uid/gid the program sees inside a ``bwrap`` user namespace (``nobody``)."""
    workdir_base: str | None = None
    """Where temporary working directories are created (default: the system temp dir)."""
    extra_env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    use_cgroups: bool = True
    """Put each job in its own pids cgroup when one is writable (see :mod:`sandbox.cgroups`)."""
    fork_server: str = "auto"
    """``auto``: with ``bwrap`` isolation, fork each job from a warm sandboxed interpreter into
    fresh namespaces (:mod:`sandbox.forkserver`), falling back to one sandbox start-up per job
    if it cannot start; ``on``: require it; ``off``: always one sandbox start-up per job."""
    fork_server_tmpfs_mb: int = 1024
    """Fork server: size of each job's private /tmp (which holds its working directory) and
    /dev/shm, both memory-backed."""
    fork_server_preload: tuple[str, ...] = DEFAULT_PRELOAD
    """Fork server: modules imported once in the server, so jobs find them loaded."""

    def __post_init__(self) -> None:
        if self.isolation not in ISOLATION_LEVELS:
            raise SandboxConfigError(
                f"ProcessConfig.isolation must be one of {ISOLATION_LEVELS}, got {self.isolation!r}"
            )
        for name in ("max_output_bytes", "max_file_mb", "max_open_files", "max_processes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SandboxConfigError(f"ProcessConfig.{name} must be an int >= 1, got {value!r}")
        if self.max_output_bytes < 64:
            raise SandboxConfigError(
                f"ProcessConfig.max_output_bytes must be >= 64, got {self.max_output_bytes}"
            )
        if not isinstance(self.kill_grace_s, (int, float)) or not (
            0 < self.kill_grace_s < math.inf
        ):
            raise SandboxConfigError(
                f"ProcessConfig.kill_grace_s must be a finite number > 0, got {self.kill_grace_s!r}"
            )
        if not self.python or not os.path.isfile(self.python):
            raise SandboxConfigError(
                f"ProcessConfig.python must name an existing interpreter, got {self.python!r}"
            )
        if self.workdir_base is not None and not os.path.isdir(self.workdir_base):
            raise SandboxConfigError(
                f"ProcessConfig.workdir_base must be an existing folder, got {self.workdir_base!r}"
            )
        if not 0 <= self.sandbox_uid < 2**31:
            raise SandboxConfigError(
                f"ProcessConfig.sandbox_uid must be a uid, got {self.sandbox_uid!r}"
            )
        if self.fork_server not in FORK_SERVER_MODES:
            raise SandboxConfigError(
                f"ProcessConfig.fork_server must be one of {FORK_SERVER_MODES}, "
                f"got {self.fork_server!r}"
            )
        tmpfs = self.fork_server_tmpfs_mb
        if isinstance(tmpfs, bool) or not isinstance(tmpfs, int) or tmpfs < 16:
            raise SandboxConfigError(
                f"ProcessConfig.fork_server_tmpfs_mb must be an int >= 16, got {tmpfs!r}"
            )
        preload = self.fork_server_preload
        if isinstance(preload, str) or not all(
            isinstance(m, str) and all(part.isidentifier() for part in m.split("."))
            for m in preload
        ):
            raise SandboxConfigError(
                "ProcessConfig.fork_server_preload must be a sequence of module names, "
                f"got {preload!r}"
            )
        object.__setattr__(self, "fork_server_preload", tuple(preload))
        object.__setattr__(self, "hide_paths", tuple(self.hide_paths))
        object.__setattr__(self, "extra_env", MappingProxyType(dict(self.extra_env)))


# -- isolation detection -------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """How to wrap a program: the chosen level, bwrap's mount arguments, the report."""

    isolation: str
    hide_args: tuple[str, ...]
    caps: Capabilities
    pids: PidsController | None = None


_plans: dict[tuple[Any, ...], _Plan] = {}
_plans_lock = threading.Lock()


@functools.lru_cache(maxsize=8)
def _needed_paths(python: str) -> tuple[Path, ...]:
    """Host folders the interpreter needs; hidden folders containing them are re-exposed."""
    raw = [
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        os.path.dirname(python),
        os.path.dirname(os.path.realpath(python)),
        *[p for p in sys.path if p],
    ]
    found: set[Path] = set()
    for p in raw:
        for q in (Path(p), Path(os.path.realpath(p))):
            if q.is_absolute() and q.exists():
                found.add(q if q.is_dir() else q.parent)
    # Keep only the outermost folders.
    out = sorted(found, key=lambda q: len(q.parts))
    minimal: list[Path] = []
    for q in out:
        if not any(q == m or q.is_relative_to(m) for m in minimal):
            minimal.append(q)
    return tuple(minimal)


_PRIVATE_TMPFS = (Path("/tmp"), Path("/dev/shm"))


def _rebind_under_tmpfs(python: str) -> list[str]:
    """The private /tmp would hide an interpreter or virtualenv that lives under /tmp
    (a CI checkout in /tmp, say): bind those folders back, read-only."""
    args: list[str] = []
    for n in _needed_paths(python):
        if any(n.is_relative_to(t) for t in _PRIVATE_TMPFS):
            args += ["--ro-bind", str(n), str(n)]
    return args


def _hide_args(config: ProcessConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    needed = _needed_paths(config.python)
    args: list[str] = []
    hidden: list[str] = []
    seen: set[Path] = set()
    for raw in config.hide_paths:
        h = Path(os.path.expanduser(raw))
        if not h.is_absolute() or not h.is_dir() or h in seen or h == Path("/"):
            continue
        seen.add(h)
        if any(h == n or h.is_relative_to(n) for n in needed):
            continue  # hiding it would hide the interpreter itself
        args += ["--tmpfs", str(h)]
        for n in needed:
            if n.is_relative_to(h):
                args += ["--ro-bind", str(n), str(n)]
        hidden.append(str(h))
    return tuple(args), tuple(hidden)


def _bwrap_mounts(config: ProcessConfig, hide_args: tuple[str, ...]) -> list[str]:
    """The filesystem every bwrap sandbox sees: the host read-only, private /dev, /proc, /tmp
    and /dev/shm, hidden folders."""
    return [
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/dev/shm",
        *_rebind_under_tmpfs(config.python),
        *hide_args,
    ]


def _bwrap_prefix(config: ProcessConfig, hide_args: tuple[str, ...], workdir: str) -> list[str]:
    uid = str(config.sandbox_uid)
    return [
        "bwrap",
        "--die-with-parent",
        "--new-session",
        "--unshare-all",
        "--unshare-user",
        "--uid",
        uid,
        "--gid",
        uid,
        "--hostname",
        "sandbox",
        "--cap-drop",
        "ALL",
        *_bwrap_mounts(config, hide_args),
        # Sysctls are global: uid 65534 here may be the host's root, which may write them
        # (kernel.core_pattern runs a program as root on the host). bwrap covers /proc/sys
        # only where it finds it writable while setting up, which is not reliable.
        "--ro-bind",
        "/proc/sys",
        "/proc/sys",
        "--bind",
        workdir,
        workdir,
        "--chdir",
        workdir,
        "--",
    ]


def _bwrap_server_prefix(config: ProcessConfig, hide_args: tuple[str, ...]) -> list[str]:
    """The fork server's sandbox: the same filesystem, no network, its own PID namespace. It is
    root of its user namespace with CAP_SYS_ADMIN (to unmount bwrap's covers of /proc, so that
    jobs can mount a fresh one) and CAP_SETFCAP (needed to create a job's user namespace that
    maps it), which it keeps inside that namespace only; jobs run without any capability."""
    return [
        "bwrap",
        "--die-with-parent",
        "--new-session",
        "--unshare-all",
        "--unshare-user",
        "--uid",
        "0",
        "--gid",
        "0",
        "--hostname",
        "sandbox",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CAP_SYS_ADMIN",
        "--cap-add",
        "CAP_SETFCAP",
        *_bwrap_mounts(config, hide_args),
        "--chdir",
        "/",
        "--",
    ]


_UNSHARE_PREFIX = (
    "unshare",
    "--user",
    "--map-root-user",
    "--net",
    "--pid",
    "--fork",
    "--kill-child",
    "--mount-proc",
    "--",
)


def _probe(prefix: list[str], python: str, cwd: str) -> str | None:
    """None if a trivial program runs under ``prefix``; else why not."""
    try:
        proc = subprocess.run(
            [*prefix, python, "-I", "-S", "-c", "print('ok')"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if proc.returncode != 0 or proc.stdout.strip() != "ok":
        return f"exit status {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:300]}"
    return None


def _make_plan(config: ProcessConfig) -> _Plan:
    notes: list[str] = []
    linux = sys.platform.startswith("linux")
    hide_args, hidden = _hide_args(config)
    chosen = "none"
    wanted = config.isolation
    with tempfile.TemporaryDirectory(prefix="brite-sbx-probe-", dir=config.workdir_base) as cwd:
        if wanted in ("auto", "bwrap"):
            why = (
                "bwrap is not installed (apt-get install bubblewrap)"
                if shutil.which("bwrap") is None
                else None
            )
            if why is None and linux:
                why = _probe(_bwrap_prefix(config, hide_args, cwd), config.python, cwd)
            elif not linux:
                why = "not Linux"
            if why is None:
                chosen = "bwrap"
            else:
                notes.append(f"bwrap unavailable: {why}")
                if wanted == "bwrap":
                    raise IsolationUnavailableError(
                        f"isolation='bwrap' was requested but {why}; install bubblewrap and allow "
                        "unprivileged user namespaces, or use isolation='auto'"
                    )
        if chosen == "none" and wanted in ("auto", "unshare"):
            why = (
                "unshare is not installed (util-linux)" if shutil.which("unshare") is None else None
            )
            if why is None and linux:
                why = _probe(list(_UNSHARE_PREFIX), config.python, cwd)
            elif not linux:
                why = "not Linux"
            if why is None:
                chosen = "unshare"
            else:
                notes.append(f"unshare unavailable: {why}")
                if wanted == "unshare":
                    raise IsolationUnavailableError(
                        f"isolation='unshare' was requested but {why}; allow unprivileged user "
                        "namespaces (sysctl kernel.unprivileged_userns_clone=1) or use "
                        "isolation='auto'"
                    )
    ns = chosen in ("bwrap", "unshare")
    if chosen != "bwrap":
        hidden = ()
        notes.append("the filesystem is writable wherever the host user can write")
    if chosen == "unshare" and os.geteuid() == 0:
        notes.append("runs as root mapped to root: the program can write any host file")
    pids: PidsController | None = None
    if config.use_cgroups and linux:
        pids, why_not = cgroups.detect()
        if pids is None:
            notes.append(f"no per-job pids cgroup: {why_not}")
    if pids is not None:
        process_limit = pids.describe()
    elif linux and os.geteuid() != 0:
        process_limit = "RLIMIT_NPROC"
    else:
        process_limit = "none"
        notes.append(
            "fork bombs are not bounded: RLIMIT_NPROC never binds root and no writable pids "
            "cgroup was found"
        )
    caps = Capabilities(
        backend="process",
        isolation=chosen,
        pid_namespace=ns,
        network_isolated=ns,
        read_only_fs=chosen == "bwrap",
        user_namespace=ns,
        rlimits=_RLIMIT_NAMES if linux else (),
        env_scrubbed=True,
        kills_orphans=linux,
        hidden_paths=hidden,
        process_limit=process_limit,
        python=config.python,
        notes=tuple(notes),
    )
    return _Plan(chosen, hide_args if chosen == "bwrap" else (), caps, pids)


def plan_for(config: ProcessConfig) -> _Plan:
    """The isolation plan for ``config``, probed once per process and logged once."""
    key = (
        config.isolation,
        config.python,
        config.hide_paths,
        config.sandbox_uid,
        config.use_cgroups,
    )
    with _plans_lock:
        plan = _plans.get(key)
        if plan is None:
            plan = _make_plan(config)
            _plans[key] = plan
            level = logging.INFO if plan.isolation != "none" else logging.WARNING
            logger.log(level, "%s", plan.caps.summary())
            for note in plan.caps.notes:
                logger.log(level, "sandbox: %s", note)
    return plan


# -- output capture -----------------------------------------------------------------------


class _CappedBuffer:
    """Keeps the first and last ``limit/2`` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.head_cap = limit // 2
        self.tail_cap = limit - self.head_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.tail_cap:
                del self.tail[: len(self.tail) - self.tail_cap]

    def text(self, stream: str) -> tuple[str, bool]:
        tail = bytes(self.tail[-self.tail_cap :]) if self.tail_cap else b""
        omitted = self.total - len(self.head) - len(tail)
        head = self.head.decode("utf-8", "replace")
        if omitted <= 0:
            return head + tail.decode("utf-8", "replace"), False
        marker = (
            f"\n[... sandbox: {omitted} bytes of {stream} omitted; the program wrote "
            f"{self.total} bytes, over the {self.head_cap + self.tail_cap}-byte limit ...]\n"
        )
        return head + marker + tail.decode("utf-8", "replace"), True


# -- the backend --------------------------------------------------------------------------


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _rmtree(path: str) -> None:
    def fix(func: Any, p: str, _exc: Any) -> None:
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=fix)
    else:
        shutil.rmtree(path, onerror=fix)


def _user_process_count() -> int:
    uid = os.getuid()
    n = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n


def _sweep_token(token: str) -> int:
    """Kill host processes carrying this job's token (only needed without a PID namespace)."""
    import psutil  # only for the weakest isolation level

    needle = f"{_TOKEN_VAR}={token}"
    killed = 0
    for _ in range(20):
        found = 0
        for proc in psutil.process_iter():
            try:
                if needle in (f"{k}={v}" for k, v in proc.environ().items()):
                    proc.kill()
                    found += 1
            except (psutil.Error, OSError):
                continue
        killed += found
        if not found:
            break
        time.sleep(0.01)
    return killed


_live_backends: weakref.WeakSet[ProcessBackend] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Another thread may have held a backend's lock when the host forked.
    for backend in list(_live_backends):
        backend._server_lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _close_server(box: list[ForkServer | None]) -> None:
    server, box[0] = box[0], None
    if server is not None:
        server.close()


_Classified = tuple[ExecStatus, int | None, str, str | None]


def _exec_result(
    out: _CappedBuffer, err: _CappedBuffer, start: float, classify: Callable[[str], _Classified]
) -> ExecResult:
    """The job's result from its captured streams and ``classify(stderr)`` (status, exit
    code, detail, sandbox error): the same for the per-job and the fork-server paths."""
    stdout, out_trunc = out.text("stdout")
    stderr, err_trunc = err.text("stderr")
    status, exit_code, detail, sandbox_error = classify(stderr)
    return ExecResult(
        status,
        exit_code,
        stdout,
        stderr,
        time.perf_counter() - start,
        stdout_truncated=out_trunc,
        stderr_truncated=err_trunc,
        detail=detail,
        sandbox_error=sandbox_error,
    )


def _host_failure(exc: Exception, start: float) -> ExecResult:
    """The result of a job the sandbox itself failed to run (logged with its traceback)."""
    logger.exception("sandbox: job failed on the host side")
    return ExecResult.sandbox_failed(
        "the sandbox failed on the host",
        f"{type(exc).__name__}: {exc}",
        time.perf_counter() - start,
    )


class ProcessBackend(Backend):
    """Runs each job as a local process tree under the isolation :func:`plan_for` picks,
    through a fork server where that gives the same isolation (see :mod:`sandbox.forkserver`).
    Call :meth:`close` (or drop the backend) to stop the fork server."""

    name = "process"

    def __init__(self, config: ProcessConfig | None = None, **overrides: Any) -> None:
        if config is not None and overrides:
            raise SandboxConfigError(
                f"pass either a ProcessConfig or keyword overrides, not both (got {overrides})"
            )
        self.config = config or ProcessConfig(**overrides)
        self._server_lock = threading.RLock()  # re-entered when the start-up probe fails
        self._server_box: list[ForkServer | None] = [None]
        self._server_unavailable: str | None = None
        _live_backends.add(self)
        # The server must not outlive the backend (nor the interpreter: see forkserver.py).
        self._finalizer = weakref.finalize(self, _close_server, self._server_box)

    def capabilities(self) -> Capabilities:
        plan = plan_for(self.config)
        server = self.fork_server(plan)
        notes = plan.caps.notes
        if self._server_unavailable is not None:
            notes += (f"fork server unavailable: {self._server_unavailable}",)
        return dataclasses.replace(plan.caps, fork_server=server is not None, notes=notes)

    def close(self) -> None:
        """Stop the fork server (a later job starts a new one)."""
        with self._server_lock:
            _close_server(self._server_box)

    # -- the fork server ----------------------------------------------------------------------
    def fork_server(self, plan: _Plan | None = None) -> ForkServer | None:
        """The running fork server, started on first use; None where jobs run the plain way
        (``fork_server="off"``, isolation other than ``bwrap``, or it could not start)."""
        plan = plan or plan_for(self.config)
        mode = self.config.fork_server
        if mode == "off":
            return None
        if plan.isolation != "bwrap":
            if mode == "on":
                raise IsolationUnavailableError(
                    f"fork_server='on' needs isolation 'bwrap', but this backend uses "
                    f"{plan.isolation!r}: the fork server only runs inside bwrap"
                )
            return None
        with self._server_lock:
            server = self._server_box[0]
            if server is None and self._server_unavailable is None:
                server = self._start_server(plan)
            if server is None and mode == "on":
                raise IsolationUnavailableError(
                    f"fork_server='on' was requested but {self._server_unavailable}"
                )
            return server

    def _start_server(self, plan: _Plan) -> ForkServer | None:
        bindir = os.path.dirname(self.config.python)
        env = dict(BASE_ENV)
        env.update(PATH=f"{bindir}:/usr/local/bin:/usr/bin:/bin", HOME="/tmp", TMPDIR="/tmp")
        env.update(self.config.extra_env)
        server = ForkServer(
            _bwrap_server_prefix(self.config, plan.hide_args),
            python=self.config.python,
            env=env,
            preload=self.config.fork_server_preload,
            kill_grace_s=self.config.kill_grace_s,
        )
        try:
            server.start()
            self._check_server(server, plan)
        except Exception as exc:  # never a reason to fail a job: run it the plain way
            server.close()
            self._server_unavailable = str(exc)
            logger.warning("sandbox: fork server unavailable, one sandbox per job: %s", exc)
            return None
        self._server_box[0] = server
        logger.info("sandbox: fork server started (pid %s)", server.pid)
        return server

    def _check_server(self, server: ForkServer, plan: _Plan) -> None:
        """Run one job through a fresh server and check what it runs as: never use a server
        whose jobs would be less isolated than a plain job."""
        probe = Job(
            "import os\nst = open('/proc/self/status').read().splitlines()\n"
            "keys = ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs')\n"
            "caps = [ln.split()[1] for ln in st if ln.startswith(keys)]\n"
            "print(os.getuid(), os.getpid(), *caps)\n"
            "print(open('/proc/sys/kernel/hostname', 'w'))",
            timeout_s=30,
        )
        result = self._run_forked(server, probe, plan, time.perf_counter())
        if result is None or result.stdout.split("\n")[0].split() != [
            str(self.config.sandbox_uid),
            "2",
            *["0000000000000000"] * 5,
            "1",
        ]:
            raise ForkServerError(f"its jobs do not run as expected: {result}")
        if "Read-only file system" not in result.stderr:
            raise ForkServerError(f"its jobs can write sysctls: {result}")

    def _forkable(self, job: Job, server: ForkServer) -> bool:
        """Whether the job can run forked from the server's interpreter: not if it sets a
        variable that only takes effect when an interpreter starts (PYTHONHASHSEED, ...)."""
        return all(
            not key.startswith(STARTUP_ENV_PREFIXES) or server.env.get(key) == value
            for key, value in job.env.items()
        )

    def _run_forked(
        self, server: ForkServer, job: Job, plan: _Plan, start: float
    ) -> ExecResult | None:
        """Run ``job`` through the fork server; None if it never reached the server."""
        job_id = uuid.uuid4().hex
        # On the job's private /tmp: the path is the job's own, whatever another job uses,
        # and the same for every job, so a program compiled once names it in its tracebacks.
        workdir = FORK_SERVER_WORKDIR
        compiled = server.compiled(job.code, f"{workdir}/main.py")
        payload = build_payload(job.code, job.files, self._env(job, plan, workdir, ""))
        header = {
            "id": job_id,
            "timeout_s": job.timeout_s,
            "rlimits": self._rlimits(job, plan),
            "workdir": workdir,
            "tmpfs_mb": self.config.fork_server_tmpfs_mb,
            "uid": self.config.sandbox_uid,
            "kill_budget_s": min(2.0, self.config.kill_grace_s / 2),
        }
        limit = job.max_output_bytes or self.config.max_output_bytes
        out, err = _CappedBuffer(limit), _CappedBuffer(limit)
        stdin = job.stdin.encode("utf-8") if job.stdin is not None else None
        cgroup = self._job_cgroup(plan)
        try:
            outcome = server.run(
                header,
                payload,
                stdin,
                cgroup.path / "cgroup.procs" if cgroup is not None else None,
                (out.add, err.add),
                job.timeout_s,
                compiled,
            )
        finally:
            if cgroup is not None:
                # Everything of the job is dead or dying (its init kills and reaps the rest
                # before it reports); the init's own exit is not waited for.
                cgroups.dispose(cgroup, budget_s=self.config.kill_grace_s)
        if not outcome.started:  # it could not be (re)started: plain jobs from now on
            logger.warning("sandbox: %s; jobs run the plain way from now on", outcome.lost)
            with self._server_lock:
                if self._server_box[0] is server:
                    self._server_unavailable = outcome.lost
                    _close_server(self._server_box)
            return None
        return _exec_result(
            out, err, start, lambda stderr: self._classify_forked(job, outcome, stderr)
        )

    def _classify_forked(
        self, job: Job, outcome: Outcome, stderr: str
    ) -> tuple[ExecStatus, int | None, str, str | None]:
        if outcome.report is not None or outcome.host_killed:
            return self._classify(job, outcome.report, 0, outcome.host_killed, stderr)
        if outcome.lost:
            return ExecStatus.ERROR, None, "the fork server died while the job ran", outcome.lost
        return (
            ExecStatus.ERROR,
            None,
            "the job's supervisor died without a report",
            "the fork server closed the job's status pipe without a report",
        )

    def _env(self, job: Job, plan: _Plan, workdir: str, token: str) -> dict[str, str]:
        bindir = os.path.dirname(self.config.python)
        env = dict(BASE_ENV)
        env.update(
            PATH=f"{bindir}:/usr/local/bin:/usr/bin:/bin",
            HOME=workdir,
            TMPDIR=os.path.join(workdir, ".tmp"),
            MPLCONFIGDIR=os.path.join(workdir, ".tmp", "matplotlib"),
        )
        env.update(self.config.extra_env)
        env.update(job.env)
        if not plan.caps.pid_namespace:  # lets the host find escaped processes afterwards
            env[_TOKEN_VAR] = token
        return env

    def _rlimits(self, job: Job, plan: _Plan) -> dict[str, list[int]]:
        cpu = math.ceil(job.timeout_s) + 1
        nproc = self.config.max_processes
        if not plan.caps.user_namespace:
            nproc += _user_process_count()
        mem = job.memory_mb * 1024 * 1024
        fsize = self.config.max_file_mb * 1024 * 1024
        return {
            "RLIMIT_AS": [mem, mem],
            "RLIMIT_CPU": [cpu, cpu + 1],
            "RLIMIT_FSIZE": [fsize, fsize],
            "RLIMIT_NOFILE": [self.config.max_open_files, self.config.max_open_files],
            "RLIMIT_NPROC": [nproc, nproc],
            "RLIMIT_CORE": [0, 0],
        }

    def run(self, job: Job) -> ExecResult:
        start = time.perf_counter()
        plan = plan_for(self.config)  # IsolationUnavailableError is a configuration error
        server = self.fork_server(plan)
        if server is not None and self._forkable(job, server):
            try:
                result = self._run_forked(server, job, plan, start)
            except Exception as exc:  # a host-side failure, never the program's
                return _host_failure(exc, start)
            if result is not None:
                return result
        root = tempfile.mkdtemp(prefix="brite-sbx-", dir=self.config.workdir_base)
        try:
            return self._run_in(job, plan, root, start)
        except Exception as exc:  # a host-side failure, never the program's
            return _host_failure(exc, start)
        finally:
            _rmtree(root)

    def _run_in(self, job: Job, plan: _Plan, root: str, start: float) -> ExecResult:
        workdir = os.path.join(root, "work")
        os.makedirs(os.path.join(workdir, ".tmp"))
        with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8") as fh:
            fh.write(job.code)
        for name, text in job.files.items():
            path = os.path.join(workdir, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        stdin_path = os.path.join(root, "stdin")
        if job.stdin is not None:
            with open(stdin_path, "w", encoding="utf-8") as fh:
                fh.write(job.stdin)

        token = uuid.uuid4().hex
        status_r, status_w = os.pipe()
        spec = {
            "status_fd": status_w,
            "argv": [self.config.python, "-s", "main.py"],
            "timeout_s": job.timeout_s,
            "rlimits": self._rlimits(job, plan),
            "kill_budget_s": min(2.0, self.config.kill_grace_s / 2),
        }
        runner = [self.config.python, "-I", "-S", "-c", _RUNNER_SOURCE, json.dumps(spec)]
        if plan.isolation == "bwrap":
            cmd = _bwrap_prefix(self.config, plan.hide_args, workdir) + runner
        elif plan.isolation == "unshare":
            cmd = [*_UNSHARE_PREFIX, *runner]
        else:
            cmd = runner
        cgroup = self._job_cgroup(plan)
        if cgroup is not None:
            # Gate: a shell waits on its stdin pipe until the host has put it in the job's
            # cgroup, so every process the job ever forks is inside it; then it execs the
            # wrapper with the job's real stdin.
            stdin_arg = stdin_path if job.stdin is not None else os.devnull
            cmd = ["/bin/sh", "-c", 'read -r _; exec "$@" <"$0"', stdin_arg, *cmd]
        gate_r, gate_w = os.pipe() if cgroup is not None else (-1, -1)
        stdin_fh = (
            open(stdin_path, "rb") if job.stdin is not None and cgroup is None else None  # noqa: SIM115
        )
        try:
            if cgroup is not None:
                stdin_src: Any = gate_r
            else:
                stdin_src = stdin_fh if stdin_fh is not None else subprocess.DEVNULL
            try:
                proc = subprocess.Popen(
                    cmd,
                    cwd=workdir,
                    env=self._env(job, plan, workdir, token),
                    stdin=stdin_src,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    pass_fds=(status_w,),
                    start_new_session=True,
                )
            except OSError as exc:
                os.close(status_r)
                return ExecResult.sandbox_failed(
                    "the sandbox could not start",
                    f"could not start {cmd[0]}: {exc}",
                    time.perf_counter() - start,
                )
            finally:
                os.close(status_w)
                if stdin_fh is not None:
                    stdin_fh.close()
                if gate_r >= 0:
                    os.close(gate_r)
            if cgroup is not None:
                try:
                    cgroup.add(proc.pid)
                except OSError as exc:
                    logger.warning(
                        "sandbox: could not join the job cgroup (%s); running without", exc
                    )
                with contextlib.suppress(OSError):
                    os.write(gate_w, b"go\n")
                os.close(gate_w)
                gate_w = -1
            return self._collect(job, plan, proc, status_r, token, start)
        finally:
            if gate_w >= 0:
                os.close(gate_w)
            if cgroup is not None:
                cgroup.kill_all(budget_s=self.config.kill_grace_s)
                cgroup.remove()

    def _job_cgroup(self, plan: _Plan) -> JobCgroup | None:
        if plan.pids is None:
            return None
        try:
            # Room for the wrappers (sh, bwrap and its init, the supervisor) on top.
            return plan.pids.create(self.config.max_processes + 8)
        except OSError as exc:
            logger.warning("sandbox: could not create a job cgroup (%s); running without", exc)
            return None

    def _collect(
        self,
        job: Job,
        plan: _Plan,
        proc: subprocess.Popen[bytes],
        status_r: int,
        token: str,
        start: float,
    ) -> ExecResult:
        limit = job.max_output_bytes or self.config.max_output_bytes
        out, err = _CappedBuffer(limit), _CappedBuffer(limit)
        report_buf = bytearray()
        assert proc.stdout is not None and proc.stderr is not None
        sinks = {
            proc.stdout.fileno(): out.add,
            proc.stderr.fileno(): err.add,
            status_r: report_buf.extend,
        }
        backup_deadline = time.monotonic() + job.timeout_s + self.config.kill_grace_s
        host_killed = False
        with selectors.DefaultSelector() as sel:
            for fd in sinks:
                sel.register(fd, selectors.EVENT_READ)
            while sinks:
                remaining = backup_deadline - time.monotonic()
                if remaining <= 0:
                    host_killed = True
                    break
                for key, _ in sel.select(timeout=remaining):
                    fd = key.fd
                    data = os.read(fd, 1 << 16)
                    if data:
                        sinks[fd](data)
                    else:
                        sel.unregister(fd)
                        del sinks[fd]
                        if fd == status_r and not report_buf:
                            # The supervisor died without reporting (the program killed it):
                            # nothing enforces the deadline any more, so end everything now.
                            self._kill(proc)
                            if not plan.caps.pid_namespace:
                                _sweep_token(token)
        if host_killed:
            self._kill(proc)
        try:
            rc = proc.wait(timeout=max(0.1, backup_deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            host_killed = True
            self._kill(proc)
            rc = proc.wait()
        os.close(status_r)
        proc.stdout.close()
        proc.stderr.close()

        report: dict[str, Any] | None = None
        if report_buf:
            try:
                report = json.loads(report_buf.decode())
            except ValueError:
                report = None
        if plan.caps.pid_namespace:
            # The namespace's init is gone, so its processes are too; the group kill only
            # catches a wrapper that outlived its child.
            self._killpg(proc.pid)
        elif report is None or report.get("leftover") or host_killed:
            self._killpg(proc.pid)
            _sweep_token(token)

        return _exec_result(
            out, err, start, lambda stderr: self._classify(job, report, rc, host_killed, stderr)
        )

    @staticmethod
    def _killpg(pgid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        self._killpg(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()

    @staticmethod
    def _classify(
        job: Job,
        report: dict[str, Any] | None,
        rc: int,
        host_killed: bool,
        stderr: str,
    ) -> tuple[ExecStatus, int | None, str, str | None]:
        if report is None:
            if host_killed:
                return (
                    ExecStatus.TIMEOUT,
                    None,
                    f"ran past the {job.timeout_s:g} s limit and was killed by the host",
                    None,
                )
            if stderr.startswith(("bwrap:", "unshare:")):
                first = stderr.splitlines()[0]
                return ExecStatus.ERROR, rc, "the sandbox could not start", first
            if rc < 0 or rc > 128:  # a signal (wrappers report 128 + signal number)
                how = _signal_name(-rc if rc < 0 else rc - 128)
                return (
                    ExecStatus.KILLED,
                    rc,
                    f"the sandbox supervisor was killed from inside ({how})",
                    None,
                )
            tail = stderr.strip().splitlines()[-1:] or [""]
            return (
                ExecStatus.ERROR,
                rc,
                "the sandbox supervisor failed",
                f"the supervisor exited with status {rc} without a report: {tail[0][:300]}",
            )
        if report.get("start_error"):
            return ExecStatus.ERROR, None, "the program could not start", report["start_error"]
        exit_code = int(report["exit_code"])
        if report.get("timed_out"):
            return (
                ExecStatus.TIMEOUT,
                exit_code,
                f"ran past the {job.timeout_s:g} s wall-clock limit",
                None,
            )
        sig = report.get("signal")
        if sig == signal.SIGXCPU:
            return ExecStatus.TIMEOUT, exit_code, "ran past the CPU-time limit", None
        if sig == signal.SIGXFSZ:
            return ExecStatus.KILLED, exit_code, "wrote a file over the file-size limit", None
        if sig:
            return ExecStatus.KILLED, exit_code, f"killed by {_signal_name(sig)}", None
        if exit_code == 0:
            return ExecStatus.OK, 0, "", None
        if _OOM_RE.search(stderr[-3000:]):
            return (
                ExecStatus.OOM,
                exit_code,
                f"ran out of memory under the {job.memory_mb} MB limit",
                None,
            )
        return ExecStatus.ERROR, exit_code, f"exited with status {exit_code}", None
