"""The docker backend: a throw-away container per job, and the threat tests of
tests/test_sandbox.py run against it.

The tests start their own ``dockerd`` (private ``--data-root``, ``--exec-root``, socket and
pidfile under a temporary folder, no bridge, no iptables changes) for this module and stop it
by its PID at the end. Set ``BRITE_TEST_DOCKER_HOST=unix:///path/docker.sock`` to use a daemon
that is already running instead. Without the Docker SDK, ``dockerd`` or root, the docker tests
skip and say why.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import sandbox
from sandbox import ExecStatus, IsolationUnavailableError, Job, SandboxConfigError
from sandbox.docker_backend import LABEL, DockerBackend, DockerConfig
from tests.helpers import plus_reference
from verifiers.base import Status

DOCKERD_PREFIX = "brite-dockerd-"
"""Temporary folders of the test daemons; tests/test_zz_no_leftovers.py looks for it too."""
CGROUP_PARENT = "brite-dockerd-test"
_CGROUP_ROOT = Path("/sys/fs/cgroup")

# -- the daemon ------------------------------------------------------------------------------


def _cgroup_dirs() -> list[Path]:
    if not _CGROUP_ROOT.is_dir():
        return []
    return [p / CGROUP_PARENT for p in _CGROUP_ROOT.iterdir() if p.is_dir()]


def _our_processes(root: str) -> list[psutil.Process]:
    """Processes whose command line names our daemon's folder (containerd, shims)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(root in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _mounts_under(root: str) -> list[str]:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            points = [line.split()[4] for line in fh]
    except OSError:
        return []
    return sorted((p for p in points if p.startswith(root)), key=len, reverse=True)


def _stop_dockerd(proc: subprocess.Popen[bytes], root: str, new_cgroups: list[Path]) -> None:
    """Stop the daemon we started (by its PID), then what it left: containerd and shims under
    our folder, mounts, the folder, and the cgroup parents it created."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for _ in range(50):
        left = _our_processes(root)
        if not left:
            break
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
        time.sleep(0.1)
    for point in _mounts_under(root):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    shutil.rmtree(root, ignore_errors=True)
    for cg in new_cgroups:
        _remove_cgroup(cg, wait_s=10.0)


def _remove_cgroup(cg: Path, wait_s: float) -> None:
    """Remove ``cg`` and its children. Right after the daemon stops the kernel may still count
    its exiting processes there (``EBUSY``): retried for ``wait_s`` (a stop in stop 15 left
    the parent behind without this, and the leftover check of the next run failed on it)."""
    deadline = time.monotonic() + wait_s
    while cg.is_dir():
        for child in sorted(cg.glob("*/"), reverse=True):
            with contextlib.suppress(OSError):
                child.rmdir()
        try:
            cg.rmdir()
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.1)


@pytest.fixture(scope="module")
def docker_url() -> Iterator[str]:
    """The address of a Docker daemon for this module: our own, started and stopped here."""
    pytest.importorskip(
        "docker", reason="the Docker SDK is not installed: pip install 'brite[docker]'"
    )
    given = os.environ.get("BRITE_TEST_DOCKER_HOST")
    if given:
        yield given
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        pytest.skip("dockerd is not installed here (apt-get install docker.io)")
    if os.geteuid() != 0:
        pytest.skip(
            "starting a private dockerd needs root; set BRITE_TEST_DOCKER_HOST to use a running "
            "daemon"
        )
    root = tempfile.mkdtemp(prefix=DOCKERD_PREFIX, dir="/tmp")  # short: a socket path limit
    sock = os.path.join(root, "docker.sock")
    for cg in _cgroup_dirs():  # an earlier run's, empty (the kernel refuses a busy one)
        _remove_cgroup(cg, wait_s=0.0)
    before = {cg for cg in _cgroup_dirs() if cg.exists()}
    log = open(os.path.join(root, "dockerd.log"), "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            dockerd,
            "--data-root",
            os.path.join(root, "data"),
            "--exec-root",
            os.path.join(root, "exec"),
            "--pidfile",
            os.path.join(root, "dockerd.pid"),
            "-H",
            f"unix://{sock}",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--cgroup-parent",
            f"/{CGROUP_PARENT}",
            "--log-level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"unix://{sock}"
    try:
        import docker

        why = "did not answer within 60 s"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                why = f"exited with status {proc.returncode}"
                break
            if os.path.exists(sock):
                try:
                    docker.DockerClient(base_url=url, version="auto", timeout=5).close()
                    why = ""
                    break
                except Exception as exc:
                    why = f"not answering: {exc}"
            time.sleep(0.2)
        if why:
            log.flush()
            tail = Path(root, "dockerd.log").read_text(errors="replace").strip()[-800:]
            pytest.skip(f"dockerd cannot start here ({why}): {tail}")
        print(f"\nstarted dockerd (pid {proc.pid}) at {url}")
        yield url
    finally:
        new_cgroups = [cg for cg in _cgroup_dirs() if cg not in before]
        _stop_dockerd(proc, root, new_cgroups)
        log.close()
        print(f"\nstopped dockerd (pid {proc.pid})")


@pytest.fixture(scope="module")
def module_backend(docker_url: str) -> Iterator[DockerBackend]:
    backend = DockerBackend(base_url=docker_url)
    try:
        caps = backend.capabilities()
    except IsolationUnavailableError as exc:
        pytest.skip(f"the docker backend cannot run here: {exc}")
    print(caps.summary(), caps.notes)
    yield backend
    backend.close()


@pytest.fixture
def backend(module_backend: DockerBackend) -> Iterator[DockerBackend]:
    """The module's backend; after each test no container of it may be left."""
    yield module_backend
    assert module_backend.leftover_containers() == []


# -- helpers (as in tests/test_sandbox.py) ----------------------------------------------------


def _marker() -> str:
    return f"brite-sandbox-test-{uuid.uuid4().hex}"


def _sleeper(marker: str) -> str:
    """Python source that replaces the current process with a long sleep tagged ``marker``."""
    return (
        "os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(1000)', "
        f"{marker!r}])"
    )


def _assert_no_leftovers(marker: str) -> None:
    """Container processes are host processes too: none tagged ``marker`` may survive."""
    time.sleep(0.1)
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in proc.info["cmdline"] or []):
                left.append(proc.pid)
        except psutil.Error:
            continue
    assert not left, f"processes survived the container: {left}"


# -- configuration (no daemon needed) ----------------------------------------------------------


def test_config_validation_names_the_bad_value() -> None:
    cases = {
        "image": "Not A Valid Image!",
        "python": "relative/python",
        "workdir": "/",
        "user": "0:0",
        "max_processes": 0,
        "workdir_mb": -1,
        "cpus": float("inf"),
        "kill_grace_s": 0,
        "max_output_bytes": 10,
        "extra_mounts": ("/definitely/not/here-" + uuid.uuid4().hex,),
    }
    for name, bad in cases.items():
        with pytest.raises(ValueError, match=name) as info:
            DockerConfig(**{name: bad})
        assert isinstance(info.value, SandboxConfigError)
        shown = str(bad[0]) if isinstance(bad, tuple) else repr(bad)
        assert shown in str(info.value) or str(bad) in str(info.value), str(info.value)
    with pytest.raises(SandboxConfigError, match="mount_host_python=False"):
        DockerConfig(mount_host_python=False)
    ok = DockerConfig(image="registry.local:5000/team/py:3.11", mount_host_python=False)
    assert ok.uid_gid == (65534, 65534)
    with pytest.raises(SandboxConfigError, match="not both"):
        DockerBackend(DockerConfig(), image="x")


def test_unreachable_daemon_is_an_isolation_error() -> None:
    missing = f"/tmp/brite-no-daemon-{uuid.uuid4().hex}.sock"
    backend = DockerBackend(base_url=f"unix://{missing}")
    with pytest.raises(IsolationUnavailableError) as info:
        backend.capabilities()
    print(info.value)
    assert missing in str(info.value) or "brite[docker]" in str(info.value)
    with pytest.raises(IsolationUnavailableError):  # run() says the same, it never hangs
        backend.run(Job("print(1)"))
    assert "docker" in sandbox.available_backends() and "ray" in sandbox.available_backends()


# -- the backend ---------------------------------------------------------------------------------


@pytest.mark.docker
def test_capabilities_report_the_container_isolation(backend: DockerBackend) -> None:
    caps = backend.capabilities()
    assert caps.backend == "docker" and caps.isolation == "docker"
    assert caps.pid_namespace and caps.network_isolated and caps.read_only_fs
    assert caps.env_scrubbed and caps.kills_orphans
    assert "pids limit" in caps.process_limit
    assert "RLIMIT_AS" in caps.rlimits
    assert any("capabilities dropped" in n for n in caps.notes)


@pytest.mark.docker
def test_run_basics_user_workdir_and_root(backend: DockerBackend) -> None:
    code = (
        "import os, sys, helper\n"
        "print(os.getuid(), os.getgid(), os.getcwd())\n"
        "print(helper.shout(sys.stdin.read()), open('data/x.txt').read())\n"
        "print(sorted(os.listdir('.')))\n"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')])\n"
        "open('made.txt', 'w').write('ok'); open('/tmp/t.txt', 'w').write('ok')\n"
        "for path in ('/usr/x', '/etc/x', '/x'):\n"
        "    try:\n        open(path, 'w')\n        print('WROTE', path)\n"
        "    except OSError as e:\n        print('ro', e.errno)\n"
        "import socket\nprint(sorted(name for _, name in socket.if_nameindex()))\n"
        "print('err', file=sys.stderr)\nsys.exit(3)"
    )
    r = backend.run(
        Job(
            code,
            stdin="hello",
            files={"helper.py": "def shout(s):\n    return s.upper()\n", "data/x.txt": "payload"},
        )
    )
    assert r.status is ExecStatus.ERROR and r.exit_code == 3, r
    lines = r.stdout.splitlines()
    assert lines[0] == "65534 65534 /sandbox"
    assert lines[1] == "HELLO payload"
    assert lines[2] == "['data', 'helper.py', 'main.py']"
    assert lines[3] == "['0000000000000000']", "the program kept capabilities"
    assert "WROTE" not in r.stdout and r.stdout.count("ro 30") == 3  # EROFS
    assert lines[-1] == "['lo']", "a network interface besides loopback"
    assert r.stderr == "err\n"
    # A fresh container each time: nothing is left from the previous job.
    again = backend.run(
        Job("import os\nprint(sorted(os.listdir('.')), os.path.exists('/tmp/t.txt'))")
    )
    assert again.ok and again.stdout == "['main.py'] False\n", again


@pytest.mark.docker
def test_run_many_keeps_order(backend: DockerBackend) -> None:
    jobs = [Job(f"import time\ntime.sleep({(4 - i) * 0.15})\nprint({i})") for i in range(5)]
    results = backend.run_many(jobs, concurrency=3)
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(5)]


@pytest.mark.docker
def test_the_registered_name_and_the_code_verifier_use_docker(
    docker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``backend="docker"`` resolves lazily to a shared DockerBackend ($DOCKER_HOST here)."""
    from verifiers.code import CodeVerifier

    monkeypatch.setenv("DOCKER_HOST", docker_url)
    sandbox.register_backend("docker", "sandbox.docker_backend:DockerBackend", overwrite=True)
    try:
        r = sandbox.run("import os\nprint(os.getuid())", backend="docker")
        assert r.ok and r.stdout == "65534\n", r
        assert sandbox.capabilities("docker").backend == "docker"
        ref = (
            '{"kind": "humaneval", "prompt": "def add(a, b):\\n", "entry_point": "add", '
            '"test": "def check(candidate):\\n    assert candidate(1, 2) == 3\\n"}'
        )
        verifier = CodeVerifier(backend="docker", timeout_s=20)
        right, wrong = verifier.verify_many(
            ["```python\ndef add(a, b):\n    return a + b\n```", "    return a - b\n"], [ref, ref]
        )
        assert right.correct and not wrong.correct, (right, wrong)
        # HumanEval+: the judge and the program's process, and a large output of other bytes
        # computed again by the reference (each a process forked in the container).
        plus = plus_reference(
            "def f(n):\n    return list(range(1, n))\n", [[5], [100_000]], prompt="def f(n):\n"
        )
        same, off = verifier.verify_many(
            [
                "```python\ndef f(n):\n    return [float(i) for i in range(1, n)]\n```",
                "```python\ndef f(n):\n    return list(range(1, n - (n > 9))) + [0] * (n > 9)\n```",
            ],
            [plus, plus],
        )
        assert same.correct, same
        assert off.status is Status.INCORRECT and "base input #1" in off.reason, off
    finally:
        default = sandbox.get_backend("docker")
        leftovers = default.leftover_containers()  # type: ignore[attr-defined]
        default.close()
        sandbox.register_backend("docker", "sandbox.docker_backend:DockerBackend", overwrite=True)
    assert leftovers == []


# -- threats ----------------------------------------------------------------------------------


@pytest.mark.docker
def test_infinite_loop_times_out(backend: DockerBackend) -> None:
    r = backend.run(Job("while True:\n    pass", timeout_s=1))
    assert r.status is ExecStatus.TIMEOUT, r
    assert r.wall_s < 1 + backend.config.kill_grace_s


@pytest.mark.docker
def test_sleep_times_out_and_leaves_nothing(backend: DockerBackend) -> None:
    marker = _marker()
    code = (
        f"import os, sys\nif os.fork() == 0:\n    {_sleeper(marker)}\nimport time\ntime.sleep(1000)"
    )
    r = backend.run(Job(code, timeout_s=1))
    assert r.status is ExecStatus.TIMEOUT, r
    assert "1 s" in r.detail
    _assert_no_leftovers(marker)


@pytest.mark.docker
@pytest.mark.slow
def test_fork_bomb_is_contained(backend: DockerBackend) -> None:
    marker = _marker()
    code = (
        "import os, sys\nwhile True:\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        continue\n    if pid == 0 and os.getpid() % 7 == 0:\n"
        f"        try:\n            {_sleeper(marker)}\n        except OSError:\n            pass\n"
    )
    before = len(psutil.pids())
    r = backend.run(Job(code, timeout_s=2))
    assert r.status in (ExecStatus.TIMEOUT, ExecStatus.KILLED), r
    _assert_no_leftovers(marker)
    assert len(psutil.pids()) < before + 50
    assert backend.run(Job("print('still fine')")).stdout == "still fine\n"


@pytest.mark.docker
def test_memory_bomb_is_oom(backend: DockerBackend) -> None:
    code = "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 1024 * 1024))"
    r = backend.run(Job(code, memory_mb=512, timeout_s=10))
    assert r.status is ExecStatus.OOM, r
    assert "512 MB" in r.detail


@pytest.mark.docker
def test_memory_spread_over_processes_hits_the_container_limit(backend: DockerBackend) -> None:
    """Each process stays under its RLIMIT_AS; only the container's cgroup limit stops the
    sum (the process backend has no such limit)."""
    code = (
        "import os, sys\nkids = []\nfor _ in range(6):\n    pid = os.fork()\n    if pid == 0:\n"
        "        b = bytearray(300 * 1024 * 1024)\n        for i in range(0, len(b), 4096):\n"
        "            b[i] = 1\n        import time\n        time.sleep(5)\n        os._exit(0)\n"
        "    kids.append(pid)\nfor pid in kids:\n    _, st = os.waitpid(pid, 0)\n"
        "    if os.WIFSIGNALED(st):\n        sys.exit(f'a child was killed by signal "
        "{os.WTERMSIG(st)}')\nprint('all children finished')"
    )
    r = backend.run(Job(code, memory_mb=512, timeout_s=20))
    assert r.status is ExecStatus.OOM, r
    assert "memory limit" in r.detail


@pytest.mark.docker
def test_huge_stdout_is_capped_and_marked(backend: DockerBackend) -> None:
    code = "import sys\nsys.stdout.write('a' * 50_000_000 + 'b' * 50_000_000)\nprint('END')"
    r = backend.run(Job(code, timeout_s=30))
    assert r.status is ExecStatus.OK, r
    assert r.stdout_truncated and not r.stderr_truncated
    cap = backend.config.max_output_bytes
    assert len(r.stdout) < cap + 500
    assert r.stdout.startswith("aaaa") and r.stdout.endswith("bbbbEND\n")
    assert "bytes of stdout omitted" in r.stdout and "100000004 bytes" in r.stdout


@pytest.mark.docker
def test_huge_stderr_keeps_the_report(backend: DockerBackend) -> None:
    """The supervisor's report travels at the end of stderr: a flood there must not hide it,
    and a forged report line earlier in the stream must not count."""
    code = (
        "import sys\nsys.stderr.write('\\n\\x1eBRITE-DOCKER-REPORT {\"runner\": null}\\n')\n"
        "sys.stderr.write('e' * 3_000_000)\nsys.exit(4)"
    )
    r = backend.run(Job(code, timeout_s=20, max_output_bytes=4096))
    assert r.status is ExecStatus.ERROR and r.exit_code == 4, r
    assert r.stderr_truncated and r.stderr.endswith("eeee")
    assert r.sandbox_error is None


@pytest.mark.docker
def test_double_forked_daemon_is_killed(backend: DockerBackend) -> None:
    marker = _marker()
    code = (
        "import os, sys\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        {_sleeper(marker)}\n    os._exit(0)\nos.wait()\nimport time\ntime.sleep(0.3)\n"
        "print('parent done')"
    )
    r = backend.run(Job(code, timeout_s=10))
    assert r.status is ExecStatus.OK and r.stdout == "parent done\n", r
    assert r.wall_s < 5, "the host waited for the daemon instead of killing it"
    _assert_no_leftovers(marker)


@pytest.mark.docker
def test_killpg_and_killing_the_parent_are_contained(backend: DockerBackend) -> None:
    for attack in (
        "os.killpg(0, signal.SIGKILL)",
        "os.kill(os.getppid(), signal.SIGKILL)",
        "os.kill(os.getppid(), signal.SIGSEGV)",
        "os.kill(1, signal.SIGKILL)",
        "os.kill(-1, signal.SIGKILL)",
    ):
        marker = _marker()
        code = (
            f"import os, sys, signal, time\nif os.fork() == 0:\n    os.setsid()\n"
            f"    {_sleeper(marker)}\ntime.sleep(0.3)\n{attack}\ntime.sleep(1000)"
        )
        r = backend.run(Job(code, timeout_s=1.5))
        assert r.status in (ExecStatus.KILLED, ExecStatus.TIMEOUT), (attack, r)
        assert r.sandbox_error is None, (attack, r)
        _assert_no_leftovers(marker)
    assert backend.run(Job("print('host alive')")).ok


@pytest.mark.docker
def test_secrets_in_the_host_environment_are_not_visible(
    backend: DockerBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("BRITE_TEST_SECRET", secret)
    code = "import os\nprint(dict(os.environ))\nprint(open('/proc/self/environ').read())"
    r = backend.run(Job(code, env={"VISIBLE": "yes"}))
    assert r.ok, r
    assert secret not in r.stdout and "BRITE_TEST_SECRET" not in r.stdout
    assert "'VISIBLE': 'yes'" in r.stdout


@pytest.mark.docker
def test_host_processes_are_invisible(backend: DockerBackend) -> None:
    code = (
        f"import os\ntry:\n    print(open('/proc/{os.getpid()}/environ').read())\n"
        "except OSError as e:\n    print('blocked', type(e).__name__)\n"
        "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit())[:1])"
    )
    r = backend.run(Job(code))
    assert r.ok and r.stdout.startswith("blocked"), r
    assert r.stdout.splitlines()[1] == "[1]", "the container's first process is not PID 1"


@pytest.mark.docker
def test_tcp_connect_to_host_listener_gets_nothing(backend: DockerBackend) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.5)
        port = server.getsockname()[1]
        code = (
            "import socket\ntry:\n"
            f"    s = socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
            "    s.sendall(b'stolen')\n    print('CONNECTED')\n"
            "except OSError as e:\n    print('blocked', e)"
        )
        r = backend.run(Job(code))
        assert r.ok and r.stdout.startswith("blocked"), r
        with pytest.raises(TimeoutError):
            conn, _ = server.accept()
            conn.close()


@pytest.mark.docker
def test_writes_outside_the_workdir_fail(backend: DockerBackend, tmp_path: Path) -> None:
    targets = [tmp_path / "escape.txt", Path("/var/tmp") / f"brite-escape-{uuid.uuid4().hex}"]
    code = "import sys\n" + "".join(
        f"try:\n    open({str(t)!r}, 'w').write('x')\n    print('WROTE')\n"
        "except OSError as e:\n    print('blocked', e.errno)\n"
        for t in targets
    )
    try:
        r = backend.run(Job(code))
        assert r.ok and "WROTE" not in r.stdout, r
        assert not any(t.exists() for t in targets)
    finally:
        for t in targets:
            t.unlink(missing_ok=True)


@pytest.mark.docker
def test_no_sandbox_container_is_left(backend: DockerBackend) -> None:
    """Every container any backend created on this daemon is gone (not just this one's)."""
    state = backend._setup()
    left = state.client.containers.list(all=True, filters={"label": LABEL})
    assert left == [], [c.name for c in left]


@pytest.mark.docker
def test_an_image_with_its_own_libraries_grades_what_the_host_lacks(
    module_backend: DockerBackend, docker_url: str
) -> None:
    """BigCodeBench's way: with an image that has its own stack (``mount_host_python=False``),
    the code verifier does not reject a task because a library is missing on the *host*; the
    container decides. The image here is the base image plus a library only it can import."""
    from sandbox.docker_backend import base_image_tag, host_python_mounts
    from verifiers import Status
    from verifiers.code import CodeVerifier, importable

    lib_name = f"brite_only_in_image_{uuid.uuid4().hex[:8]}"
    libdir = Path(tempfile.mkdtemp(prefix="brite-docker-lib-"))
    try:
        (libdir / lib_name).mkdir()
        (libdir / lib_name / "__init__.py").write_text("def double(x):\n    return 2 * x\n")
        for p in (libdir, libdir / lib_name):
            p.chmod(0o755)
        (libdir / lib_name / "__init__.py").chmod(0o644)
        assert not importable(lib_name)
        config = DockerConfig(
            base_url=docker_url,
            image=base_image_tag(),
            mount_host_python=False,
            extra_mounts=(*host_python_mounts(sys.executable), str(libdir)),
            extra_env={"PYTHONPATH": str(libdir)},
        )
        name = f"docker-own-image-{uuid.uuid4().hex[:8]}"
        made: list[DockerBackend] = []

        def factory() -> DockerBackend:
            made.append(DockerBackend(config))
            return made[-1]

        sandbox.register_backend(name, factory)
        prompt = f"import {lib_name}\n\ndef task_func(x):\n"
        test = (
            "import unittest\nclass TestCases(unittest.TestCase):\n"
            "    def test_double(self):\n        self.assertEqual(task_func(3), 6)\n"
        )
        ref = json.dumps(
            {
                "kind": "bigcodebench",
                "prompt": prompt,
                "entry_point": "task_func",
                "test": test,
                "libs": [lib_name],
            }
        )
        right = (
            f"```python\nimport {lib_name}\n\ndef task_func(x):\n"
            f"    return {lib_name}.double(x)\n```"
        )
        wrong = "    return x\n"
        on_host = CodeVerifier(timeout_s=20).verify(right, ref)
        assert on_host.status is Status.ERROR and "not installed" in on_host.reason, on_host
        good, bad = CodeVerifier(backend=name, timeout_s=30).verify_many([right, wrong], [ref, ref])
        assert good.correct, good
        assert bad.status is Status.INCORRECT, bad
        for b in made:
            assert b.leftover_containers() == []
            b.close()
    finally:
        shutil.rmtree(libdir, ignore_errors=True)
