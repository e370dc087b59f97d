"""The sandbox: the public API, the process backend, and untrusted code trying to escape.

Threat tests run under every isolation level this machine supports (``bwrap``, ``unshare``,
``none``), and for ``bwrap`` both through the fork server (``bwrap-forkserver``, the default)
and with one sandbox start-up per job (``bwrap``); a threat a level cannot contain (network,
filesystem writes without ``bwrap``) is skipped with the reason printed, never faked.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

import sandbox
from sandbox import ExecStatus, Job, SandboxConfigError, UnknownBackendError
from sandbox.errors import IsolationUnavailableError
from sandbox.process import FORK_SERVER_WORKDIR, ProcessBackend, ProcessConfig

LEVELS = ("bwrap", "unshare", "none")
VARIANTS = ("bwrap-forkserver", *LEVELS)
"""How jobs can run: an isolation level, and for bwrap also through the fork server."""
_backends: dict[str, ProcessBackend | str] = {}


def backend_for(variant: str) -> ProcessBackend:
    """A backend forced to ``variant`` (see VARIANTS); skips (saying why) where this machine
    lacks it."""
    if variant not in _backends:
        level, _, fork = variant.partition("-")
        b = ProcessBackend(isolation=level, fork_server="on" if fork else "off")
        try:
            caps = b.capabilities()
            assert caps.fork_server == bool(fork), caps
            _backends[variant] = b
        except IsolationUnavailableError as exc:
            _backends[variant] = str(exc)
    found = _backends[variant]
    if isinstance(found, str):
        pytest.skip(f"{variant!r} unavailable here: {found}")
    return found


@pytest.fixture(params=VARIANTS)
def level_backend(request: pytest.FixtureRequest) -> ProcessBackend:
    """Each isolation level in turn, bwrap with and without the fork server (cheap threats
    run under all of them)."""
    return backend_for(request.param)


@pytest.fixture(
    params=[
        pytest.param("auto", id="auto"),
        *[pytest.param(v, id=v, marks=pytest.mark.slow) for v in VARIANTS],
    ]
)
def any_backend(request: pytest.FixtureRequest) -> ProcessBackend:
    """The default (strongest level, through the fork server where it runs); every variant
    explicitly under ``-m slow``."""
    if request.param == "auto":
        return ProcessBackend()
    return backend_for(request.param)


def _marker() -> str:
    return f"brite-sandbox-test-{uuid.uuid4().hex}"


def _sleeper(marker: str) -> str:
    """Python source that replaces the current process with a long sleep tagged ``marker``."""
    return (
        "os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(1000)', "
        f"{marker!r}])"
    )


def _leftovers(marker: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in proc.info["cmdline"] or []):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def _assert_no_leftovers(marker: str) -> None:
    time.sleep(0.1)
    left = _leftovers(marker)
    assert not left, f"processes survived the sandbox: {left}"


# -- the API ------------------------------------------------------------------------------


def test_capabilities_report_what_is_in_force() -> None:
    caps = sandbox.capabilities()
    print(caps.summary(), caps.notes)
    assert caps.backend == "process"
    assert caps.isolation in ("bwrap", "unshare", "none")
    assert caps.env_scrubbed
    if sys.platform.startswith("linux"):
        assert "RLIMIT_AS" in caps.rlimits and "RLIMIT_CPU" in caps.rlimits
    assert caps.read_only_fs == (caps.isolation == "bwrap")
    assert caps.pid_namespace == caps.network_isolated == (caps.isolation != "none")
    assert caps.to_dict()["isolation"] == caps.isolation
    # The fork server is used exactly where it runs: with bwrap, unless it could not start.
    assert caps.fork_server == (
        caps.isolation == "bwrap" and not any("fork server unavailable" in n for n in caps.notes)
    )
    assert f"fork-server={'yes' if caps.fork_server else 'no'}" in caps.summary()
    # "auto" must pick the strongest level that works here.
    for level in LEVELS:
        try:
            ProcessBackend(isolation=level).capabilities()
        except IsolationUnavailableError:
            continue
        assert caps.isolation == level
        break


def test_isolation_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    config = ProcessConfig(hide_paths=("/root", "/home", "/nonexistent-" + uuid.uuid4().hex))
    with caplog.at_level(logging.INFO, logger="sandbox"):
        b1, b2 = ProcessBackend(config), ProcessBackend(config)
        assert sandbox.run("pass", backend=b1).ok
        assert sandbox.run("pass", backend=b2).ok
    summaries = [r for r in caplog.records if "isolation" in r.getMessage()]
    assert len(summaries) == 1, [r.getMessage() for r in caplog.records]


def test_run_captures_stdout_stderr_and_exit_code() -> None:
    r = sandbox.run("import sys\nprint('out')\nprint('err', file=sys.stderr)")
    assert r.status is ExecStatus.OK and r.ok
    assert (r.exit_code, r.stdout, r.stderr) == (0, "out\n", "err\n")
    assert not r.stdout_truncated and not r.stderr_truncated
    assert 0 < r.wall_s < 10
    r = sandbox.run("import sys\nsys.exit(3)")
    assert r.status is ExecStatus.ERROR and r.exit_code == 3
    r = sandbox.run("raise ValueError('boom')")
    assert r.status is ExecStatus.ERROR and "ValueError: boom" in r.stderr


def test_stdin_and_files_are_provided() -> None:
    r = sandbox.run(
        "import sys, helper\nprint(helper.shout(sys.stdin.read()))\n"
        "print(open('data/x.txt').read())",
        stdin="hello",
        files={"helper.py": "def shout(s):\n    return s.upper()\n", "data/x.txt": "payload"},
    )
    assert r.ok, r.stderr
    assert r.stdout == "HELLO\npayload\n"
    # Without stdin the program reads EOF instead of hanging.
    r = sandbox.run("import sys\nprint(repr(sys.stdin.read()))", timeout_s=5)
    assert r.ok and r.stdout == "''\n"


def test_workdir_is_fresh_and_deleted() -> None:
    code = (
        "import os\nprint(os.getcwd())\nprint(sorted(os.listdir('.')))\n"
        "open('left.txt', 'w').write('x')"
    )
    first = sandbox.run(code)
    second = sandbox.run(code)
    assert first.ok and second.ok
    assert "left.txt" not in second.stdout
    cwd1, cwd2 = first.stdout.splitlines()[0], second.stdout.splitlines()[0]
    # A plain job's folder is a fresh one on the host; a fork-server job's is always the same
    # path, on a tmpfs of its own that nothing on the host can see.
    assert cwd1 != cwd2 or cwd1 == cwd2 == FORK_SERVER_WORKDIR
    assert not Path(cwd1).exists() and not Path(cwd2).exists()


def test_job_validation_names_the_bad_value() -> None:
    for bad in ("../escape.py", "/etc/passwd", "main.py", ""):
        with pytest.raises(SandboxConfigError, match="file name"):
            Job("pass", files={bad: "x"})
    with pytest.raises(ValueError, match="timeout_s must be a finite number > 0, got 0"):
        Job("pass", timeout_s=0)
    with pytest.raises(ValueError, match="memory_mb must be >= 16, got 1"):
        Job("pass", memory_mb=1)
    with pytest.raises(ValueError, match="isolation must be one of"):
        ProcessConfig(isolation="chroot")
    with pytest.raises(UnknownBackendError, match="'nope'"):
        sandbox.run("pass", backend="nope")
    with pytest.raises(SandboxConfigError, match="concurrency"):
        sandbox.run_many(["pass"], concurrency=0)


def test_run_many_keeps_order_and_bounds_concurrency() -> None:
    code = "import time\nt0 = time.time()\ntime.sleep(0.4)\nprint({i}, t0, time.time())"
    jobs = [Job(code.format(i=i)) for i in range(6)]
    results = sandbox.run_many(jobs, concurrency=2)
    assert [int(r.stdout.split()[0]) for r in results] == list(range(6))
    spans = [tuple(map(float, r.stdout.split()[1:])) for r in results]
    for start, _ in spans:  # at most two programs were running at any moment
        running = sum(1 for s, e in spans if s <= start < e)
        assert running <= 2, spans
    # Plain strings and dicts work too.
    out = sandbox.run_many(["print(1)", {"code": "print(2)", "timeout_s": 5}])
    assert [r.stdout for r in out] == ["1\n", "2\n"]


def test_a_broken_interpreter_is_a_sandbox_error(tmp_path: Path) -> None:
    fake = tmp_path / "fake-python"
    fake.write_text("#!/bin/sh\necho 'cannot run' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    r = sandbox.run("print(1)", backend=ProcessBackend(python=str(fake), isolation="none"))
    assert r.status is ExecStatus.ERROR
    assert r.sandbox_error and "status 3" in r.sandbox_error


# -- threats, under every isolation level -------------------------------------------------


def test_infinite_loop_times_out(any_backend: ProcessBackend) -> None:
    r = sandbox.run("while True:\n    pass", timeout_s=1, backend=any_backend)
    assert r.status is ExecStatus.TIMEOUT, r
    assert r.wall_s < 1 + any_backend.config.kill_grace_s


def test_sleep_times_out_and_leaves_nothing(level_backend: ProcessBackend) -> None:
    marker = _marker()
    code = (
        f"import os, sys\nif os.fork() == 0:\n    {_sleeper(marker)}\nimport time\ntime.sleep(1000)"
    )
    r = sandbox.run(code, timeout_s=1, backend=level_backend)
    assert r.status is ExecStatus.TIMEOUT, r
    assert "1 s" in r.detail
    _assert_no_leftovers(marker)


def test_fork_bomb_is_contained(any_backend: ProcessBackend) -> None:
    caps = any_backend.capabilities()
    if caps.process_limit == "none":
        pytest.skip(f"nothing bounds the process count here ({caps.notes}): no safe fork bomb")
    marker = _marker()
    code = (
        "import os, sys\nwhile True:\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        continue\n    if pid == 0 and os.getpid() % 7 == 0:\n"
        f"        try:\n            {_sleeper(marker)}\n        except OSError:\n            pass\n"
    )
    before = len(psutil.pids())
    r = sandbox.run(code, timeout_s=2, backend=any_backend)
    assert r.status in (ExecStatus.TIMEOUT, ExecStatus.KILLED), r
    _assert_no_leftovers(marker)
    assert len(psutil.pids()) < before + 50
    assert sandbox.run("print('still fine')", backend=any_backend).stdout == "still fine\n"


def test_memory_bomb_is_oom(level_backend: ProcessBackend) -> None:
    code = "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 1024 * 1024))"
    r = sandbox.run(code, memory_mb=512, timeout_s=10, backend=level_backend)
    assert r.status is ExecStatus.OOM, r
    assert "512 MB" in r.detail


def test_huge_stdout_is_capped_and_marked(level_backend: ProcessBackend) -> None:
    code = "import sys\nsys.stdout.write('a' * 50_000_000 + 'b' * 50_000_000)\nprint('END')"
    r = sandbox.run(code, timeout_s=20, backend=level_backend)
    assert r.status is ExecStatus.OK, r
    assert r.stdout_truncated and not r.stderr_truncated
    cap = level_backend.config.max_output_bytes
    assert len(r.stdout) < cap + 500
    assert r.stdout.startswith("aaaa") and r.stdout.endswith("bbbbEND\n")
    assert "bytes of stdout omitted" in r.stdout and "100000004 bytes" in r.stdout


def test_double_forked_daemon_is_killed(level_backend: ProcessBackend) -> None:
    marker = _marker()
    code = (
        "import os, sys\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        {_sleeper(marker)}\n    os._exit(0)\nos.wait()\nimport time\ntime.sleep(0.3)\n"
        "print('parent done')"
    )
    r = sandbox.run(code, timeout_s=10, backend=level_backend)
    assert r.status is ExecStatus.OK and r.stdout == "parent done\n", r
    assert r.wall_s < 5, "the host waited for the daemon instead of killing it"
    _assert_no_leftovers(marker)


def test_killpg_and_killing_the_parent_are_contained(any_backend: ProcessBackend) -> None:
    for attack in (
        "os.killpg(0, signal.SIGKILL)",
        "os.kill(os.getppid(), signal.SIGKILL)",
        "os.kill(os.getppid(), signal.SIGSEGV)",
    ):
        marker = _marker()
        code = (
            f"import os, sys, signal, time\nif os.fork() == 0:\n    os.setsid()\n"
            f"    {_sleeper(marker)}\ntime.sleep(0.3)\n{attack}\ntime.sleep(1000)"
        )
        r = sandbox.run(code, timeout_s=1.5, backend=any_backend)
        # The supervisor is PID 1 of its namespace under unshare and shrugs the signal off:
        # then the deadline ends the program instead.
        assert r.status in (ExecStatus.KILLED, ExecStatus.TIMEOUT), (attack, r)
        assert r.sandbox_error is None, (attack, r)
        _assert_no_leftovers(marker)
    assert sandbox.run("print('host alive')", backend=any_backend).ok


def test_secrets_in_the_host_environment_are_not_visible(
    level_backend: ProcessBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("BRITE_TEST_SECRET", secret)
    code = "import os\nprint(dict(os.environ))\nprint(open('/proc/self/environ').read())"
    r = sandbox.run(code, env={"VISIBLE": "yes"}, backend=level_backend)
    assert r.ok, r
    assert secret not in r.stdout and "BRITE_TEST_SECRET" not in r.stdout
    assert "'VISIBLE': 'yes'" in r.stdout


def test_host_process_environ_is_not_readable(level_backend: ProcessBackend) -> None:
    if not level_backend.capabilities().pid_namespace:
        pytest.skip("no PID namespace at this isolation level: host /proc entries are visible")
    code = (
        f"try:\n    print(open('/proc/{os.getpid()}/environ').read())\n"
        "except OSError as e:\n    print('blocked', type(e).__name__)"
    )
    r = sandbox.run(code, backend=level_backend)
    assert r.stdout.startswith("blocked"), r


def test_tcp_connect_to_host_listener_gets_nothing(level_backend: ProcessBackend) -> None:
    if not level_backend.capabilities().network_isolated:
        pytest.skip("no network namespace at this isolation level: the host network is reachable")
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
        r = sandbox.run(code, backend=level_backend)
        assert r.ok and r.stdout.startswith("blocked"), r
        with pytest.raises(TimeoutError):
            conn, _ = server.accept()
            conn.close()


def test_host_sysctls_are_read_only(level_backend: ProcessBackend) -> None:
    """Sysctls are global: a program that may write kernel.core_pattern runs code as root on
    the host. The sandbox's uid may be the host's root, so /proc/sys must be read-only."""
    if not level_backend.capabilities().read_only_fs:
        pytest.skip("no read-only filesystem at this isolation level (needs bwrap)")
    # Opening for writing is the test (nothing is written: an open sysctl changes nothing).
    code = (
        "for name in ('kernel/printk_ratelimit', 'kernel/core_pattern', 'vm/drop_caches'):\n"
        "    try:\n"
        "        with open('/proc/sys/' + name, 'a'):\n"
        "            print('WRITABLE', name)\n"
        "    except OSError as e:\n"
        "        print('blocked', name, e.errno)"
    )
    r = sandbox.run(code, backend=level_backend)
    assert r.ok and "WRITABLE" not in r.stdout and r.stdout.count("blocked") == 3, r


def test_writes_outside_the_workdir_fail(level_backend: ProcessBackend, tmp_path: Path) -> None:
    if not level_backend.capabilities().read_only_fs:
        pytest.skip("no read-only filesystem at this isolation level (needs bwrap)")
    targets = [tmp_path / "escape.txt", Path("/var/tmp") / f"brite-escape-{uuid.uuid4().hex}"]
    code = "import sys\n" + "".join(
        f"try:\n    open({str(t)!r}, 'w').write('x')\n    print('WROTE')\n"
        "except OSError as e:\n    print('blocked', e.errno)\n"
        for t in targets
    )
    try:
        r = sandbox.run(code, backend=level_backend)
        assert r.ok and "WROTE" not in r.stdout, r
        assert not any(t.exists() for t in targets)
    finally:
        for t in targets:
            t.unlink(missing_ok=True)


@pytest.mark.parametrize("fork_server", ["auto", "off"])
def test_without_a_cgroup_the_same_guarantees_hold(fork_server: str) -> None:
    backend = ProcessBackend(use_cgroups=False, fork_server=fork_server)
    assert "cgroup" not in backend.capabilities().process_limit
    r = sandbox.run("import sys\nprint(sys.stdin.read()[::-1])", stdin="abc", backend=backend)
    assert r.ok and r.stdout == "cba\n"
    marker = _marker()
    code = (
        "import os, sys\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        {_sleeper(marker)}\n    os._exit(0)\nimport time\ntime.sleep(1000)"
    )
    r = sandbox.run(code, timeout_s=1, backend=backend)
    assert r.status is ExecStatus.TIMEOUT
    _assert_no_leftovers(marker)


def test_empty_job_cgroups_a_dead_host_left_are_swept() -> None:
    """A host killed by SIGKILL or SIGTERM never removes its job cgroups; the next one to
    start removes the empty ones whose host (the pid in their name) is gone, once a minute
    old, and never a live host's."""
    import subprocess

    from sandbox import cgroups

    controller, why = cgroups.detect()
    if controller is None:
        pytest.skip(f"no writable pids cgroup controller here: {why}")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = controller.parent / f"job-{gone.pid}-{uuid.uuid4().hex}"
    young = controller.parent / f"job-{gone.pid}-{uuid.uuid4().hex}"
    live = controller.parent / f"job-{os.getpid()}-{uuid.uuid4().hex}"
    try:
        stale.mkdir()
        live.mkdir()
        removed = cgroups.sweep(controller.parent, min_age_s=0)
        assert stale in removed and not stale.exists()
        assert live not in removed and live.is_dir()
        young.mkdir()
        assert young not in cgroups.sweep(controller.parent)  # not a minute old yet
        assert young.is_dir()
    finally:
        for job in (stale, young, live):
            if job.exists():
                job.rmdir()
