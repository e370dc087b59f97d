"""A per-job ``pids`` cgroup: a hard cap on processes and a way to kill every one of them.

Why: RLIMIT_NPROC never binds a process whose real uid is host root (the kernel exempts root,
user namespaces or not), so when the sandbox runs as root a fork bomb is only stopped by a
cgroup's ``pids.max``. A cgroup also lists every process a job started, wherever it went, so
the host can kill them all at the end.

Used when a writable pids controller exists (as root, usually): cgroup v2 (``pids`` enabled in
the root's ``cgroup.subtree_control``) or the v1 ``pids`` hierarchy. Otherwise absent, and the
sandbox relies on RLIMIT_NPROC (which does bind non-root users).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

V2_ROOT = Path("/sys/fs/cgroup")
V1_ROOT = Path("/sys/fs/cgroup/pids")
PARENT_NAME = "brite-sandbox"


@dataclass(frozen=True)
class PidsController:
    """Where job cgroups are created, and which cgroup version that is."""

    parent: Path
    version: int

    def create(self, pids_max: int) -> JobCgroup:
        path = self.parent / f"job-{os.getpid()}-{uuid.uuid4().hex}"  # the host's pid: see sweep
        path.mkdir()
        try:
            (path / "pids.max").write_text(str(pids_max))
        except OSError:
            path.rmdir()
            raise
        return JobCgroup(path, self.version)

    def describe(self) -> str:
        return f"cgroup v{self.version} pids.max ({self.parent})"


@dataclass(frozen=True)
class JobCgroup:
    """One job's cgroup."""

    path: Path
    version: int

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        try:
            text = (self.path / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(x) for x in text.split()]

    def kill_all(self, budget_s: float = 5.0) -> int:
        """SIGKILL everything in the cgroup until it is empty; the number left if not."""
        kill_file = self.path / "cgroup.kill"
        if self.version == 2 and kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        end = time.monotonic() + budget_s
        while True:
            pids = self.pids()
            if not pids:
                return 0
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > end:
                return len(self.pids())
            time.sleep(0.002)

    def remove(self) -> None:
        # A killed process leaves its cgroup once it is reaped by its parent: retry briefly.
        for _ in range(500):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)


class _Disposer:
    """Kills and removes job cgroups off the job's path: a job's last process (the fork
    server's init) may still be exiting when its report is in, and waiting for it would
    leave a worker idle for the few milliseconds a namespace takes to be torn down."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[JobCgroup, float] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending = 0

    def submit(self, cgroup: JobCgroup, budget_s: float) -> None:
        with self._lock:
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():  # also after a fork
                self._thread = threading.Thread(
                    target=self._run, name="brite-cgroup-disposer", daemon=True
                )
                self._thread.start()
        self._queue.put((cgroup, budget_s))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            cgroup, budget_s = item
            try:
                cgroup.kill_all(budget_s=budget_s)
                cgroup.remove()
            finally:
                with self._lock:
                    self._pending -= 1

    def drain(self, timeout_s: float = 10.0) -> None:
        """Wait until every submitted cgroup is gone (interpreter exit)."""
        end = time.monotonic() + timeout_s
        while self._pending and time.monotonic() < end:
            time.sleep(0.005)


_disposer = _Disposer()
atexit.register(lambda: _disposer.drain())


def _after_fork_in_child() -> None:
    global _disposer
    _disposer = _Disposer()  # the parent's thread and lock are not this process's


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def dispose(cgroup: JobCgroup, budget_s: float = 5.0) -> None:
    """Remove ``cgroup`` now if it is already empty, else kill what is left in it and remove
    it in the background."""
    try:
        cgroup.path.rmdir()
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    _disposer.submit(cgroup, budget_s)


def sweep(parent: Path, min_age_s: float = 60.0) -> list[Path]:
    """Remove the empty job cgroups that a host which has died left (one killed by SIGKILL or
    SIGTERM never runs its clean-up), and return them. Only empty ones can be removed at all
    (the kernel refuses the rest), and only those whose host is gone (the pid in their name;
    none in the names older versions gave) and that are older than ``min_age_s``: a live
    host's job cgroup is empty only for the moments before its process joins and after it
    has ended."""
    removed: list[Path] = []
    now = time.time()
    try:
        jobs = [p for p in parent.iterdir() if p.name.startswith("job-") and p.is_dir()]
    except OSError:
        return removed
    for job in jobs:
        fields = job.name.split("-")
        if len(fields) == 3 and fields[1].isdigit() and _alive(int(fields[1])):
            continue
        try:
            if now - job.stat().st_mtime < min_age_s:
                continue
            job.rmdir()
        except OSError:  # not empty, or gone already
            continue
        removed.append(job)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process, but a live one
    return True


def _try_parent(parent: Path, version: int) -> PidsController | None:
    try:
        parent.mkdir(exist_ok=True)
        if version == 2:  # job cgroups below the parent need the controller delegated
            (parent / "cgroup.subtree_control").write_text("+pids")
        controller = PidsController(parent, version)
        controller.create(8).remove()
    except OSError:
        return None
    sweep(parent)
    return controller


def detect() -> tuple[PidsController | None, str]:
    """A usable pids controller, or None and why not."""
    if not hasattr(os, "geteuid"):
        return None, "not a POSIX system"
    controllers = V2_ROOT / "cgroup.controllers"
    if controllers.is_file():
        try:
            enabled = (V2_ROOT / "cgroup.subtree_control").read_text().split()
        except OSError:
            enabled = []
        if "pids" in enabled:
            found = _try_parent(V2_ROOT / PARENT_NAME, 2)
            if found is not None:
                return found, ""
        return None, "cgroup v2 without a writable pids controller"
    if (V1_ROOT / "cgroup.procs").is_file():
        found = _try_parent(V1_ROOT / PARENT_NAME, 1)
        if found is not None:
            return found, ""
        return None, "cgroup v1 pids hierarchy is not writable"
    return None, "no pids cgroup controller mounted"
