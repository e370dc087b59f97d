"""After the test suite, no process started by the sandbox is still alive.

Named ``test_zz_*`` so it runs after every other module (pytest runs files in name order, and
module-scoped fixtures, like the docker tests' private ``dockerd`` and the ray tests' local
Ray, are torn down when their module ends). It is not marked slow, so the default suite runs
it; run alone it checks whatever earlier runs may have left on this machine.

A process counts as the sandbox's when its command line carries the supervisor's source
(``sandbox/_runner.py``, which every wrapper and container bootstrap passes on) or a threat
test's marker or the test daemon's folder, or its environment or working directory points at
a sandbox working directory (``brite-sbx-``) or the containers' ``BRITE_SANDBOX`` marker.
One is *left over* when no live host process owns it: walking up its parents reaches PID 1
without meeting a live, unmarked Python process (the program that runs the job). Jobs that
belong to another live run (a colleague's tests, a benchmark) therefore do not count, and
anything that is only finishing gets a grace period before the test fails. Per-job pids
cgroups left under the sandbox's cgroup parent, and the docker tests' cgroup parent, count
as well.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from sandbox import cgroups
from sandbox.process import _RUNNER_SOURCE

GRACE_S = 30.0
RUNNER_SIGNATURE = "PR_SET_CHILD_SUBREAPER = 36"
CMDLINE_MARKS = (RUNNER_SIGNATURE, "brite-sandbox-test-", "brite-dockerd-")
PATH_MARK = "/brite-sbx-"
ENV_MARKS = ("BRITE_SANDBOX_TOKEN=", "BRITE_SANDBOX=docker")
DOCKER_TEST_CGROUP = "brite-dockerd-test"


@dataclass(frozen=True)
class Leftover:
    what: str
    ident: tuple[object, ...]
    detail: str


def _why_marked(proc: psutil.Process) -> str | None:
    """Why ``proc`` looks like something the sandbox (or its tests) started, or None."""
    try:
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return None
    for mark in CMDLINE_MARKS:
        if mark in cmdline:
            return f"command line carries {mark!r}"
    try:
        cwd = proc.cwd()
    except (psutil.Error, OSError):
        cwd = ""
    if PATH_MARK in cwd:
        return f"works in {cwd}"
    try:
        env = proc.environ()
    except (psutil.Error, OSError):
        env = {}
    for key, value in env.items():
        item = f"{key}={value}"
        if any(item.startswith(m) for m in ENV_MARKS) or (
            key in ("HOME", "TMPDIR") and PATH_MARK in value
        ):
            return f"environment has {item[:80]!r}"
    return None


def _is_python(proc: psutil.Process) -> bool:
    try:
        return "python" in os.path.basename(proc.exe()).lower()
    except (psutil.Error, OSError):
        return False


def _leftover_processes() -> list[Leftover]:
    me = os.getpid()
    mine = {me, *(p.pid for p in psutil.Process(me).parents())}
    marks: dict[int, str | None] = {}

    def marked(p: psutil.Process) -> str | None:
        if p.pid not in marks:
            marks[p.pid] = None if p.pid in mine else _why_marked(p)
        return marks[p.pid]

    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid in mine or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            why = marked(proc)
            if why is None:
                continue
            owner = None
            for parent in proc.parents():
                if parent.pid == 1:
                    break
                if marked(parent) is None and _is_python(parent):
                    owner = parent
                    break
            if owner is not None:
                continue  # a live job of a live host (this run's or another one's)
            found.append(
                Leftover(
                    "process",
                    (proc.pid, proc.create_time()),
                    f"pid {proc.pid} ({why}): {' '.join(proc.cmdline())[:160]!r}",
                )
            )
        except psutil.Error:
            continue
    return found


def _leftover_cgroups() -> list[Leftover]:
    """Job cgroups nobody removed: empty ones, or ones whose processes have no live host."""
    found = []
    parents = [cgroups.V2_ROOT / cgroups.PARENT_NAME, cgroups.V1_ROOT / cgroups.PARENT_NAME]
    for parent in parents:
        if not parent.is_dir():
            continue
        for job in parent.glob("job-*"):
            try:
                procs = (job / "cgroup.procs").read_text().split()
            except OSError:
                continue
            if not procs:
                found.append(Leftover("cgroup", (str(job),), f"empty job cgroup {job}"))
    docker_parents = [p / DOCKER_TEST_CGROUP for p in Path("/sys/fs/cgroup").glob("*")]
    daemons = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any("brite-dockerd-" in part for part in (p.info["cmdline"] or []))
    ]
    if not daemons:
        for cg in docker_parents:
            if cg.is_dir():
                found.append(Leftover("cgroup", (str(cg),), f"docker test cgroup parent {cg}"))
    return found


def _scan() -> list[Leftover]:
    return _leftover_processes() + _leftover_cgroups()


def test_the_runner_signature_is_current() -> None:
    """The scan recognises supervisors by a line of their source: it must still be there."""
    assert RUNNER_SIGNATURE in _RUNNER_SOURCE


def test_no_process_started_by_the_sandbox_is_alive() -> None:
    first = _scan()
    left = first
    deadline = time.monotonic() + GRACE_S
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        still = {x.ident for x in _scan()}
        left = [x for x in left if x.ident in still]  # only what has been there all along
    assert not left, "left over by the sandbox:\n" + "\n".join(x.detail for x in left)
