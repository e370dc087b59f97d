"""The ray backend: sandbox jobs as Ray tasks, each run by the process backend on its worker.

Tests that start Ray (a local instance with two CPUs for this module) are marked slow; the
configuration checks and the "Ray is missing" error need no Ray and run by default.
"""

from __future__ import annotations

import itertools
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

import sandbox
from sandbox import ExecStatus, IsolationUnavailableError, Job, SandboxConfigError
from sandbox.process import ProcessBackend
from sandbox.ray_backend import RayBackend, RayBackendConfig

try:
    import ray
except ImportError:  # the "ray" extra is optional
    ray = None

NO_RAY = "ray is not installed; install it with: pip install 'brite[ray]'"


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    """A local Ray instance with two CPUs for the whole module."""
    if ray is None:
        pytest.skip(NO_RAY)
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def backend(ray_local: Any) -> RayBackend:
    return RayBackend()


def _marker() -> str:
    return f"brite-sandbox-test-{uuid.uuid4().hex}"


def _sleeper(marker: str) -> str:
    return (
        "os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(1000)', "
        f"{marker!r}])"
    )


def _assert_no_leftovers(marker: str) -> None:
    """The local cluster's workers are host processes: nothing tagged ``marker`` survives."""
    time.sleep(0.2)
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in proc.info["cmdline"] or []):
                left.append(proc.pid)
        except psutil.Error:
            continue
    assert not left, f"processes survived the sandbox on the Ray worker: {left}"


# -- no Ray instance needed --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "bad"),
    [
        ({"num_cpus_per_job": 0}, "0"),
        ({"num_cpus_per_job": float("nan")}, "nan"),
        ({"max_retries": -1}, "-1"),
        ({"address": ""}, "''"),
        ({"process_options": {"isolaton": "bwrap"}}, "isolaton"),
        ({"process_options": {"isolation": "chroot"}}, "chroot"),
    ],
)
def test_config_rejects_bad_values_naming_them(options: dict[str, Any], bad: str) -> None:
    with pytest.raises(SandboxConfigError) as info:
        RayBackendConfig(**options)
    assert isinstance(info.value, ValueError)
    assert bad in str(info.value), str(info.value)


def test_missing_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(IsolationUnavailableError, match=r"brite\[ray\]"):
        RayBackend().run(Job("print(1)"))


# -- on a local Ray instance ---------------------------------------------------------------------


@pytest.mark.slow
def test_capabilities_come_from_a_worker(backend: RayBackend) -> None:
    caps = backend.capabilities()
    print(caps.summary(), caps.notes)
    local = ProcessBackend().capabilities()
    assert caps.backend == "ray"
    assert caps.isolation == local.isolation  # same machine, same process backend
    assert caps.pid_namespace == local.pid_namespace and caps.rlimits == local.rlimits
    assert any("Ray tasks" in n for n in caps.notes)
    other = RayBackend(process_options={"isolation": "none"})
    assert other.capabilities().isolation == "none"


@pytest.mark.slow
def test_run_many_keeps_order_and_bounds_concurrency(backend: RayBackend) -> None:
    code = "import time\nt0 = time.time()\ntime.sleep({d})\nprint({i}, t0, time.time())"
    jobs = [Job(code.format(i=i, d=(5 - i) * 0.15)) for i in range(6)]
    results = backend.run_many(jobs)  # later jobs finish first
    assert [r.status for r in results] == [ExecStatus.OK] * 6, results
    assert [int(r.stdout.split()[0]) for r in results] == list(range(6))
    serial = backend.run_many(jobs[:3], concurrency=1)
    spans = sorted(tuple(map(float, r.stdout.split()[1:])) for r in serial)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.05, spans
    assert [int(r.stdout.split()[0]) for r in serial] == [0, 1, 2]
    # Plain strings and dicts through the public API.
    out = sandbox.run_many(["print(1)", {"code": "print(2)", "timeout_s": 5}], backend=backend)
    assert [r.stdout for r in out] == ["1\n", "2\n"]


@pytest.mark.slow
def test_stdin_files_and_exit_codes_travel(backend: RayBackend) -> None:
    r = backend.run(
        Job(
            "import sys, helper\nprint(helper.shout(sys.stdin.read()))\nsys.exit(3)",
            stdin="hello",
            files={"helper.py": "def shout(s):\n    return s.upper()\n"},
            env={"VISIBLE": "yes"},
        )
    )
    assert r.status is ExecStatus.ERROR and r.exit_code == 3 and r.stdout == "HELLO\n", r


@pytest.mark.slow
def test_threats_are_contained_on_the_worker(backend: RayBackend) -> None:
    marker = _marker()
    sleep_code = (
        f"import os, sys\nif os.fork() == 0:\n    {_sleeper(marker)}\nimport time\ntime.sleep(1000)"
    )
    daemon_marker = _marker()
    daemon_code = (
        "import os, sys\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        {_sleeper(daemon_marker)}\n    os._exit(0)\nos.wait()\nprint('parent done')"
    )
    jobs = [
        Job("while True:\n    pass", timeout_s=1),
        Job(sleep_code, timeout_s=1),
        Job("b = []\nwhile True:\n    b.append(bytearray(50 * 1024 * 1024))", memory_mb=512),
        Job(daemon_code, timeout_s=10),
        Job(
            "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\n"
            "time.sleep(100)",
            timeout_s=2,
        ),
    ]
    loop, sleep, bomb, daemon, killer = backend.run_many(jobs)
    assert loop.status is ExecStatus.TIMEOUT, loop
    assert sleep.status is ExecStatus.TIMEOUT and "1 s" in sleep.detail, sleep
    assert bomb.status is ExecStatus.OOM and "512 MB" in bomb.detail, bomb
    assert daemon.ok and daemon.stdout == "parent done\n" and daemon.wall_s < 5, daemon
    assert killer.status in (ExecStatus.KILLED, ExecStatus.TIMEOUT), killer
    assert killer.sandbox_error is None
    _assert_no_leftovers(marker)
    _assert_no_leftovers(daemon_marker)


@pytest.mark.slow
def test_driver_secrets_do_not_reach_the_program(
    backend: RayBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("BRITE_TEST_SECRET", secret)
    r = backend.run(Job("import os\nprint(dict(os.environ))", env={"VISIBLE": "yes"}))
    assert r.ok and secret not in r.stdout and "'VISIBLE': 'yes'" in r.stdout, r


@pytest.mark.slow
def test_the_registered_name_and_the_code_verifier_use_ray(ray_local: Any) -> None:
    """``backend="ray"`` resolves lazily to a shared RayBackend on the running Ray."""
    from verifiers.code import CodeVerifier

    sandbox.register_backend("ray", "sandbox.ray_backend:RayBackend", overwrite=True)
    try:
        r = sandbox.run("print('via ray')", backend="ray")
        assert r.ok and r.stdout == "via ray\n", r
        ref = (
            '{"kind": "humaneval", "prompt": "def add(a, b):\\n", "entry_point": "add", '
            '"test": "def check(candidate):\\n    assert candidate(1, 2) == 3\\n"}'
        )
        right, wrong = CodeVerifier(backend="ray", timeout_s=20).verify_many(
            ["```python\ndef add(a, b):\n    return a + b\n```", "    return a - b\n"], [ref, ref]
        )
        assert right.correct and not wrong.correct, (right, wrong)
    finally:
        sandbox.get_backend("ray").close()  # Ray was running already: it stays up
        sandbox.register_backend("ray", "sandbox.ray_backend:RayBackend", overwrite=True)
    assert ray_local.is_initialized()
