"""The docker backend: each job runs in a fresh, throw-away container.

Why a second backend: a container gives the strongest isolation the project offers on a host
with a Docker engine (its own root filesystem, cgroup memory and pids limits, seccomp, no
capabilities), and an image can carry a whole library stack (BigCodeBench's requirements)
without touching the host's Python.

Each container runs with ``--network none``, a read-only root, a private ``tmpfs`` working
directory and ``/tmp``, a memory limit (the job's ``memory_mb`` plus an allowance for the
supervisor and the tmpfs), a pids limit, all capabilities dropped, ``no-new-privileges`` and
a non-root user (``nobody``, uid 65534). Inside, a small PID-1 bootstrap copies the job's files
into the working directory and starts the same supervisor as the process backend
(``sandbox/_runner.py``: rlimits, deadline, orphan killing); when it is done, the bootstrap
kills every other process in the container and writes the supervisor's report as the last
line of the container's stderr.

By default the image is a minimal root filesystem built locally on first use (``docker
import`` of a few folders and symlinks) and the host's interpreter is bind-mounted read-only
(``/usr``, the interpreter's prefixes, the virtualenv), so no registry is needed. Point
``DockerConfig.image`` at an image that has its own Python (and set ``mount_host_python=False``
and ``python``) to run jobs against a different library stack. The daemon must be local: job
files reach the container through a read-only bind mount of a host temporary folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sandbox.backend import Backend
from sandbox.errors import IsolationUnavailableError, SandboxConfigError
from sandbox.process import _RUNNER_SOURCE, BASE_ENV, ProcessBackend, _CappedBuffer
from sandbox.types import Capabilities, ExecResult, ExecStatus, Job

logger = logging.getLogger("sandbox")

LABEL = "io.brite.sandbox"
"""Every container the backend creates carries this label (value: the backend's session id),
so leftovers can be found and removed."""
BASE_IMAGE_REPO = "brite-sandbox-base"
MARKER_VAR = "BRITE_SANDBOX"
"""Set to ``docker`` in every container's environment: lets a host-side scan recognise
processes that belong to a sandbox container."""
JOB_MOUNT = "/.brite-job"
"""Where the host folder holding the job's files is mounted (read-only) in the container."""
_REPORT_TAG = b"\n\x1eBRITE-DOCKER-REPORT "
_HOLD_BYTES = 1 << 16
"""The last bytes of stderr held back until the end, where the bootstrap's report is."""
_RLIMITS_IN_CONTAINER = ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE")

_IMAGE_RE = re.compile(
    r"^(?:[A-Za-z0-9][A-Za-z0-9.-]*(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
_USER_RE = re.compile(r"^(\d+)(?::(\d+))?$")

# The PID-1 bootstrap that runs inside the container (standard library only, ``python -I -S``).
_BOOT_SOURCE = r'''
import json, os, shutil, signal, sys, time

TAG = b"\n\x1eBRITE-DOCKER-REPORT "


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        except InterruptedError:
            continue
        if pid == 0:
            return


def kill_others(budget):
    """PID 1 is exempt from kill(-1): this ends every other process in the container."""
    end = time.monotonic() + budget
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            break
        except PermissionError:
            break
        reap()
        if time.monotonic() > end:
            break
        time.sleep(0.001)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue


def main():
    spec = json.loads(sys.argv[1])
    report = {"runner": None, "boot_timeout": False}
    try:
        shutil.copytree(os.path.join(spec["in"], "work"), spec["workdir"],
                        dirs_exist_ok=True, copy_function=shutil.copyfile)
    except OSError as exc:
        report["boot_error"] = "could not copy the job files: %s" % exc
        os.write(2, TAG + json.dumps(report).encode() + b"\n")
        os._exit(0)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.set_inheritable(w, True)
            src = os.path.join(spec["in"], "stdin") if spec["stdin"] else os.devnull
            fd = os.open(src, os.O_RDONLY)
            if fd != 0:
                os.dup2(fd, 0)
                os.close(fd)
            runner_spec = dict(spec["runner_spec"], status_fd=w)
            argv = spec["runner"] + [json.dumps(runner_spec)]
            os.execv(argv[0], argv)
        except BaseException as exc:
            os.write(2, ("sandbox bootstrap: could not start the supervisor: %s\n" % exc).encode())
        os._exit(127)
    os.close(w)
    deadline = time.monotonic() + float(spec["deadline_s"])
    import select
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            report["boot_timeout"] = True
            break
        try:
            ready, _, _ = select.select([r], [], [], left)
        except InterruptedError:
            continue
        if not ready:
            continue
        data = os.read(r, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    if report["boot_timeout"]:
        kill_others(5.0)
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        status = 0
    kill_others(5.0)
    if os.WIFSIGNALED(status):
        report["runner_rc"] = -os.WTERMSIG(status)
    else:
        report["runner_rc"] = os.WEXITSTATUS(status)
    if chunks:
        try:
            report["runner"] = json.loads(b"".join(chunks).decode())
        except ValueError:
            report["runner"] = None
    os.write(2, TAG + json.dumps(report).encode() + b"\n")
    os._exit(0)


main()
'''

_PROBE_SOURCE = (
    "import json, os, sys\n"
    "paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,\n"
    "         os.path.dirname(sys.executable), os.path.dirname(os.path.realpath(sys.executable))]\n"
    "paths += [p for p in sys.path if p]\n"
    "print(json.dumps(paths))\n"
)


def _positive_int(owner: str, name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SandboxConfigError(f"{owner}.{name} must be an int >= {minimum}, got {value!r}")


def _absolute(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.startswith("/") or "\x00" in value:
        raise SandboxConfigError(f"{owner}.{name} must be an absolute path, got {value!r}")


@dataclass(frozen=True)
class DockerConfig:
    """Settings of the docker backend; per-job limits (time, memory) live on :class:`Job`."""

    image: str | None = None
    """The image to run; None builds (once) a minimal local image matching this host's
    layout, for use with ``mount_host_python``. A named image must already be present
    (``docker pull`` / ``docker build`` it first)."""
    python: str = sys.executable
    """The interpreter *inside* the container (the host's own when its folders are mounted)."""
    mount_host_python: bool = True
    """Bind-mount ``/usr``, the interpreter's prefixes and its virtualenv read-only, so the
    host's Python and installed libraries run inside a bare image."""
    extra_mounts: tuple[str, ...] = ()
    """More host folders or files to mount read-only at the same path."""
    base_url: str | None = None
    """The daemon's address (``unix:///path/docker.sock``); None uses ``$DOCKER_HOST`` or the
    default socket."""
    workdir: str = "/sandbox"
    """The job's working directory in the container: a private tmpfs."""
    workdir_mb: int = 256
    """Size of the working-directory tmpfs (it counts against the memory limit)."""
    tmp_mb: int = 64
    """Size of the private ``/tmp`` tmpfs."""
    memory_overhead_mb: int = 256
    """Added to the job's ``memory_mb`` (the program's address-space limit) for the
    container's cgroup memory limit: the bootstrap, the supervisor and tmpfs files."""
    max_processes: int = 256
    """The container's pids limit (processes and threads), plus a few for the supervisor."""
    cpus: float | None = None
    """CPU quota per container (``--cpus``); None leaves it unlimited."""
    max_output_bytes: int = 1 << 20
    """Default per-stream cap on kept stdout/stderr (head and tail are kept)."""
    max_file_mb: int = 256
    max_open_files: int = 1024
    kill_grace_s: float = 5.0
    """How long past the job's deadline the host waits before killing the container."""
    user: str = "65534:65534"
    """``uid[:gid]`` the job runs as (numeric; root is refused)."""
    api_timeout_s: float = 120.0
    """Timeout of one Docker API call (creating, starting, removing a container)."""
    extra_env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        owner = "DockerConfig"
        if self.image is not None and (
            not isinstance(self.image, str)
            or len(self.image) > 255
            or not _IMAGE_RE.match(self.image)
        ):
            raise SandboxConfigError(
                f"{owner}.image must be an image reference like 'name:tag' or None, "
                f"got {self.image!r}"
            )
        _absolute(owner, "python", self.python)
        _absolute(owner, "workdir", self.workdir)
        if os.path.normpath(self.workdir) in ("/", "/usr", "/etc", "/proc", "/dev", "/sys", "/tmp"):
            raise SandboxConfigError(
                f"{owner}.workdir must be a folder of its own, not a system folder, "
                f"got {self.workdir!r}"
            )
        if self.workdir == JOB_MOUNT or self.workdir.startswith(JOB_MOUNT + "/"):
            raise SandboxConfigError(f"{owner}.workdir must not be under {JOB_MOUNT}")
        if not isinstance(self.mount_host_python, bool):
            raise SandboxConfigError(
                f"{owner}.mount_host_python must be a bool, got {self.mount_host_python!r}"
            )
        if self.image is None and not self.mount_host_python:
            raise SandboxConfigError(
                f"{owner}: the built-in base image has no Python; with mount_host_python=False "
                "name an image that has one (image=...) and its interpreter (python=...)"
            )
        mounts = tuple(self.extra_mounts)
        for m in mounts:
            _absolute(owner, "extra_mounts", m)
            if not os.path.exists(m):
                raise SandboxConfigError(f"{owner}.extra_mounts: {m!r} does not exist")
        object.__setattr__(self, "extra_mounts", mounts)
        if self.base_url is not None and (not isinstance(self.base_url, str) or not self.base_url):
            raise SandboxConfigError(
                f"{owner}.base_url must be a daemon address or None, got {self.base_url!r}"
            )
        for name in ("workdir_mb", "tmp_mb", "max_file_mb", "max_open_files", "max_processes"):
            _positive_int(owner, name, getattr(self, name))
        _positive_int(owner, "memory_overhead_mb", self.memory_overhead_mb, 0)
        _positive_int(owner, "max_output_bytes", self.max_output_bytes, 64)
        for name in ("kill_grace_s", "api_timeout_s"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 < value < math.inf
            ):
                raise SandboxConfigError(
                    f"{owner}.{name} must be a finite number > 0, got {value!r}"
                )
        if self.cpus is not None and (
            isinstance(self.cpus, bool)
            or not isinstance(self.cpus, (int, float))
            or not 0 < self.cpus < math.inf
        ):
            raise SandboxConfigError(
                f"{owner}.cpus must be a finite number > 0 or None, got {self.cpus!r}"
            )
        m = _USER_RE.match(self.user) if isinstance(self.user, str) else None
        if m is None:
            raise SandboxConfigError(f"{owner}.user must be 'uid' or 'uid:gid', got {self.user!r}")
        if int(m.group(1)) == 0:
            raise SandboxConfigError(f"{owner}.user must not be root, got {self.user!r}")
        env = dict(self.extra_env)
        for k, v in env.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise SandboxConfigError(f"{owner}.extra_env must map str to str, got {k!r}: {v!r}")
        object.__setattr__(self, "extra_env", MappingProxyType(env))

    @property
    def uid_gid(self) -> tuple[int, int]:
        m = _USER_RE.match(self.user)
        assert m is not None
        uid = int(m.group(1))
        return uid, int(m.group(2) or uid)


# -- the image and the mounts ---------------------------------------------------------------


def _layout_entries() -> list[tuple[str, str | None]]:
    """Top-level entries of the base image: (name, symlink target or None for a folder),
    mirroring this host's merged-/usr symlinks so mounted binaries find their loader."""
    entries: list[tuple[str, str | None]] = [
        (name, None) for name in ("etc", "tmp", "proc", "sys", "dev", "usr", "run", "var")
    ]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / name
        if host.is_symlink():
            entries.append((name, os.readlink(host)))
    return entries


def base_image_tar() -> bytes:
    """A minimal root filesystem (empty folders, the host's top-level symlinks, an
    /etc/passwd naming ``nobody``); deterministic, so its hash names the image."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, target in _layout_entries():
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if target is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o1777 if name == "tmp" else 0o755
            else:
                info.type = tarfile.SYMTYPE
                info.linkname = target
                info.mode = 0o777
            tf.addfile(info)
        for name, text in (
            (
                "etc/passwd",
                "root:x:0:0:root:/root:/usr/sbin/nologin\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
            ),
            ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.mode = 0o644
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def base_image_tag() -> str:
    return f"{BASE_IMAGE_REPO}:{hashlib.sha256(base_image_tar()).hexdigest()[:12]}"


def build_base_image(client: Any) -> str:
    """Import the minimal root filesystem as a local image (no registry needed); its tag."""
    tag = base_image_tag()
    repo, _, version = tag.partition(":")
    client.api.import_image_from_data(base_image_tar(), repository=repo, tag=version)
    return tag


def _outermost(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in sorted(set(paths), key=lambda q: len(q.parts)):
        if not any(p == m or p.is_relative_to(m) for m in out):
            out.append(p)
    return out


def host_python_mounts(python: str) -> tuple[str, ...]:
    """Host paths the interpreter ``python`` needs inside a bare image, outermost only:
    ``/usr``, real (non-symlink) top-level library folders, the loader cache, and the
    interpreter's prefixes and ``sys.path`` as the interpreter itself reports them."""
    try:
        proc = subprocess.run(
            [python, "-I", "-c", _PROBE_SOURCE],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
        )
        reported = json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise IsolationUnavailableError(f"cannot run {python} to find its folders: {exc}") from exc
    if not isinstance(reported, list):
        raise IsolationUnavailableError(
            f"cannot run {python} to find its folders: {(proc.stderr or proc.stdout)[-300:]}"
        )
    system = [Path("/usr")]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = Path("/") / name
        if p.is_dir() and not p.is_symlink():
            system.append(p)
    found: list[Path] = []
    for raw in [*reported, python, os.path.realpath(python)]:
        for q in (Path(raw), Path(os.path.realpath(raw))):
            if not q.is_absolute() or not q.exists():
                continue
            q = q if q.is_dir() else q.parent
            if q == Path("/") or any(q == s or q.is_relative_to(s) for s in system):
                continue
            found.append(q)
    mounts = [str(p) for p in _outermost(system + found)]
    for extra in ("/etc/ld.so.cache", "/etc/alternatives", "/etc/localtime"):
        if os.path.exists(extra):
            mounts.append(extra)
    return tuple(mounts)


# -- the backend ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Setup:
    """What the backend worked out once: the client, the image, the mounts, the report."""

    client: Any
    image: str
    mounts: tuple[str, ...]
    caps: Capabilities


class _FrameReader:
    """Splits Docker's multiplexed attach stream (8-byte headers) into stdout and stderr."""

    def __init__(self, on_stdout: Any, on_stderr: Any) -> None:
        self.buf = bytearray()
        self.sinks = {1: on_stdout, 2: on_stderr}

    def feed(self, data: bytes) -> None:
        self.buf += data
        pos = 0
        n = len(self.buf)
        while n - pos >= 8:
            stream, size = struct.unpack_from(">BxxxL", self.buf, pos)
            if n - pos - 8 < size:
                break
            sink = self.sinks.get(stream)
            if sink is not None:
                sink(bytes(self.buf[pos + 8 : pos + 8 + size]))
            pos += 8 + size
        if pos:
            del self.buf[:pos]


class _StderrWithReport:
    """Holds back the last bytes of stderr, where the bootstrap's report line is."""

    def __init__(self, limit: int) -> None:
        self.capped = _CappedBuffer(limit)
        self.pending = bytearray()

    def add(self, data: bytes) -> None:
        self.pending += data
        if len(self.pending) > 2 * _HOLD_BYTES:
            cut = len(self.pending) - _HOLD_BYTES
            self.capped.add(bytes(self.pending[:cut]))
            del self.pending[:cut]

    def finish(self) -> dict[str, Any] | None:
        """Flush the held bytes; the report found at their end, if any."""
        report: dict[str, Any] | None = None
        idx = self.pending.rfind(_REPORT_TAG)
        if idx >= 0:
            line = bytes(self.pending[idx + len(_REPORT_TAG) :]).split(b"\n", 1)[0]
            try:
                parsed = json.loads(line.decode("utf-8", "replace"))
                report = parsed if isinstance(parsed, dict) else None
            except ValueError:
                report = None
            if report is not None:
                del self.pending[idx:]
        self.capped.add(bytes(self.pending))
        self.pending.clear()
        return report


class DockerBackend(Backend):
    """Runs each job in a fresh container (see the module docstring for the settings)."""

    name = "docker"

    def __init__(self, config: DockerConfig | None = None, **overrides: Any) -> None:
        if config is not None and overrides:
            raise SandboxConfigError(
                f"pass either a DockerConfig or keyword overrides, not both (got {overrides})"
            )
        self.config = config or DockerConfig(**overrides)
        self.session = uuid.uuid4().hex[:16]
        self._setup_state: _Setup | None = None
        self._setup_error: str | None = None
        self._lock = threading.Lock()

    # -- setup ---------------------------------------------------------------------------
    def _connect(self) -> Any:
        try:
            import docker
        except ImportError:
            raise IsolationUnavailableError(
                "the docker backend needs the Docker SDK for Python: pip install 'brite[docker]'"
            ) from None
        where = self.config.base_url or os.environ.get("DOCKER_HOST") or "the default socket"
        pool = max(10, 2 * (os.cpu_count() or 1))
        try:
            if self.config.base_url:
                client = docker.DockerClient(
                    base_url=self.config.base_url,
                    version="auto",
                    timeout=math.ceil(self.config.api_timeout_s),
                    max_pool_size=pool,
                )
            else:
                client = docker.from_env(
                    version="auto",
                    timeout=math.ceil(self.config.api_timeout_s),
                    max_pool_size=pool,
                )
            client.ping()
        except Exception as exc:
            raise IsolationUnavailableError(
                f"cannot reach the Docker daemon at {where}: {type(exc).__name__}: {exc}"
            ) from exc
        return client

    def _ensure_image(self, client: Any) -> str:
        import docker

        if self.config.image is None:
            tag = base_image_tag()
            try:
                client.images.get(tag)
            except docker.errors.ImageNotFound:
                logger.info("sandbox: building the local base image %s", tag)
                build_base_image(client)
            return tag
        try:
            client.images.get(self.config.image)
        except docker.errors.ImageNotFound:
            raise IsolationUnavailableError(
                f"docker image {self.config.image!r} is not present on the daemon; pull or build "
                "it first (docker pull / docker build), or use image=None for the built-in base"
            ) from None
        return self.config.image

    def _setup(self) -> _Setup:
        with self._lock:
            if self._setup_state is not None:
                return self._setup_state
            if self._setup_error is not None:
                raise IsolationUnavailableError(self._setup_error)
            try:
                state = self._make_setup()
            except IsolationUnavailableError as exc:
                self._setup_error = str(exc)
                raise
            self._setup_state = state
            logger.info("%s", state.caps.summary())
            return state

    def _make_setup(self) -> _Setup:
        client = self._connect()
        try:
            image = self._ensure_image(client)
            mounts: tuple[str, ...] = ()
            if self.config.mount_host_python:
                mounts = host_python_mounts(self.config.python)
            mounts += self.config.extra_mounts
            info = client.info()
            version = client.version()
        except IsolationUnavailableError:
            client.close()
            raise
        except Exception as exc:
            client.close()
            raise IsolationUnavailableError(
                f"the Docker daemon failed during setup: {type(exc).__name__}: {exc}"
            ) from exc
        security = [str(s) for s in info.get("SecurityOptions") or []]
        userns = any("userns" in s for s in security)
        seccomp = any("seccomp" in s for s in security)
        uid, gid = self.config.uid_gid
        notes = [
            f"Docker engine {version.get('Version', '?')} (API {version.get('ApiVersion', '?')}), "
            f"cgroup v{info.get('CgroupVersion', '?')}, image {image}",
            f"runs as uid {uid}:{gid} with all capabilities dropped and no-new-privileges"
            + (", seccomp default profile" if seccomp else ", NO seccomp profile"),
            f"memory: the container's cgroup limit is memory_mb + {self.config.memory_overhead_mb}"
            " MB (RLIMIT_AS of memory_mb applies to the program itself)",
            "only the mounted folders are visible: " + (", ".join(mounts) or "none"),
        ]
        if not userns:
            notes.append(f"no user-namespace remapping on the daemon: uid {uid} is the host's")
        caps = Capabilities(
            backend="docker",
            isolation="docker",
            pid_namespace=True,
            network_isolated=True,
            read_only_fs=True,
            user_namespace=userns,
            rlimits=_RLIMITS_IN_CONTAINER,
            env_scrubbed=True,
            kills_orphans=True,
            hidden_paths=(),
            process_limit=f"container pids limit ({self.config.max_processes + 8})",
            python=self.config.python,
            notes=tuple(notes),
        )
        state = _Setup(client, image, mounts, caps)
        probe = self._run_container(state, Job("print('ok')", timeout_s=60), time.perf_counter())
        if not probe.ok or probe.stdout != "ok\n":
            client.close()
            why = probe.sandbox_error or probe.detail or probe.status.value
            raise IsolationUnavailableError(
                f"a trivial program does not run in image {image} ({why}): "
                f"{(probe.stderr or probe.stdout).strip()[-400:]}"
            )
        return state

    def capabilities(self) -> Capabilities:
        return self._setup().caps

    @property
    def uses_host_python(self) -> bool:
        """Programs import the host's interpreter and libraries (the code verifier checks
        BigCodeBench's libraries here only then)."""
        return self.config.mount_host_python

    # -- running a job -----------------------------------------------------------------------
    def run(self, job: Job) -> ExecResult:
        start = time.perf_counter()
        setup = self._setup()  # IsolationUnavailableError is a configuration error
        return self._run_container(setup, job, start)

    def _env(self, job: Job) -> dict[str, str]:
        env = dict(BASE_ENV)
        env.update(
            PATH=f"{os.path.dirname(self.config.python)}:/usr/local/bin:/usr/bin:/bin",
            HOME=self.config.workdir,
            TMPDIR="/tmp",
            MPLCONFIGDIR="/tmp/matplotlib",
        )
        env.update(self.config.extra_env)
        env.update(job.env)
        env[MARKER_VAR] = "docker"
        return env

    def _spec(self, job: Job) -> dict[str, Any]:
        cpu = math.ceil(job.timeout_s) + 1
        mem = job.memory_mb * 1024 * 1024
        fsize = self.config.max_file_mb * 1024 * 1024
        nofile = self.config.max_open_files
        kill_budget = min(2.0, self.config.kill_grace_s / 2)
        # No RLIMIT_NPROC: it would count every uid-65534 process on the host, so concurrent
        # containers would starve each other; the container's pids limit bounds fork bombs.
        runner_spec = {
            "argv": [self.config.python, "-s", "main.py"],
            "timeout_s": job.timeout_s,
            "rlimits": {
                "RLIMIT_AS": [mem, mem],
                "RLIMIT_CPU": [cpu, cpu + 1],
                "RLIMIT_FSIZE": [fsize, fsize],
                "RLIMIT_NOFILE": [nofile, nofile],
                "RLIMIT_CORE": [0, 0],
            },
            "kill_budget_s": kill_budget,
        }
        return {
            "in": JOB_MOUNT,
            "workdir": self.config.workdir,
            "stdin": job.stdin is not None,
            "runner": [self.config.python, "-I", "-S", "-c", _RUNNER_SOURCE],
            "runner_spec": runner_spec,
            "deadline_s": job.timeout_s + kill_budget + 1.0,
        }

    def _write_inputs(self, job: Job, root: str) -> None:
        work = os.path.join(root, "work")
        os.makedirs(work)
        with open(os.path.join(work, "main.py"), "w", encoding="utf-8") as fh:
            fh.write(job.code)
        for name, text in job.files.items():
            path = os.path.join(work, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        if job.stdin is not None:
            with open(os.path.join(root, "stdin"), "w", encoding="utf-8") as fh:
                fh.write(job.stdin)
        # The container's user must read them; nobody else can list the random parent.
        for dirpath, _dirnames, filenames in os.walk(root):
            os.chmod(dirpath, 0o755)
            for f in filenames:
                os.chmod(os.path.join(dirpath, f), 0o644)

    def _create(self, setup: _Setup, job: Job, root: str) -> Any:
        from docker.types import LogConfig, Mount

        uid, gid = self.config.uid_gid
        mem_mb = job.memory_mb + self.config.memory_overhead_mb
        mounts = [Mount(p, p, type="bind", read_only=True) for p in setup.mounts]
        mounts.append(Mount(JOB_MOUNT, root, type="bind", read_only=True))
        extra: dict[str, Any] = {}
        if self.config.cpus is not None:
            extra["nano_cpus"] = int(self.config.cpus * 1e9)
        return setup.client.containers.create(
            setup.image,
            command=["-I", "-S", "-c", _BOOT_SOURCE, json.dumps(self._spec(job))],
            entrypoint=[self.config.python],
            user=f"{uid}:{gid}",
            working_dir=self.config.workdir,
            environment=self._env(job),
            network_mode="none",
            read_only=True,
            tmpfs={
                self.config.workdir: (
                    f"rw,exec,nosuid,nodev,size={self.config.workdir_mb}m,uid={uid},gid={gid},"
                    "mode=0700"
                ),
                "/tmp": f"rw,nosuid,nodev,size={self.config.tmp_mb}m,uid={uid},gid={gid},mode=0700",
            },
            mounts=mounts,
            mem_limit=f"{mem_mb}m",
            memswap_limit=f"{mem_mb}m",
            pids_limit=self.config.max_processes + 8,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            ipc_mode="private",
            hostname="sandbox",
            labels={LABEL: self.session},
            log_config=LogConfig(type="none"),
            stdin_open=False,
            tty=False,
            detach=True,
            **extra,
        )

    def _run_container(self, setup: _Setup, job: Job, start: float) -> ExecResult:
        root = tempfile.mkdtemp(prefix="brite-sbx-docker-")
        container: Any = None
        try:
            self._write_inputs(job, root)
            container = self._create(setup, job, root)
            return self._attach_and_collect(container, job, start)
        except Exception as exc:  # the daemon or host failed, never the program
            logger.exception("sandbox: docker job failed on the host side")
            return ExecResult.sandbox_failed(
                "the sandbox failed on the host",
                f"{type(exc).__name__}: {exc}",
                time.perf_counter() - start,
            )
        finally:
            if container is not None:
                self._remove(container)
            shutil.rmtree(root, ignore_errors=True)

    def _remove(self, container: Any) -> None:
        for attempt in range(3):
            try:
                container.remove(force=True, v=True)
                return
            except Exception as exc:
                if "No such container" in str(exc) or "is already in progress" in str(exc):
                    return
                if attempt == 2:
                    logger.warning("sandbox: could not remove container %s: %s", container.id, exc)
                time.sleep(0.2)

    def _attach_and_collect(self, container: Any, job: Job, start: float) -> ExecResult:
        limit = job.max_output_bytes or self.config.max_output_bytes
        out = _CappedBuffer(limit)
        err = _StderrWithReport(limit)
        reader = _FrameReader(out.add, err.add)
        sock = container.attach_socket(params={"stdout": 1, "stderr": 1, "stream": 1})
        raw = getattr(sock, "_sock", sock)
        host_killed = threading.Event()

        def kill() -> None:
            host_killed.set()
            with contextlib.suppress(Exception):
                container.kill()

        watchdog = threading.Timer(job.timeout_s + self.config.kill_grace_s, kill)
        watchdog.daemon = True
        try:
            raw.settimeout(None)
            container.start()
            watchdog.start()
            while True:
                try:
                    data = raw.recv(1 << 16)
                except InterruptedError:
                    continue
                if not data:
                    break
                reader.feed(data)
        finally:
            watchdog.cancel()
            with contextlib.suppress(Exception):
                sock.close()
        try:
            status = container.wait(timeout=self.config.kill_grace_s + 30)
            rc = int(status.get("StatusCode", -1))
        except Exception:
            kill()
            rc = -1
        oom = False
        with contextlib.suppress(Exception):
            container.reload()
            oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
        report = err.finish()
        stdout, out_trunc = out.text("stdout")
        stderr, err_trunc = err.capped.text("stderr")
        status_, exit_code, detail, sandbox_error = self._classify(
            job, report if rc == 0 else None, rc, host_killed.is_set(), oom, stderr
        )
        return ExecResult(
            status_,
            exit_code,
            stdout,
            stderr,
            time.perf_counter() - start,
            stdout_truncated=out_trunc,
            stderr_truncated=err_trunc,
            detail=detail,
            sandbox_error=sandbox_error,
        )

    def _classify(
        self,
        job: Job,
        report: dict[str, Any] | None,
        rc: int,
        host_killed: bool,
        oom: bool,
        stderr: str,
    ) -> tuple[ExecStatus, int | None, str, str | None]:
        """The bootstrap's report is trusted only when it exited normally (status 0): then it
        was written last, after every other process in the container was dead."""
        limit_mb = job.memory_mb + self.config.memory_overhead_mb
        if host_killed or (report is not None and report.get("boot_timeout")):
            return (
                ExecStatus.TIMEOUT,
                None,
                f"ran past the {job.timeout_s:g} s limit and the container was killed",
                None,
            )
        if report is None:
            if oom:
                return (
                    ExecStatus.OOM,
                    rc,
                    f"the container hit its {limit_mb} MB memory limit",
                    None,
                )
            tail = stderr.strip().splitlines()[-1:] or [""]
            return (
                ExecStatus.ERROR,
                rc,
                "the sandbox container failed",
                f"the container exited with status {rc} without a report: {tail[0][:300]}",
            )
        if report.get("boot_error"):
            return ExecStatus.ERROR, None, "the program could not start", str(report["boot_error"])
        status, exit_code, detail, sandbox_error = ProcessBackend._classify(
            job, report.get("runner"), int(report.get("runner_rc", -1)), False, stderr
        )
        if oom and status in (ExecStatus.KILLED, ExecStatus.ERROR) and sandbox_error is None:
            return (
                ExecStatus.OOM,
                exit_code,
                f"the container hit its {limit_mb} MB memory limit",
                None,
            )
        return status, exit_code, detail, sandbox_error

    # -- cleanup -----------------------------------------------------------------------------
    def leftover_containers(self) -> list[str]:
        """Ids of containers this backend created that still exist (should be none)."""
        if self._setup_state is None:
            return []
        found = self._setup_state.client.containers.list(
            all=True, filters={"label": f"{LABEL}={self.session}"}
        )
        return [c.id for c in found]

    def close(self) -> None:
        """Remove any container of this backend that is still there and close the client."""
        state = self._setup_state
        if state is None:
            return
        with contextlib.suppress(Exception):
            for c in state.client.containers.list(
                all=True, filters={"label": f"{LABEL}={self.session}"}
            ):
                self._remove(c)
        with contextlib.suppress(Exception):
            state.client.close()
        with self._lock:
            self._setup_state = None
