"""Full HumanEval+ grading of the canonical solutions: brite's sandbox against evalplus.

Both evaluators grade the same 164 canonical solutions (or the first ``--limit``) from the same
dataset file, on the same machine, in one run, with the same number of parallel workers:

* **brite**: the ``code`` verifier over the ``HumanEvalPlus`` task, i.e. ``sandbox.run_many``
  with the process backend (each program in its own namespaces, read-only filesystem, no
  network, rlimits, a pids cgroup). The expected outputs come from running each canonical
  solution in the sandbox once.
* **evalplus** (0.3.x): its own ``evalplus.evaluate.evaluate`` pointed at the same file via
  ``HUMANEVAL_OVERRIDE_PATH``, in a subprocess (``multiprocessing`` fork per check with
  ``reliability_guard``; no namespaces). Its ground truth is computed in-process.

*Cold* runs start with empty caches on both sides (expected outputs computed, references
parsed by a fresh verifier, as a first evaluation does); *warm* runs reuse them (brite's
in-memory oracle cache, evalplus's ground-truth pickle). The timed span is the grading call
itself: ``verify_many`` for brite, ``evaluate()`` for evalplus (its idle stuck-checker
thread, which can hold the process for up to 20 s after the work is done, is excluded).
Verdicts are compared per task, base and plus (plus meaning base and extra inputs, as
evalplus's HumanEval+ score counts it); a task where evalplus 0.3.1 is known to be wrong
(:data:`KNOWN_EVALPLUS_DEFECTS`) is reported separately.

A *floor* row runs the canonical solutions alone, bare (no sandbox, no process per problem,
nothing kept or checked), split over the same number of processes, each holding the whole
dataset: what the functions themselves cost here, so the grading overhead is each tool's time
over it. (It is not a hard bound: brite's program processes keep the memory they churn mapped,
so HumanEval/15 runs a little faster in brite's sandbox than bare.)

For reference, a last row times evalplus the way its README runs it: the ``evalplus.evaluate``
command with its own defaults (``--parallel`` = half the CPUs), cold, as a whole process
(start-up and its exit wait included), against brite's cold grading with its defaults.

By default brite's process backend runs every program through its fork server (one warm
sandboxed interpreter forking each job into fresh namespaces); ``--fork-server off`` times
the plain path (one sandbox and interpreter start-up per program) instead.

    python -m benchmarks.sandbox_humanevalplus [--data PATH] [--concurrency N] [--limit N]
        [--rounds R] [--no-warm] [--no-cli] [--no-floor] [--fork-server auto|on|off]
        [--batch-size N] [--json OUT]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

import sandbox
from brite_envs.tasks.code_tasks import HumanEvalPlus
from sandbox.process import ProcessBackend
from verifiers.base import Verdict
from verifiers.code import CodeVerifier, CodeVerifierConfig, clear_oracle_cache, input_sets

REPO_ROOT = Path(__file__).resolve().parent.parent
KNOWN_EVALPLUS_DEFECTS = {
    "HumanEval/32": (
        "evalplus 0.3.1 fails every solution: its find_zero special oracle `continue`s before "
        "recording the input as passed, so the pass count stays short of the input count"
    ),
}
_SET_RE = re.compile(r"\b(?:on|after) (base|plus) input #")

_EVALPLUS_DRIVER = r"""
import json, os, sys, time
args = json.loads(sys.argv[1])
t0 = time.perf_counter()
from evalplus.evaluate import evaluate
t1 = time.perf_counter()
evaluate("humaneval", samples=args["samples"], parallel=args["parallel"], i_just_wanna_run=True)
t2 = time.perf_counter()
with open(args["timing"], "w") as fh:
    json.dump({"import_s": t1 - t0, "evaluate_s": t2 - t1}, fh)
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)  # evalplus leaves a non-daemon thread sleeping in 20 s steps: do not wait for it
"""


_FLOOR_DRIVER = r"""
import json, os, sys, time
args = json.loads(open(sys.argv[1], encoding="utf-8").read())
problems, workers = args["problems"], args["workers"]

def run(indices):
    for i in indices:
        code, entry_point, sets = problems[i]
        namespace = {}
        exec(compile(code, "solution.py", "exec"), namespace)
        fn = namespace[entry_point]
        for inputs in sets:
            for inp in inputs:
                fn(*inp)

times = []
for i in range(len(problems)):
    start = time.perf_counter()
    run([i])
    times.append(time.perf_counter() - start)
bins, loads = [[] for _ in range(workers)], [0.0] * workers
for i in sorted(range(len(problems)), key=lambda i: -times[i]):  # longest first, least loaded
    k = loads.index(min(loads))
    bins[k].append(i)
    loads[k] += times[i]
start = time.perf_counter()
pids = []
for b in bins:
    pid = os.fork()
    if pid == 0:
        run(b)
        os._exit(0)
    pids.append(pid)
for pid in pids:
    os.waitpid(pid, 0)
parallel = time.perf_counter() - start
print(json.dumps({"serial_s": sum(times), "parallel_s": parallel}))
"""


@dataclass
class Run:
    """One timed grading pass of one evaluator."""

    tool: str
    phase: str
    seconds: float
    base: dict[str, bool]
    plus: dict[str, bool]
    extra: dict[str, Any] = field(default_factory=dict)


def default_data() -> Path:
    root = os.environ.get("BRITE_DATA_DIR") or str(REPO_ROOT.parent / "shared" / "data")
    return Path(root) / "humanevalplus" / "HumanEvalPlus.jsonl.gz"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        return [json.loads(line) for line in fh if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def brite_backend(fork_server: str) -> str:
    """The registered name of the process backend to grade with (the default one for
    ``auto``)."""
    if fork_server == "auto":
        return "process"
    name = f"process-fork-server-{fork_server}"
    if name not in sandbox.available_backends():
        sandbox.register_backend(name, lambda: ProcessBackend(fork_server=fork_server))
    return name


def machine(backend: str = "process") -> dict[str, Any]:
    """What the numbers were measured on (the load average matters on a shared machine)."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    try:
        import evalplus

        evalplus_version = str(getattr(evalplus, "__version__", "?"))
    except ImportError:
        evalplus_version = "not installed"
    caps = sandbox.capabilities(backend)
    return {
        "cpu": model or platform.processor() or "?",
        "logical_cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "brite_isolation": caps.summary(),
        "evalplus": evalplus_version,
    }


# -- brite -----------------------------------------------------------------------------------


def brite_statuses(verdicts: list[Verdict], ids: list[str]) -> tuple[dict[str, bool], ...]:
    """Per task: base passed (all base inputs) and plus passed (base and extra inputs)."""
    base: dict[str, bool] = {}
    plus: dict[str, bool] = {}
    for task_id, v in zip(ids, verdicts, strict=True):
        plus[task_id] = v.correct
        if v.correct:
            base[task_id] = True
        else:  # the harness stops at the first failing input and names its set
            m = _SET_RE.search(v.reason)
            base[task_id] = bool(m and m.group(1) == "plus")
    return base, plus


def run_brite(
    task: HumanEvalPlus, concurrency: int, cache_dir: Path, phase: str, verifier: CodeVerifier
) -> Run:
    problems = list(task.problems)
    completions = [task.reference_completion(p) for p in problems]
    references = [p.verifier_reference for p in problems]
    if phase == "cold":  # a first evaluation: nothing parsed or computed yet
        clear_oracle_cache()
        shutil.rmtree(cache_dir, ignore_errors=True)
        verifier = CodeVerifier(verifier.config)  # its own cache of parsed references too
    start = time.perf_counter()
    verdicts = verifier.verify_many(completions, references)
    seconds = time.perf_counter() - start
    ids = [p.id for p in problems]
    base, plus = brite_statuses(verdicts, ids)
    failed = {i: v.reason for i, v in zip(ids, verdicts, strict=True) if not v.correct}
    return Run("brite", phase, seconds, base, plus, {"failed": failed})


def run_floor(task: HumanEvalPlus, workers: int) -> dict[str, float]:
    """What the functions themselves cost: every canonical solution called on all its
    inputs, bare (no sandbox, no process per problem, no output kept or checked), once one
    after the other (the time per problem also orders the split) and once split over
    ``workers`` processes, longest first, each to the least loaded. A cold pass runs each
    function twice (the reference, then the candidate), so its floor is twice the parallel
    time."""
    problems = []
    for p in task.problems:
        ref = json.loads(p.verifier_reference)
        sets = [inputs for _, inputs in input_sets(ref)]
        problems.append([ref["canonical"], ref["entry_point"], sets])
    with tempfile.TemporaryDirectory(prefix="brite-floor-") as work:
        spec = Path(work) / "floor.json"
        spec.write_text(json.dumps({"problems": problems, "workers": workers}))
        proc = subprocess.run(
            [sys.executable, "-c", _FLOOR_DRIVER, str(spec)],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"the floor run failed: {(proc.stderr or proc.stdout)[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"serial_s": float(out["serial_s"]), "parallel_s": float(out["parallel_s"])}


# -- evalplus --------------------------------------------------------------------------------


def run_evalplus(dataset: Path, samples: Path, parallel: int, cache: Path, phase: str) -> Run:
    if phase == "cold":
        shutil.rmtree(cache, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="evalplus-run-"))
    try:
        run_samples = work / "samples.jsonl"
        shutil.copyfile(samples, run_samples)
        timing = work / "timing.json"
        env = dict(os.environ)
        env.update(
            HUMANEVAL_OVERRIDE_PATH=str(dataset),
            XDG_CACHE_HOME=str(cache),
            TOKENIZERS_PARALLELISM="false",
        )
        args = {"samples": str(run_samples), "parallel": parallel, "timing": str(timing)}
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", _EVALPLUS_DRIVER, json.dumps(args)],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
        process_s = time.perf_counter() - start
        if proc.returncode != 0 or not timing.is_file():
            raise RuntimeError(
                f"evalplus failed (status {proc.returncode}): "
                f"{(proc.stderr or proc.stdout)[-2000:]}"
            )
        times = json.loads(timing.read_text())
        results = json.loads((work / "samples_eval_results.json").read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base: dict[str, bool] = {}
    plus: dict[str, bool] = {}
    statuses: dict[str, tuple[str, str]] = {}
    for task_id, rows in results["eval"].items():
        row = rows[0]
        base[task_id] = row["base_status"] == "pass"
        plus[task_id] = base[task_id] and row["plus_status"] == "pass"
        statuses[task_id] = (row["base_status"], row["plus_status"])
    gt = re.search(r"Expected outputs computed in ([0-9.]+)s", proc.stdout)
    failed = {k: v for k, v in statuses.items() if v != ("pass", "pass")}
    extra = {
        "process_s": process_s,
        "import_s": times["import_s"],
        "ground_truth_s": float(gt.group(1)) if gt else None,
        "failed": failed,
    }
    return Run("evalplus", phase, times["evaluate_s"], base, plus, extra)


# -- comparison and report -------------------------------------------------------------------


def agreement(a: Run, b: Run) -> dict[str, Any]:
    """Per-task agreement, overall and leaving out evalplus's known defects."""
    ids = sorted(set(a.plus) | set(b.plus))
    base_diff = [i for i in ids if a.base.get(i) != b.base.get(i)]
    plus_diff = [i for i in ids if a.plus.get(i) != b.plus.get(i)]
    clean = [i for i in ids if i not in KNOWN_EVALPLUS_DEFECTS]
    return {
        "tasks": len(ids),
        "base_agree": len(ids) - len(base_diff),
        "plus_agree": len(ids) - len(plus_diff),
        "base_disagree": base_diff,
        "plus_disagree": plus_diff,
        "tasks_without_known_defects": len(clean),
        "base_agree_without_known_defects": sum(1 for i in clean if i not in base_diff),
        "plus_agree_without_known_defects": sum(1 for i in clean if i not in plus_diff),
    }


def run_evalplus_cli(dataset: Path, samples: Path, cache: Path) -> float:
    """Seconds for ``python -m evalplus.evaluate`` with its defaults, cold, start to exit."""
    shutil.rmtree(cache, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="evalplus-cli-"))
    try:
        run_samples = work / "samples.jsonl"
        shutil.copyfile(samples, run_samples)
        env = dict(os.environ)
        env.update(HUMANEVAL_OVERRIDE_PATH=str(dataset), XDG_CACHE_HOME=str(cache))
        cmd = [sys.executable, "-m", "evalplus.evaluate", "--dataset", "humaneval"]
        cmd += ["--samples", str(run_samples), "--i_just_wanna_run"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"evalplus CLI failed: {(proc.stderr or proc.stdout)[-2000:]}")
        return seconds
    finally:
        shutil.rmtree(work, ignore_errors=True)


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "HumanEval+ canonical solutions: brite sandbox vs evalplus "
        f"({report['tasks']} tasks, {report['concurrency']} workers each, "
        f"{report['rounds']} round(s), median)",
        f"machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['memory_gib']} GiB, "
        f"{m['os']}, Python {m['python']}, evalplus {m['evalplus']}",
        f"load average at start: {m['load_average']} (a shared machine adds noise)",
        f"brite: {m['brite_isolation']}; programs per sandbox job: {m.get('brite_batch_size', 1)}",
        "",
        f"{'phase':<6} {'brite s':>9} {'evalplus s':>11} {'ratio':>7}   "
        f"{'brite pass base/plus':>21} {'evalplus pass base/plus':>24} {'agree base/plus':>16}",
    ]
    for phase in report["phases"]:
        p = report["phases"][phase]
        ag = p["agreement"]
        lines.append(
            f"{phase:<6} {p['brite_s']:>9.2f} {p['evalplus_s']:>11.2f} {p['ratio']:>7.3f}   "
            f"{p['brite_pass'][0]:>10}/{p['brite_pass'][1]:<10} "
            f"{p['evalplus_pass'][0]:>12}/{p['evalplus_pass'][1]:<11} "
            f"{ag['base_agree']:>7}/{ag['plus_agree']:<8}"
        )
    cli = report.get("cli_defaults")
    if cli:
        lines.append(
            f"{'cli':<6} {cli['brite_s']:>9.2f} {cli['evalplus_s']:>11.2f} {cli['ratio']:>7.3f}   "
            f"(evalplus command with its defaults: --parallel {cli['evalplus_parallel']}, whole "
            "process; brite cold as above)"
        )
    floor = report.get("floor")
    if floor:
        for phase in report["phases"]:
            f = floor["parallel_s"] * (2 if phase == "cold" else 1)
            e_s = report["phases"][phase]["evalplus_s"]
            b_s = report["phases"][phase]["brite_s"]
            lines.append(
                f"{'floor':<6} {f:>9.2f} {e_s:>11.2f} {f / e_s:>7.3f}   "
                f"({phase}: the canonical solutions alone, bare, in "
                f"{report['concurrency']} processes{', twice' if phase == 'cold' else ''}: "
                f"the functions' own cost; brite {b_s / f:.2f}x it, evalplus {e_s / f:.2f}x)"
            )
    for task_id, why in KNOWN_EVALPLUS_DEFECTS.items():
        lines.append(f"known evalplus defect {task_id}: {why}")
    lines.append("")
    lines.append("ratio = brite time / evalplus time (target: <= 0.5)")
    for phase, p in report["phases"].items():
        ag = p["agreement"]
        lines.append(
            f"{phase}: verdicts agree on base {ag['base_agree']}/{ag['tasks']}, plus "
            f"{ag['plus_agree']}/{ag['tasks']}; without evalplus's known defects: base "
            f"{ag['base_agree_without_known_defects']}/{ag['tasks_without_known_defects']}, plus "
            f"{ag['plus_agree_without_known_defects']}/{ag['tasks_without_known_defects']}"
        )
        if ag["base_disagree"] or ag["plus_disagree"]:
            lines.append(
                f"{phase}: verdicts differ on base {ag['base_disagree']} plus {ag['plus_disagree']}"
            )
        for tool in ("brite", "evalplus"):
            failed = p[f"{tool}_failed"]
            if failed:
                lines.append(f"{phase}: {tool} did not pass {len(failed)}: {failed}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="HumanEvalPlus.jsonl(.gz)")
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--limit", type=int, default=None, help="only the first N tasks")
    parser.add_argument("--rounds", type=int, default=1, help="repeat and take the median")
    parser.add_argument("--no-warm", action="store_true", help="skip the warm-cache runs")
    parser.add_argument(
        "--no-cli", action="store_true", help="skip the evalplus-command-with-defaults run"
    )
    parser.add_argument(
        "--fork-server",
        choices=("auto", "on", "off"),
        default="auto",
        help="brite's process backend: through its fork server (auto/on) or the plain way",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the floor run (the canonical solutions alone, bare)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="brite's CodeVerifierConfig.batch_size: programs per sandbox job (1: one each)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    if (
        args.concurrency < 1
        or args.rounds < 1
        or args.batch_size < 1
        or (args.limit is not None and args.limit < 1)
    ):
        parser.error("--concurrency, --rounds, --batch-size and --limit must be >= 1")
    data = args.data or default_data()
    if not data.is_file():
        parser.error(f"no HumanEval+ file at {data}; pass --data or set BRITE_DATA_DIR")

    tmp = Path(tempfile.mkdtemp(prefix="brite-bench-heplus-"))
    try:
        rows = read_jsonl(data)
        if args.limit is not None:
            rows = rows[: args.limit]
        dataset = tmp / "HumanEvalPlus.jsonl"
        write_jsonl(dataset, rows)
        samples = tmp / "samples.jsonl"
        write_jsonl(
            samples,
            [
                {"task_id": r["task_id"], "solution": r["prompt"] + r["canonical_solution"]}
                for r in rows
            ],
        )
        task = HumanEvalPlus(path=dataset)
        task.problems  # noqa: B018 - load before timing
        brite_cache = tmp / "brite-cache"
        backend = brite_backend(args.fork_server)
        verifier = CodeVerifier(
            CodeVerifierConfig(
                concurrency=args.concurrency,
                cache_dir=str(brite_cache),
                backend=backend,
                batch_size=args.batch_size,
            )
        )
        ep_cache = tmp / "evalplus-cache"
        phases = ["cold"] if args.no_warm else ["cold", "warm"]
        runs: dict[str, dict[str, list[Run]]] = {p: {"brite": [], "evalplus": []} for p in phases}
        info = machine(backend)
        info["brite_batch_size"] = args.batch_size
        for r in range(args.rounds):
            # Alternate who goes first, so slow drift on a shared machine hits both alike.
            order = ("brite", "evalplus") if r % 2 == 0 else ("evalplus", "brite")
            for phase in phases:
                for tool in order:
                    if tool == "brite":
                        run = run_brite(task, args.concurrency, brite_cache, phase, verifier)
                    else:
                        run = run_evalplus(dataset, samples, args.concurrency, ep_cache, phase)
                    runs[phase][tool].append(run)
                    print(f"round {r + 1} {phase} {tool}: {run.seconds:.2f} s", flush=True)
        report: dict[str, Any] = {
            "benchmark": "sandbox_humanevalplus",
            "tasks": len(rows),
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "machine": info,
            "phases": {},
        }
        for phase in phases:
            b = runs[phase]["brite"]
            e = runs[phase]["evalplus"]
            b_s = statistics.median(x.seconds for x in b)
            e_s = statistics.median(x.seconds for x in e)
            report["phases"][phase] = {
                "brite_s": b_s,
                "evalplus_s": e_s,
                "ratio": b_s / e_s,
                "brite_runs_s": [x.seconds for x in b],
                "evalplus_runs_s": [x.seconds for x in e],
                "evalplus_process_s": [x.extra["process_s"] for x in e],
                "evalplus_ground_truth_s": [x.extra["ground_truth_s"] for x in e],
                "brite_pass": [sum(b[-1].base.values()), sum(b[-1].plus.values())],
                "evalplus_pass": [sum(e[-1].base.values()), sum(e[-1].plus.values())],
                "agreement": agreement(b[-1], e[-1]),
                "brite_failed": b[-1].extra["failed"],
                "evalplus_failed": e[-1].extra["failed"],
            }
        if not args.no_floor:
            report["floor"] = run_floor(task, args.concurrency)
            print(f"floor (bare, {args.concurrency} processes): {report['floor']}", flush=True)
        if not args.no_cli:
            cli_s = run_evalplus_cli(dataset, samples, ep_cache)
            print(f"evalplus command with its defaults (cold): {cli_s:.2f} s", flush=True)
            brite_cold = report["phases"]["cold"]["brite_s"]
            report["cli_defaults"] = {
                "evalplus_s": cli_s,
                "evalplus_parallel": max(1, (os.cpu_count() or 1) // 2),
                "brite_s": brite_cold,
                "ratio": brite_cold / cli_s,
            }
        print()
        print(render(report))
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
            print(f"\nwrote {args.json}")
        return report
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
