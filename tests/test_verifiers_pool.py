"""WorkerPool: hard timeouts by killing processes, recovery, order, cleanup."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from verifiers._pool import LRUCache, WorkerPool


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); check its state
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_map_keeps_order_and_runs_in_parallel() -> None:
    with WorkerPool(2) as pool:
        pool.warm_up()
        out = pool.map(math.sqrt, [float(i * i) for i in range(200)], timeout_s=5)
        assert [r.value for r in out] == [float(i) for i in range(200)]
        assert all(r.status == "ok" for r in out)
        t0 = time.perf_counter()
        pool.map(time.sleep, [0.4, 0.4], timeout_s=5)
        assert time.perf_counter() - t0 < 0.75  # two workers, not one after the other


def test_timeout_kills_and_replaces_the_worker() -> None:
    with WorkerPool(1) as pool:
        pool.warm_up()
        (old,) = pool.pids()
        t0 = time.perf_counter()
        out = pool.map(time.sleep, [0.05, 30, 0.05], timeout_s=0.5)
        assert [r.status for r in out] == ["ok", "timeout", "ok"]
        assert time.perf_counter() - t0 < 5
        assert pool.restarts == 1
        assert not _alive(old)
        assert pool.map(math.sqrt, [16.0], timeout_s=5)[0].value == 4.0


def test_exceptions_become_error_results() -> None:
    with WorkerPool(1) as pool:
        (r,) = pool.map(math.sqrt, [-1.0], timeout_s=5)
        assert r.status == "error" and "ValueError" in (r.error or "")
        (r,) = pool.map(math.sqrt, [lambda: 0], timeout_s=5)  # unpicklable job
        assert r.status == "error" and "cannot send" in (r.error or "")


def test_worker_crash_is_an_error_and_pool_recovers() -> None:
    with WorkerPool(1) as pool:
        out = pool.map(os._exit, [3], timeout_s=5)
        assert out[0].status == "error" and "exited" in (out[0].error or "")
        assert pool.map(abs, [-2], timeout_s=5)[0].value == 2


def test_close_leaves_no_processes() -> None:
    pool = WorkerPool(2)
    pool.warm_up()
    pids = pool.pids()
    assert len(pids) == 2
    pool.close()
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def test_workers_start_lazily() -> None:
    pool = WorkerPool(2)
    assert pool.pids() == []
    pool.close()


def test_interpreter_exit_reaps_workers(tmp_path: object) -> None:
    code = textwrap.dedent(
        """
        from verifiers._pool import WorkerPool
        p = WorkerPool(2)
        p.warm_up()
        print(" ".join(map(str, p.pids())), flush=True)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    pids = [int(x) for x in out.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def test_concurrent_callers_share_the_pool() -> None:
    with WorkerPool(2) as pool:
        got: dict[int, list[float]] = {}

        def call(k: int) -> None:
            got[k] = [r.value for r in pool.map(math.sqrt, [float(k * k)] * 3, timeout_s=10)]

        threads = [threading.Thread(target=call, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert got == {k: [float(k)] * 3 for k in range(8)}
        assert len(pool.pids()) <= 2


def test_bad_pool_arguments() -> None:
    with pytest.raises(ValueError, match="0"):
        WorkerPool(0)
    with pytest.raises(ValueError, match="-1"):
        WorkerPool(1, max_batch=-1)


def test_lru_cache_is_bounded() -> None:
    c = LRUCache(2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1
    c.put("c", 3)  # evicts b, the least recently used
    assert c.get("b") is None and c.get("a") == 1 and c.get("c") == 3
    assert len(c) == 2
    off = LRUCache(0)
    off.put("a", 1)
    assert off.get("a") is None
