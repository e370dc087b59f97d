"""The interface every sandbox backend implements (process, docker, ray)."""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from sandbox.errors import SandboxConfigError
from sandbox.types import Capabilities, ExecResult, Job


def check_concurrency(concurrency: int | None) -> int:
    """The worker count to use: ``concurrency``, or one per CPU when None."""
    if concurrency is None:
        return max(1, os.cpu_count() or 1)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise SandboxConfigError(f"concurrency must be an int >= 1 or None, got {concurrency!r}")
    return concurrency


class Backend(abc.ABC):
    """Runs jobs in isolation. ``run`` never raises for anything the *code* does: hangs, crashes
    and abuse become an :class:`ExecResult`; a broken host becomes one with ``sandbox_error``."""

    name: str = "backend"

    @abc.abstractmethod
    def run(self, job: Job) -> ExecResult:
        """Run one job to completion and clean up everything it started."""

    @abc.abstractmethod
    def capabilities(self) -> Capabilities:
        """The isolation actually in force on this machine."""

    def run_many(self, jobs: Sequence[Job], *, concurrency: int | None = None) -> list[ExecResult]:
        """Run ``jobs`` with at most ``concurrency`` at a time, returning results in job order.

        Threads suffice here: each one only waits on its own child process."""
        jobs = list(jobs)
        if not jobs:
            return []
        workers = min(check_concurrency(concurrency), len(jobs))
        if workers == 1:
            return [self.run(j) for j in jobs]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
            return list(pool.map(self.run, jobs))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release long-lived resources (containers, actors), if any."""
