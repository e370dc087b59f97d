"""A killable worker pool: hard timeouts for verification without signals.

math-verify/sympy can hang (``10^{10^{10^{10}}}``) in C code that no signal or thread can
interrupt reliably, and ``signal.alarm`` only works in the main thread. So the work runs in
worker *processes* that are killed and replaced when a job overruns.

Design, and why:

* Workers are plain ``python -c`` subprocesses talking over two private pipes with
  length-prefixed pickles (``multiprocessing.connection.Connection``). Unlike
  ``multiprocessing`` spawn/forkserver they never re-import the caller's ``__main__``, so the
  pool works from scripts without a ``__main__`` guard, notebooks and pytest alike.
* Jobs are sent in small batches and results come back one message per job; a job's clock
  starts when its worker becomes free to run it (ready after start-up, or the previous
  result arrived), so queue time and worker start-up never count against the timeout.
* Every call checks workers out of the pool for its own use, so the pool is safe to call from
  any thread (or from ``asyncio.to_thread``); callers beyond the worker count wait.
* Workers start lazily, exit on EOF when the parent goes away (and poll the parent pid while
  busy), and are killed on :meth:`WorkerPool.close` and at interpreter exit.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import os
import pickle
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Literal

__all__ = ["JobResult", "LRUCache", "WorkerPool", "default_workers"]

_PKG_ROOT = str(Path(__file__).resolve().parent.parent)


def default_workers() -> int:
    """min(2, cpu count): verification is CPU-bound and shares the machine with the model."""
    return max(1, min(2, os.cpu_count() or 1))


@dataclass(frozen=True)
class JobResult:
    """What happened to one job. ``status`` is "ok" (``value`` holds the return value),
    "timeout" (the worker was killed) or "error" (``error`` says what was raised)."""

    status: Literal["ok", "timeout", "error"]
    value: Any = None
    error: str | None = None
    elapsed_s: float = 0.0


class _Worker:
    """One worker subprocess and the parent's ends of its pipes."""

    def __init__(self, preload: Sequence[str], memory_limit_mb: int | None) -> None:
        p2c_r, p2c_w = os.pipe()
        c2p_r, c2p_w = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [_PKG_ROOT, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
        )
        args = [
            sys.executable,
            "-c",
            "from verifiers._pool import _worker_main; _worker_main()",
            str(p2c_r),
            str(c2p_w),
            str(memory_limit_mb or 0),
            *preload,
        ]
        try:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                pass_fds=(p2c_r, c2p_w),
                close_fds=True,
                env=env,
            )
        finally:
            os.close(p2c_r)
            os.close(c2p_w)
        self.send_conn = Connection(p2c_w, readable=False)
        self.recv_conn = Connection(c2p_r, writable=False)
        self.spawned_at = time.monotonic()
        self.ready = False
        self.inflight: collections.deque[int] = collections.deque()
        self.clock: float = 0.0  # when the job at the head of ``inflight`` started

    def poll_ready(self) -> bool:
        """Non-blocking: has the worker reported ready? (Reads only the "ready" message; an
        idle worker has nothing else pending.)"""
        if not self.ready:
            with contextlib.suppress(Exception):
                if self.recv_conn.poll():
                    msg = self.recv_conn.recv()
                    if msg[0] == "ready":
                        self.ready = True
                        self.clock = time.monotonic()
        return self.ready

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
        for c in (self.send_conn, self.recv_conn):
            with contextlib.suppress(Exception):
                c.close()

    def stop(self) -> None:
        """Ask politely, then kill: a busy worker cannot read the stop message."""
        with contextlib.suppress(Exception):
            self.send_conn.send(("stop",))
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=0.5)
        self.kill()


_live_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for pool in list(_live_pools):
        pool.close()


class WorkerPool:
    """A pool of killable worker processes that runs module-level functions with hard
    per-job timeouts.

    Args:
        workers: number of worker processes (default :func:`default_workers`).
        preload: modules each worker imports before reporting ready (so slow imports such as
            sympy never count against a job's timeout).
        memory_limit_mb: address-space limit per worker (None: no limit); a job that hits it
            fails with MemoryError instead of swapping the machine to death.
        max_batch: most jobs sent to one worker in one message (lower IPC per job).
        start_timeout_s: how long a worker may take to start before its jobs fail.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        preload: Sequence[str] = (),
        memory_limit_mb: int | None = None,
        max_batch: int = 16,
        start_timeout_s: float = 120.0,
    ) -> None:
        n = default_workers() if workers is None else workers
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch!r}")
        if memory_limit_mb is not None and memory_limit_mb < 64:
            raise ValueError(f"memory_limit_mb must be >= 64 or None, got {memory_limit_mb!r}")
        self.workers = n
        self.preload = tuple(preload)
        self.memory_limit_mb = memory_limit_mb
        self.max_batch = max_batch
        self.start_timeout_s = start_timeout_s
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._closed = False
        self.restarts = 0  # workers replaced after a timeout or crash (for monitoring/tests)
        _live_pools.add(self)

    # ----------------------------------------------------------------------- lifecycle

    def _spawn(self) -> _Worker:
        w = _Worker(self.preload, self.memory_limit_mb)
        self._all.add(w)
        return w

    def close(self) -> None:
        """Stop every worker. The pool can be used again afterwards (workers restart)."""
        with self._cond:
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
            self._cond.notify_all()
        for w in workers:
            w.stop()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # At interpreter shutdown module globals (contextlib included) may already be None.
        try:
            for w in list(self._all):
                w.kill()
        except Exception:  # best effort; close() is the real clean-up
            pass

    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests and monitoring)."""
        with self._cond:
            return [w.proc.pid for w in self._all if w.proc.poll() is None]

    def warm_up(self) -> None:
        """Start every worker now and wait until each is ready."""
        self.map(_noop, [None] * self.workers, timeout_s=self.start_timeout_s)

    # ----------------------------------------------------------------------- checkout

    def _acquire(self, want: int) -> list[_Worker]:
        """Check out between 1 and ``want`` workers, waiting for one if all are busy."""
        with self._cond:
            while True:
                # prefer workers that finished starting, so a fresh one replacing a killed
                # worker does not hold up a caller while another is ready
                self._idle.sort(key=lambda w: not w.poll_ready())
                got = self._idle[:want]
                del self._idle[: len(got)]
                while len(got) < want and len(self._all) < self.workers:
                    got.append(self._spawn())
                if got:
                    return got
                self._cond.wait()

    def _release(self, workers: list[_Worker]) -> None:
        with self._cond:
            for w in workers:
                if w in self._all:
                    self._idle.append(w)
            self._cond.notify_all()

    def _replace(self, w: _Worker) -> _Worker:
        """Kill ``w`` and start its successor (start-up overlaps with the caller's work)."""
        w.kill()
        with self._cond:
            self._all.discard(w)
            self.restarts += 1
            return self._spawn()

    # ----------------------------------------------------------------------- running

    def map(
        self, fn: Callable[[Any], Any], items: Sequence[Any], timeout_s: float
    ) -> list[JobResult]:
        """Run ``fn(item)`` for every item in the workers, keeping the order.

        ``fn`` must be importable by name (a module-level function). Each job gets
        ``timeout_s`` of its own run time; a job past it yields a "timeout" result and its
        worker is replaced. Never raises for a job's failure.
        """
        n = len(items)
        if n == 0:
            return []
        results: list[JobResult | None] = [None] * n
        pending: collections.deque[int] = collections.deque(range(n))
        held = self._acquire(n)
        try:
            self._run(fn, items, timeout_s, results, pending, held)
        finally:
            for i, w in enumerate(held):  # a worker left mid-job is in an unknown state
                if w.inflight:
                    w.inflight.clear()
                    held[i] = self._replace(w)
            self._release(held)
        return [r if r is not None else JobResult("error", error="job lost") for r in results]

    def _dispatch(
        self,
        w: _Worker,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        pending: collections.deque[int],
        nheld: int,
        results: list[JobResult | None],
    ) -> None:
        k = max(1, min(self.max_batch, -(-len(pending) // max(1, nheld))))
        batch = [pending.popleft() for _ in range(min(k, len(pending)))]
        try:
            payload = pickle.dumps(("run", fn, [(i, items[i]) for i in batch]), protocol=5)
        except Exception as e:  # the caller's fault, not the worker's: fail these jobs
            for i in batch:
                results[i] = JobResult("error", error=f"cannot send job: {type(e).__name__}: {e}")
            return
        w.inflight.extend(batch)
        w.clock = time.monotonic()
        # a broken pipe means the worker died; the poll loop sees EOF and handles it
        with contextlib.suppress(OSError):
            w.send_conn.send_bytes(payload)

    def _run(
        self,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        timeout_s: float,
        results: list[JobResult | None],
        pending: collections.deque[int],
        held: list[_Worker],
    ) -> None:
        for w in held:
            if pending:
                self._dispatch(w, fn, items, pending, len(held), results)
        while any(w.inflight for w in held):
            now = time.monotonic()
            busy = [w for w in held if w.inflight]
            deadlines = [
                (w.clock + timeout_s) if w.ready else (w.spawned_at + self.start_timeout_s)
                for w in busy
            ]
            wait_for = max(0.0, min(deadlines) - now)
            ready_conns = wait([w.recv_conn for w in busy], timeout=wait_for)
            for w in busy:
                if w.recv_conn in ready_conns:
                    self._receive(w, results, pending, held)
            now = time.monotonic()
            for idx, w in enumerate(held):
                if not w.inflight:
                    if pending:
                        self._dispatch(w, fn, items, pending, len(held), results)
                    continue
                if w.ready and now >= w.clock + timeout_s:
                    job = w.inflight.popleft()
                    results[job] = JobResult(
                        "timeout", error=f"timed out after {timeout_s:g}s", elapsed_s=now - w.clock
                    )
                    pending.extendleft(reversed(w.inflight))
                    w.inflight.clear()
                    held[idx] = self._replace(w)
                elif not w.ready and now >= w.spawned_at + self.start_timeout_s:
                    for job in w.inflight:
                        results[job] = JobResult(
                            "error", error=f"worker did not start in {self.start_timeout_s:g}s"
                        )
                    w.inflight.clear()
                    held[idx] = self._replace(w)
            for w in held:
                if not w.inflight and pending:
                    self._dispatch(w, fn, items, pending, len(held), results)

    def _receive(
        self,
        w: _Worker,
        results: list[JobResult | None],
        pending: collections.deque[int],
        held: list[_Worker],
    ) -> None:
        try:
            while w.recv_conn.poll():
                msg = w.recv_conn.recv()
                now = time.monotonic()
                if msg[0] == "ready":
                    w.ready = True
                    w.clock = now
                    continue
                if msg[0] == "fatal":  # the worker could not start (bad preload, ...)
                    raise _WorkerDied(str(msg[1]))
                _, job, ok, payload, elapsed = msg
                if w.inflight and w.inflight[0] == job:
                    w.inflight.popleft()
                results[job] = (
                    JobResult("ok", value=payload, elapsed_s=elapsed)
                    if ok
                    else JobResult("error", error=str(payload), elapsed_s=elapsed)
                )
                w.clock = now
        except (EOFError, OSError, _WorkerDied) as e:
            code = w.proc.poll()
            why = str(e) if isinstance(e, _WorkerDied) else f"worker exited (code {code})"
            if w.inflight:
                job = w.inflight.popleft()
                results[job] = JobResult("error", error=why)
                pending.extendleft(reversed(w.inflight))
                w.inflight.clear()
            held[held.index(w)] = self._replace(w)


class _WorkerDied(Exception):
    pass


def _noop(x: Any) -> Any:
    return x


# --------------------------------------------------------------------------- worker side


def _watch_parent(parent: int) -> None:
    """Exit when the parent is gone, even while a job keeps the main thread busy."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(3)


def _worker_main() -> None:
    """Entry point of a worker subprocess: ``argv = [fd_in, fd_out, memory_mb, *preload]``."""
    import importlib

    fd_in, fd_out, mem = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    preload = sys.argv[4:]
    conn_in = Connection(fd_in, writable=False)
    conn_out = Connection(fd_out, readable=False)
    # stray prints must not corrupt the protocol: it has its own fds, stdout goes to stderr
    with contextlib.suppress(OSError):
        os.dup2(2, 1)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    if mem > 0:
        import resource

        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (mem << 20, mem << 20))
    try:
        for mod in preload:
            importlib.import_module(mod)
    except BaseException as e:
        conn_out.send(("fatal", f"preloading failed: {type(e).__name__}: {e}"))
        return
    conn_out.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn_in.recv()
        except (EOFError, OSError):
            return
        except Exception as e:  # an unpicklable function reference, say
            conn_out.send(("fatal", f"bad message: {type(e).__name__}: {e}"))
            return
        if msg[0] == "stop":
            return
        _, fn, jobs = msg
        for job, arg in jobs:
            t0 = time.perf_counter()
            try:
                out: tuple[Any, ...] = ("res", job, True, fn(arg), 0.0)
            except BaseException as e:
                out = ("res", job, False, f"{type(e).__name__}: {e}", 0.0)
            out = (*out[:4], time.perf_counter() - t0)
            try:
                conn_out.send(out)
            except (pickle.PicklingError, TypeError, AttributeError) as e:
                conn_out.send(("res", job, False, f"result not picklable: {e}", out[4]))


class LRUCache:
    """A small thread-safe LRU map for verdicts (capacity 0 disables it). Lives here with the
    other shared plumbing of the verifiers."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data: collections.OrderedDict[Any, Any] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Any) -> Any:
        if self.capacity <= 0:
            return None
        with self._lock:
            try:
                value = self._data[key]
            except KeyError:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Any, value: Any) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
