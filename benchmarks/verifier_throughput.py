"""Math-verifier throughput on the MATH-500 human solutions, against raw math-verify.

Inputs: each MATH-500 record's ``solution`` is the completion and its ``answer`` the
reference (``$BRITE_DATA_DIR/math500/test.jsonl``, default ``../shared/data`` from the repo
root). Measured in one run, on the same inputs:

* raw baseline: in-process ``math_verify.parse(gold)``, ``parse(pred)``,
  ``verify(gold, pred)`` with math-verify's signal timeouts disabled, in the main thread of
  this one process (gold is wrapped as ``$answer$``, pred is the whole solution);
* ``MathVerifier`` with 1 and 2 worker processes, verdict cache off, in two modes:
  ``symbolic`` (``string_match=False``: every answer goes to math-verify in a worker, the
  like-for-like comparison with raw) and ``default`` (the shipped configuration, where an
  answer spelled like the reference is accepted without a worker);
* for each worker count above 1, the raw baseline run in that many processes at once (each
  on its share), forked copies of this process and fresh interpreters: how well the raw
  work itself scales on this machine, the ceiling for the verifier's scaling.

Throughput is ``verify_many`` over all inputs at once (verdicts per second); latency is the
wall time of single ``verify`` calls made one after another by as many client threads as
there are workers (p50/p99). Warm-up: this process, and each verifier's workers, grade all
inputs once untimed, then result caches (sympy's, math-verify's, the workers' parse cache)
are cleared before every timed pass, so passes measure grading, not cache hits, and not
one-time lazy initialisation either. Passes are interleaved (raw, raw in k processes, then
every verifier, per repeat) and ratios are taken within a repeat, so load from other
processes on a shared machine hits all of them alike; medians over repeats are reported.

    python -m benchmarks.verifier_throughput [--workers 1 2] [--repeats 5] [--limit N]
        [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"
TARGET_PER_WORKER = 0.8
QUICK = {"workers": [1], "repeats": 1, "limit": 16}
"""The ``--quick`` sizes (smoke runs and tests); explicit options still win."""


def data_file() -> Path:
    """MATH-500's test file; a clear error (SystemExit) when it is missing."""
    root = Path(os.environ.get("BRITE_DATA_DIR") or DEFAULT_DATA)
    path = root / "math500" / "test.jsonl"
    if not path.is_file():
        raise SystemExit(
            f"MATH-500 data not found at {path}. Set BRITE_DATA_DIR to the folder holding "
            "math500/test.jsonl (the project's shared data folder)."
        )
    return path


def load_inputs(limit: int | None = None) -> tuple[list[str], list[str]]:
    """(completions, references): each record's human solution and its ``answer``."""
    comps, refs = [], []
    with data_file().open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                comps.append(rec["solution"])
                refs.append(str(rec["answer"]).strip())
    return (comps[:limit], refs[:limit]) if limit else (comps, refs)


def clear_caches(_: Any = None) -> int:
    """Forget every cached parse/simplification in this process (sympy's cache,
    math-verify's LaTeX parse caches, the math verifier's parse cache); runs in workers too,
    hence module level. Returns the pid, so the caller can see every worker ran it."""
    from sympy.core.cache import clear_cache

    clear_cache()
    import math_verify.parser as mvp

    for name in ("parse_latex_cached", "parse_expr_cached"):
        fn = getattr(mvp, name, None)
        if fn is not None and hasattr(fn, "cache_clear"):
            fn.cache_clear()
    if "verifiers.math" in sys.modules:
        sys.modules["verifiers.math"]._parse.cache_clear()
    return os.getpid()


def _quiet() -> Any:
    import math_verify

    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return math_verify


def raw_pass(comps: Sequence[str], refs: Sequence[str]) -> tuple[float, list[float], int]:
    """(seconds, per-item latencies, correct count) of raw parse+parse+verify."""
    mv = _quiet()
    lat: list[float] = []
    correct = 0
    t0 = time.perf_counter()
    for pred_text, gold_text in zip(comps, refs, strict=True):
        t = time.perf_counter()
        try:
            gold = mv.parse("$" + gold_text + "$", parsing_timeout=None)
            pred = mv.parse(pred_text, parsing_timeout=None)
            correct += bool(mv.verify(gold, pred, timeout_seconds=None))
        except Exception:  # counted as not correct; the timing still stands
            pass
        lat.append(time.perf_counter() - t)
    return time.perf_counter() - t0, lat, correct


def _clear_workers(verifier: Any) -> None:
    """Run :func:`clear_caches` once in every worker of the verifier's pool."""
    # under ``python -m`` this module is __main__, which workers cannot import by that name
    from benchmarks.verifier_throughput import clear_caches as job

    pool = verifier.pool
    results: list[Any] = []
    for _ in range(20):
        want = set(pool.pids())
        results = pool.map(job, [None] * pool.workers, 60.0)
        if want and want <= {r.value for r in results if r.status == "ok"}:
            return
    raise RuntimeError(f"could not reach every worker to clear its caches: {results}")


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def _closed_loop_latencies(
    verify: Callable[[str, str], Any], comps: Sequence[str], refs: Sequence[str], clients: int
) -> list[float]:
    """Per-call wall times of single ``verify`` calls, ``clients`` threads at once, each
    working through its own share of the inputs one call at a time."""
    out: list[list[float]] = [[] for _ in range(clients)]

    def client(k: int) -> None:
        for i in range(k, len(comps), clients):
            t = time.perf_counter()
            verify(comps[i], refs[i])
            out[k].append(time.perf_counter() - t)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [x for part in out for x in part]


def _raw_child(conn: Any, comps: Sequence[str], refs: Sequence[str], warm: bool) -> None:
    """Body of a raw-baseline process: one timed pass per "go", until None. A spawned
    (fresh) process first warms itself up on the inputs, as the parent did."""
    if warm:
        raw_pass(comps, refs)
    while conn.recv() is not None:
        clear_caches()
        dt, _, correct = raw_pass(comps, refs)
        conn.send((dt, correct))


class RawProcesses:
    """``k`` processes, each grading its share of the inputs with raw math-verify in its
    main thread: how well the raw baseline itself scales on this machine, the ceiling
    against which the verifier's scaling is judged. ``method="fork"`` copies this warmed-up
    process (its pages stay shared, which helps CPU caches); ``"spawn"`` starts fresh
    interpreters, as the verifier's workers are."""

    def __init__(self, k: int, comps: Sequence[str], refs: Sequence[str], method: str) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context(method)
        self.conns: list[Any] = []
        self.procs: list[Any] = []
        for i in range(k):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_raw_child,
                args=(child, comps[i::k], refs[i::k], method != "fork"),
                daemon=True,
            )
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def run(self) -> tuple[float, int]:
        """(wall seconds until every process finished its share, correct verdicts)."""
        t0 = time.perf_counter()
        for c in self.conns:
            c.send("go")
        results = [c.recv() for c in self.conns]
        return time.perf_counter() - t0, sum(ok for _, ok in results)

    def close(self) -> None:
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.send(None)
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


def _statuses(verdicts: Sequence[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in verdicts:
        out[v.status.value] = out.get(v.status.value, 0) + 1
    return out


def measure(
    comps: list[str], refs: list[str], workers: Sequence[int], repeats: int
) -> dict[str, Any]:
    """Every configuration, interleaved: each repeat runs the raw pass and then one pass of
    every verifier, so load from other processes on a shared machine hits all of them
    alike, and ratios are taken within a repeat (median over repeats)."""
    from verifiers.math import MathVerifier

    configs = [(mode, w) for mode in ("symbolic", "default") for w in workers]
    vs = {
        (mode, w): MathVerifier(workers=w, cache_size=0, string_match=(mode == "default"))
        for mode, w in configs
    }
    parallel: dict[tuple[str, int], RawProcesses] = {}
    try:
        clear_caches()
        raw_pass(comps, refs)  # warm-up: lazy imports and first-use paths of sympy/math-verify
        # (forked before any worker pool exists, so no worker pipe is inherited)
        methods = ["fork", "spawn"] if hasattr(os, "fork") else ["spawn"]
        parallel = {
            (m, k): RawProcesses(k, comps, refs, m) for m in methods for k in workers if k > 1
        }
        for v in vs.values():
            v.pool.warm_up()
            v.verify_many(comps, refs)  # the same warm-up in every worker
        raw_secs: list[float] = []
        raw_lats: list[float] = []
        raw_correct = 0
        secs: dict[tuple[str, int], list[float]] = {k: [] for k in configs}
        last: dict[tuple[str, int], list[Any]] = {}
        par_secs: dict[tuple[str, int], list[float]] = {key: [] for key in parallel}
        par_correct: dict[tuple[str, int], int] = {}
        for _ in range(repeats):
            clear_caches()
            dt, lat, raw_correct = raw_pass(comps, refs)
            raw_secs.append(dt)
            raw_lats.extend(lat)
            for key, procs in parallel.items():
                dt, par_correct[key] = procs.run()
                par_secs[key].append(dt)
            for key, v in vs.items():
                _clear_workers(v)
                t0 = time.perf_counter()
                last[key] = v.verify_many(comps, refs)
                secs[key].append(time.perf_counter() - t0)
        res: dict[str, Any] = {
            "raw": {
                "verdicts_per_s": len(comps) / statistics.median(raw_secs),
                "seconds": raw_secs,
                "p50_ms": 1e3 * _percentile(raw_lats, 0.5),
                "p99_ms": 1e3 * _percentile(raw_lats, 0.99),
                "correct": raw_correct,
            },
            "raw_processes": [
                {
                    "processes": k,
                    "start": method,
                    "verdicts_per_s": len(comps) / statistics.median(par_secs[(method, k)]),
                    "seconds": par_secs[(method, k)],
                    "correct": par_correct[(method, k)],
                    "scaling_vs_1_process": statistics.median(
                        a / b for a, b in zip(raw_secs, par_secs[(method, k)], strict=True)
                    ),
                }
                for method, k in parallel
            ],
        }
        ceiling = {
            (r["start"], r["processes"]): r["scaling_vs_1_process"] for r in res["raw_processes"]
        }
        for mode in ("symbolic", "default"):
            rows = []
            for w in workers:
                v = vs[(mode, w)]
                _clear_workers(v)
                lats = _closed_loop_latencies(v.verify, comps, refs, w)
                mine = secs[(mode, w)]
                row: dict[str, Any] = {
                    "workers": w,
                    "string_match": mode == "default",
                    "verdicts_per_s": len(comps) / statistics.median(mine),
                    "seconds": mine,
                    "p50_ms": 1e3 * _percentile(lats, 0.5),
                    "p99_ms": 1e3 * _percentile(lats, 0.99),
                    "correct": sum(x.correct for x in last[(mode, w)]),
                    "statuses": _statuses(last[(mode, w)]),
                    "worker_restarts": v.pool.restarts,
                    "ratio_to_raw": statistics.median(
                        r / m for r, m in zip(raw_secs, mine, strict=True)
                    ),
                }
                row["per_worker_ratio_to_raw"] = row["ratio_to_raw"] / w
                if 1 in workers:
                    one = secs[(mode, 1)]
                    row["scaling_vs_1_worker"] = statistics.median(
                        a / b for a, b in zip(one, mine, strict=True)
                    )
                    for method in ("fork", "spawn"):  # as a share of raw's own scaling
                        if (method, w) in ceiling:
                            row[f"scaling_vs_raw_{method}"] = (
                                row["scaling_vs_1_worker"] / ceiling[(method, w)]
                            )
                rows.append(row)
            res[mode] = rows
        return res
    finally:
        for v in vs.values():
            v.close()
        for procs in parallel.values():
            procs.close()


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    import sympy

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "math_verify": version("math-verify"),
        "sympy": sympy.__version__,
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
    }


def run(workers: Sequence[int], repeats: int, limit: int | None = None) -> dict[str, Any]:
    comps, refs = load_inputs(limit)
    res: dict[str, Any] = {"inputs": len(comps), "repeats": repeats, "machine": machine()}
    res.update(measure(comps, refs, workers, repeats))
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    res["machine"]["load_average_at_end"] = [round(x, 2) for x in load] if load else None
    sym1 = next((r for r in res["symbolic"] if r["workers"] == 1), None)
    if sym1 is not None:
        res["target_per_worker"] = TARGET_PER_WORKER
        res["meets_target"] = sym1["per_worker_ratio_to_raw"] >= TARGET_PER_WORKER
    return res


def print_table(res: dict[str, Any]) -> None:
    m = res["machine"]
    print(
        f"math verifier throughput: MATH-500 human solutions, {res['inputs']} inputs, "
        f"median of {res['repeats']} interleaved passes (ratios within a pass)"
    )
    print(
        f"machine: {m['cpu_count']} cpus, python {m['python']}, {m['platform']}, "
        f"math-verify {m['math_verify']}, sympy {m['sympy']}, "
        f"load average at start {m['load_average_at_start']}, "
        f"at end {m.get('load_average_at_end')}"
    )
    head = (
        f"{'path':<28}{'workers':>8}{'verdicts/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'x raw':>8}{'x raw/worker':>14}{'scaling':>9}{'correct':>9}"
    )
    print(head)
    print("-" * len(head))
    raw = res["raw"]
    print(
        f"{'raw math_verify (baseline)':<28}{1:>8}{raw['verdicts_per_s']:>12.1f}"
        f"{raw['p50_ms']:>9.2f}{raw['p99_ms']:>9.2f}{1.0:>8.2f}{1.0:>14.2f}{'':>9}"
        f"{raw['correct']:>9}"
    )
    for r in res.get("raw_processes", []):
        label = f"raw, {r['processes']} {'forked' if r['start'] == 'fork' else 'fresh'} procs"
        ratio = r["verdicts_per_s"] / raw["verdicts_per_s"]
        print(
            f"{label:<28}{r['processes']:>8}{r['verdicts_per_s']:>12.1f}{'':>9}{'':>9}"
            f"{ratio:>8.2f}{ratio / r['processes']:>14.2f}{r['scaling_vs_1_process']:>9.2f}"
            f"{r['correct']:>9}"
        )
    for mode in ("symbolic", "default"):
        for r in res[mode]:
            label = f"MathVerifier {mode}"
            print(
                f"{label:<28}{r['workers']:>8}{r['verdicts_per_s']:>12.1f}{r['p50_ms']:>9.2f}"
                f"{r['p99_ms']:>9.2f}{r['ratio_to_raw']:>8.2f}{r['per_worker_ratio_to_raw']:>14.2f}"
                f"{r.get('scaling_vs_1_worker', float('nan')):>9.2f}{r['correct']:>9}"
            )
    for r in res["symbolic"]:
        shares = [
            f"{r[f'scaling_vs_raw_{m}']:.0%} of raw math-verify's own in {r['workers']} {label}"
            for m, label in (("fork", "forked copies"), ("spawn", "fresh processes"))
            if f"scaling_vs_raw_{m}" in r
        ]
        if shares:
            print(
                f"symbolic path, {r['workers']} workers: scaling {r['scaling_vs_1_worker']:.2f}x, "
                + ", ".join(shares)
            )
    if "meets_target" in res:
        verdict = "meets" if res["meets_target"] else "MISSES"
        print(
            f"symbolic path, 1 worker: {verdict} the target of {res['target_per_worker']}x raw "
            "per worker"
        )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5, help="timed passes (median kept)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N inputs")
    parser.add_argument("--quick", action="store_true", help="small sizes: " + str(QUICK))
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    if args.repeats < 1 or any(w < 1 for w in args.workers):
        parser.error("--repeats and --workers must be >= 1")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    res = run(args.workers, args.repeats, args.limit)
    print_table(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return res


if __name__ == "__main__":
    main()
