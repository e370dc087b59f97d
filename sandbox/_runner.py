"""The supervisor that runs *inside* the sandbox, in front of the untrusted program.

The host starts it as ``python -I -S -c <this source> <spec json>`` (so it imports nothing from
the project and nothing the working directory could shadow). It

* becomes a child subreaper, so every process the program detaches (double-forked daemons,
  ``setsid``) is re-parented to it instead of escaping;
* forks the program with the rlimits applied in the child only (the supervisor itself is not
  limited, so it can always clean up);
* enforces the wall-clock deadline itself, then kills the program and *every* remaining
  descendant, reaping them, before it exits;
* reports what happened as one JSON object on a private pipe (``status_fd``) that the program
  never holds, so the program cannot forge its own result.

It must stay standard-library only and compatible with every Python the project supports.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import select
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
_SHIELDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
)


def _set_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _children(me: int) -> list[int]:
    """Direct children of ``me`` (orphans are re-parented to us, so this finds them all)."""
    kids: list[int] = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return kids
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                data = fh.read()
            ppid = int(data[data.rindex(b")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me:
            kids.append(int(name))
    return kids


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        except InterruptedError:
            continue
        if pid == 0:
            return


def _kill_all(me: int, budget_s: float) -> int:
    """SIGKILL every descendant until none is left (or the budget runs out); the number left."""
    end = time.monotonic() + budget_s
    while True:
        _reap()
        kids = _children(me)
        if not kids:
            return 0
        for pid in kids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        _reap()
        if time.monotonic() > end:
            return len(_children(me))
        time.sleep(0.001)


def _apply_rlimits(limits: dict[str, list[int]]) -> None:
    for name, (soft, hard) in limits.items():
        which = getattr(resource, name, None)
        if which is None:
            continue
        _, cur_hard = resource.getrlimit(which)
        if cur_hard != resource.RLIM_INFINITY:
            # An unprivileged process may lower but never raise its hard limit.
            hard = cur_hard if hard == -1 else min(hard, cur_hard)
            soft = hard if soft == -1 else min(soft, hard)
        resource.setrlimit(which, (soft, hard))


def _wait_deadline(pid: int, deadline: float) -> int | None:
    """The wait status of ``pid``, or None if it is still running at ``deadline``."""
    pidfd = -1
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = -1
    try:
        while True:
            try:
                wpid, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return 0
            if wpid == pid:
                return status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if pidfd >= 0:
                select.select([pidfd], [], [], remaining)
            else:
                time.sleep(min(0.002, remaining))
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def main() -> None:
    spec = json.loads(sys.argv[1])
    status_fd: int = spec["status_fd"]
    argv: list[str] = spec["argv"]
    report: dict[str, object] = {"subreaper": _set_subreaper()}
    start = time.monotonic()
    deadline = start + float(spec["timeout_s"])

    # The program may signal its whole process group; only SIGKILL should stop the supervisor.
    for sig in _SHIELDED:
        signal.signal(sig, signal.SIG_IGN)
    # A close-on-exec pipe tells us whether exec() succeeded (EOF) or why it failed.
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the program
        try:
            os.close(err_r)
            os.close(status_fd)
            os.setpgid(0, 0)  # its own group: one killpg stops most of a fork bomb at once
            for sig in (*_SHIELDED, signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            _apply_rlimits(spec["rlimits"])
            os.execv(argv[0], argv)
        except BaseException as exc:
            os.write(err_w, f"{type(exc).__name__}: {exc}".encode()[:2000])
        os._exit(127)
    os.close(err_w)
    with os.fdopen(err_r, "rb") as fh:
        exec_error = fh.read().decode("utf-8", "replace")
    if exec_error:
        report["start_error"] = f"could not start {argv[0]}: {exec_error}"

    status = _wait_deadline(pid, deadline)
    report["timed_out"] = status is None
    if status is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    report["elapsed_s"] = time.monotonic() - start
    if os.WIFSIGNALED(status):
        report["signal"] = os.WTERMSIG(status)
        report["exit_code"] = -os.WTERMSIG(status)
    else:
        report["exit_code"] = os.WEXITSTATUS(status)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # what is left of the program's group (daemons)
    report["leftover"] = _kill_all(os.getpid(), float(spec.get("kill_budget_s", 5.0)))
    os.write(status_fd, json.dumps(report).encode())
    os.close(status_fd)


if __name__ == "__main__":
    main()
