"""The code verifier: runs a completion's program against a task's tests in the sandbox.

The reference is a JSON object (``Problem.grading_reference``) with a ``kind``:

* ``humaneval``: ``prompt``, ``entry_point``, ``test`` (defines ``check(candidate)``).
* ``humanevalplus``: ``prompt``, ``entry_point``, ``canonical`` (a full reference program),
  ``base_input``, ``plus_input`` (each a list of argument lists, or that list as JSON text,
  which the host passes to the sandbox without decoding: the tasks give text), ``atol`` and
  optional ``base_only``. Expected outputs come from running ``canonical`` in the sandbox
  once; they are cached in memory and on disk.
* ``bigcodebench``: ``prompt``, ``entry_point``, ``test`` (unittest ``TestCases``), ``libs``.

Optional ``timeout_s`` / ``memory_mb`` in the reference override the per-kind defaults;
:class:`CodeVerifierConfig` values override both.

Statuses: tests pass -> CORRECT; a failing test, crash, wrong output or memory blow-up ->
INCORRECT (the reason names the first failing test); the sandbox's time limit -> TIMEOUT; the
sandbox failing, or a library the task needs missing here -> ERROR (never INCORRECT); no code
in the completion -> UNPARSABLE.
"""

from __future__ import annotations

import array
import base64
import hashlib
import heapq
import importlib.util
import io
import itertools
import json
import math
import os
import pickle
import platform
import re
import tempfile
import textwrap
import threading
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import sandbox
from sandbox import ExecResult, ExecStatus, Job
from sandbox.backend import check_concurrency
from verifiers.base import Status, Verdict, Verifier, check_lengths
from verifiers.errors import VerifierConfigError

HARNESS_SOURCE = (Path(sandbox.__file__).with_name("code_harness.py")).read_text(encoding="utf-8")
RESULT_PREFIX = "BRITE-RESULT"
NONCE_VAR = "BRITE_HARNESS_NONCE"
CACHE_ENV = "BRITE_CACHE_DIR"
KINDS = ("humaneval", "humanevalplus", "bigcodebench")
BATCH_MAX_COST_S = 0.25
"""A batch takes programs, slowest first, while their references' run times sum to this."""
BATCH_CLEANUP_S = 2.0
"""Added per program to a batch's sandbox limit (ending processes, emptying directories)."""
_BATCHED_KINDS = ("humanevalplus", "humaneval")
"""Whose programs share batches (the ``io`` and ``check`` modes; BigCodeBench's tests run in
the program's own process, so each keeps a job of its own)."""
_batch_warned: list[bool] = []
_ORACLE_VERSION = "5"  # 2: large strings as their pickle hash; 3: int runs digested packed;
# 4: keyed by the reference's text; 5: the reference run reports the judge's entries (a large
# output as its pickle's hash only, computed again on a mismatch) and packed times
"""Bump when the oracle's output format changes, so stale disk caches are ignored."""

# Per-kind sandbox limits: (timeout_s, memory_mb). BigCodeBench imports pandas, matplotlib and
# friends, which need far more address space than a HumanEval function.
KIND_LIMITS: Mapping[str, tuple[float, int]] = {
    "humaneval": (10.0, 2048),
    "humanevalplus": (60.0, 2048),
    # BigCodeBench's own per-task wall limit (TIMEOUT_LIMIT, BIGCODEBENCH_TIMEOUT_PER_TASK):
    # some canonical test suites legitimately run for minutes (BigCodeBench/461: ~155 s).
    "bigcodebench": (240.0, 8192),
}


@dataclass(frozen=True)
class CodeVerifierConfig:
    """Options of :class:`CodeVerifier` (``verifiers.get("code", **options)``)."""

    timeout_s: float | None = None
    """Sandbox wall-clock limit per program; None uses the per-kind default."""
    memory_mb: int | None = None
    """Sandbox address-space limit; None uses the per-kind default."""
    concurrency: int | None = None
    """Programs run at once by ``verify_many``; None means one per CPU."""
    backend: str = "process"
    min_time_limit_s: float = 1.0
    """HumanEval+: per-input limit is max(this, time_limit_factor * reference time)."""
    time_limit_factor: float = 4.0
    max_io_time_s: float = 60.0
    """HumanEval+: cap on the sum of per-input limits (evalplus' per-task timeout)."""
    startup_s: float = 5.0
    """Added to computed HumanEval+ limits for interpreter start-up and imports."""
    oracle_timeout_s: float = 300.0
    """Limit for computing a problem's expected outputs from its reference program."""
    cache_dir: str | None = None
    """Where expected outputs are cached; default ``$BRITE_CACHE_DIR`` or ~/.cache/brite."""
    disk_cache: bool = True
    batch_size: int = 1
    """HumanEval / HumanEval+: up to this many programs share one sandbox job, graded one
    after another, each in its own process with its own limits; between two programs every
    other process of the job is killed and its writable directories emptied (docs/SANDBOX.md,
    *Batches*). Saves the sandbox's start-up per program. Needs the process backend's fork
    server; 1 (one sandbox per program, the default) without it."""

    def __post_init__(self) -> None:
        for name in (
            "min_time_limit_s",
            "time_limit_factor",
            "max_io_time_s",
            "startup_s",
            "oracle_timeout_s",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise VerifierConfigError(
                    f"CodeVerifierConfig.{name} must be a number > 0, got {value!r}"
                )
        if self.timeout_s is not None and (
            isinstance(self.timeout_s, bool)
            or not isinstance(self.timeout_s, (int, float))
            or self.timeout_s <= 0
        ):
            raise VerifierConfigError(
                f"CodeVerifierConfig.timeout_s must be a number > 0 or None, got {self.timeout_s!r}"
            )
        for name, minimum, optional in (
            ("memory_mb", 64, True),
            ("concurrency", 1, True),
            ("batch_size", 1, False),
        ):
            value = getattr(self, name)
            if optional and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise VerifierConfigError(
                    f"CodeVerifierConfig.{name} must be an int >= {minimum}"
                    f"{' or None' if optional else ''}, got {value!r}"
                )
        if self.backend not in sandbox.available_backends():
            raise VerifierConfigError(
                f"CodeVerifierConfig.backend must be one of {sandbox.available_backends()}, "
                f"got {self.backend!r}"
            )


# -- extracting code from a completion -----------------------------------------------------

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PY_TAGS = ("", "python", "py", "python3", "py3", "pycon", "ipython")
_CODE_START = re.compile(r"^(def |async def |class |import |from \S+ import |@)")


def _parses(code: str) -> bool:
    """Whether ``code`` compiles (a full compile also rejects a ``return`` outside a function,
    which a parse alone accepts). Nothing is executed."""
    try:
        _compile_quietly(code, "<candidate>")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return False
    return True


def _compile_quietly(code: str, filename: str) -> None:
    """Compile without executing, silencing the candidate's SyntaxWarnings (bad escapes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile(code, filename, "exec", dont_inherit=True)


def _defines(code: str, name: str | None) -> bool:
    if not name:
        return False
    return (
        re.search(rf"^\s*(async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None
    )


def _trim_to_code(text: str, *, min_lines: int = 1) -> str | None:
    """The longest parseable run of lines starting at the first code-looking line."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _CODE_START.match(line)]
    for start in starts[:5]:
        for end in range(min(len(lines), start + 400), start + min_lines - 1, -1):
            chunk = "\n".join(lines[start:end]).strip("\n")
            if chunk.strip() and _parses(chunk):
                return chunk + "\n"
    return None


def extract_code(completion: str, entry_point: str | None = None) -> str | None:
    """The program text in ``completion``: the last fenced Python block that defines
    ``entry_point`` (else the last Python block), or the raw text when there are no fences.
    None when there is no code at all."""
    if not isinstance(completion, str) or not completion.strip():
        return None
    found = _FENCE.findall(completion)
    blocks = [(tag.lower(), body) for tag, body in found if body.strip()]
    if found and not blocks:
        return None  # only empty code blocks
    if blocks:
        python = [b for t, b in blocks if t in _PY_TAGS] or [b for _, b in blocks]
        defining = [b for b in python if _defines(b, entry_point)]
        chosen = (defining or python)[-1]
        return chosen.strip("\n") + "\n"
    return completion


@lru_cache(maxsize=4096)
def _prompt_prefix(prompt: str) -> str:
    """What of the prompt to keep before a full candidate program: the whole prompt when it
    is valid code on its own (imports, helpers, the stub), else its import lines. Cached:
    every completion for a problem shares its prompt (a compile each, ~50 us)."""
    if _parses(prompt):
        return prompt
    stub = prompt.rstrip() + "\n    pass\n"
    if _parses(stub):
        return stub
    imports = [ln for ln in prompt.splitlines() if re.match(r"^(import |from \S+ import )", ln)]
    return "\n".join(imports) + "\n" if imports else ""


def build_program(code: str, prompt: str, entry_point: str) -> tuple[str, str]:
    """The runnable program for candidate ``code`` and the candidate part of it.

    A candidate that defines ``entry_point`` is appended to the prompt's imports and helpers;
    anything else is taken as the body that continues the prompt (indented if need be)."""
    if _defines(code, entry_point):
        if not _parses(code):
            trimmed = _trim_to_code(code)
            if trimmed is not None and _defines(trimmed, entry_point):
                code = trimmed
        return _prompt_prefix(prompt) + "\n\n" + code, code
    body = code if code.endswith("\n") else code + "\n"
    options = [body]
    if body.strip() and not body[:1].isspace():
        options.append(textwrap.indent(body, "    "))
    base = prompt if prompt.endswith("\n") else prompt + "\n"
    for option in options:
        if _parses(base + option):
            return base + option, option
    # Prose after the body: keep the longest leading run of lines that still parses.
    for option in options:
        lines = option.splitlines()
        for end in range(min(len(lines), 400), 0, -1):
            chunk = "\n".join(lines[:end]) + "\n"
            if chunk.strip() and _parses(base + chunk):
                return base + chunk, chunk
    return base + options[-1], options[-1]


# -- expected outputs (HumanEval+) ----------------------------------------------------------


class _SafeUnpickler(pickle.Unpickler):
    """Plain data only: the disk cache is a file anyone with access could have written."""

    _ALLOWED = frozenset({("builtins", "complex"), ("builtins", "set"), ("builtins", "frozenset")})

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _safe_loads(data: bytes) -> Any:
    return _SafeUnpickler(io.BytesIO(data)).load()


_oracle_memory: dict[str, dict[str, Any]] = {}
_oracle_lock = threading.Lock()


_io_memory: dict[tuple[str, float, float], tuple[str, str, str, float]] = {}
"""Per (oracle key, time-limit factor, minimum limit): what every HumanEval+ job of that
reference sends (io.json, expected.b64, the per-input limits' JSON) and the limits' sum,
built once per process."""


_inputs_memory: dict[str, str] = {}
"""Per oracle key: the inputs as the harness reads them (io.json), encoded once for both the
reference's job and every candidate's."""


def clear_oracle_cache() -> None:
    """Forget the expected outputs held in memory (the disk cache is kept)."""
    with _oracle_lock:
        _oracle_memory.clear()
        _io_memory.clear()
        _inputs_memory.clear()


def _inputs_json(key: str | None, ref: Mapping[str, Any]) -> str:
    """``io.json`` of a HumanEval+ reference: every input set's inputs, in order (a few MB for
    some problems, so built once per oracle key). Inputs given as JSON text are joined as
    they are, never decoded here: the sandbox decodes them (and says so if they are not
    lists of argument lists)."""
    with _oracle_lock:
        text = _inputs_memory.get(key) if key else None
    if text is None:
        sets = [ref[field] for _, field in _set_fields(ref)]
        text = "[" + ", ".join(v if isinstance(v, str) else json.dumps(v) for v in sets) + "]"
        if key:
            with _oracle_lock:
                _inputs_memory[key] = text
    return text


def _oracle_data(out: Mapping[str, Any]) -> dict[str, Any]:
    """A reference run's report as kept: each input's run time, per set (they set the
    per-input limits), and the expected outputs as the judge reads them (``expected``, base64
    text passed through unread: the judge unpickles it, with built-in values only, inside the
    sandbox)."""
    expected, packed, counts = out.get("expected"), out.get("times"), out.get("counts")
    if not isinstance(expected, str) or not isinstance(packed, str):
        raise ValueError("the reference run reported no expected outputs")
    flat = array.array("d", base64.b64decode(packed)).tolist()
    if not isinstance(counts, list) or not all(isinstance(n, int) and n >= 0 for n in counts):
        raise ValueError(f"the reference run reported bad input counts: {counts!r:.200}")
    if sum(counts) != len(flat):
        raise ValueError(f"the reference run timed {len(flat)} inputs, not {sum(counts)}")
    times, start = [], 0
    for n in counts:
        times.append(flat[start : start + n])
        start += n
    return {"times": times, "expected": expected}


def _default_cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "brite"


@lru_cache(maxsize=1)
def _host_signature() -> str:
    """The kind of machine reference run times were measured on (CPU model and count,
    architecture, Python), so that a disk cache shared between machines, or copied from a
    faster one, never calibrates time limits for another."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    cpu = model or platform.processor() or "?"
    return f"{platform.machine()}|{cpu}|{os.cpu_count()}|{platform.python_version()}"


# -- the verifier ---------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def importable(module: str) -> bool:
    """Whether top-level ``module`` can be found by this interpreter (the sandbox's too)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@dataclass
class _Item:
    """One completion on its way through grading."""

    start: float
    verdict: Verdict | None = None
    ref: dict[str, Any] | None = None
    code: str | None = None
    program: str | None = None
    oracle_key: str | None = None
    job: Job | None = None
    nonce: str = ""
    prep_s: float = 0.0
    run_s: float | None = None
    """The sandbox's wall time, once run; the verdict's elapsed_s is preparation plus this."""
    alone: bool = False
    """Never batched (its batch ended before grading it: it is graded again on its own)."""


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe_error(err: Mapping[str, Any] | None) -> str:
    if not err:
        return "an unknown error"
    text = f"{err.get('type', 'Error')}"
    if err.get("message"):
        text += f": {_short(err['message'], 160)}"
    if err.get("file"):
        text += f" at {err['file']} line {err.get('line')}"
        if err.get("source"):
            text += f" `{_short(err['source'], 120)}`"
    return text


_Ready = tuple[float, int, str, Any]
"""A job waiting in ``_run_pipelined``'s heap: (-expected seconds, order, kind, what)."""


def _batchable(entry: _Ready) -> bool:
    item = entry[3]
    return entry[2] == "grade" and not item.alone and item.ref["kind"] in _BATCHED_KINDS


def _take_batch(first: _Ready, ready: list[_Ready], size: int) -> list[_Item]:
    """``first``'s program and the next ready ones that share its batch: the slowest first,
    as for single jobs, while their expected run times sum to ``BATCH_MAX_COST_S`` (a slow
    program gets a job of its own). Empty when ``first`` is not a batchable program."""
    if size <= 1 or not _batchable(first):
        return []
    group, cost = [first[3]], -first[0]
    while ready and len(group) < size and _batchable(ready[0]):
        if cost - ready[0][0] > BATCH_MAX_COST_S:
            break
        neg, _, _, item = heapq.heappop(ready)
        group.append(item)
        cost -= neg
    return group


class CodeVerifier(Verifier):
    """Grades code completions by running them with the task's tests in the sandbox."""

    name = "code"

    def __init__(self, config: CodeVerifierConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise VerifierConfigError(
                f"pass either a CodeVerifierConfig or keyword options, not both (got {options})"
            )
        if config is None:
            known = {f.name for f in fields(CodeVerifierConfig)}
            unknown = sorted(set(options) - known)
            if unknown:
                raise VerifierConfigError(
                    f"unknown code verifier option(s) {unknown}; known options: {sorted(known)}"
                )
            config = CodeVerifierConfig(**options)
        self.config = config
        self._refs: dict[str, dict[str, Any]] = {}
        self._refs_lock = threading.Lock()

    # -- public API ------------------------------------------------------------------------
    def verify(self, completion: str, reference: str, *, question: str | None = None) -> Verdict:
        return self.verify_many([completion], [reference])[0]

    def _parse_reference(self, reference: str) -> dict[str, Any]:
        """The reference JSON, checked; parsed once per distinct reference (a HumanEval+
        reference carries every input: ~70 KB of JSON for some problems, graded k times)."""
        with self._refs_lock:
            cached = self._refs.get(reference)
        if cached is not None:
            return cached
        ref = json.loads(reference)
        if not isinstance(ref, dict):
            raise ValueError("not a JSON object")
        kind = ref.get("kind")
        if kind not in KINDS:
            raise ValueError(f"'kind' must be one of {KINDS}, got {kind!r}")
        for key in ("prompt", "entry_point"):
            if not isinstance(ref.get(key), str):
                raise ValueError(f"missing string field {key!r}")
        needed = ("canonical", "base_input", "plus_input") if kind == "humanevalplus" else ("test",)
        for key in needed:
            if key not in ref:
                raise ValueError(f"missing field {key!r} for kind {kind!r}")
        for key in ("base_input", "plus_input") if kind == "humanevalplus" else ():
            if not isinstance(ref[key], (list, str)):
                raise ValueError(
                    f"{key!r} must be a list of argument lists, or that list as JSON text; "
                    f"got {type(ref[key]).__name__}"
                )
        libs = ref.get("libs") or []
        if not isinstance(libs, list) or not all(isinstance(x, str) for x in libs):
            raise ValueError(f"'libs' must be a list of module names, got {libs!r}")
        if kind == "humanevalplus":
            ref["_oracle_key"] = self._oracle_key(reference)
        with self._refs_lock:
            if len(self._refs) >= 1024:
                self._refs.pop(next(iter(self._refs)))
            self._refs[reference] = ref
        return ref

    def verify_many(
        self,
        completions: Sequence[str],
        references: Sequence[str],
        *,
        questions: Sequence[str | None] | None = None,
    ) -> list[Verdict]:
        """Grade in the sandbox, in parallel, keeping the order. The tests decide; the
        question plays no part in grading code."""
        check_lengths(completions, references, questions)
        items = [
            self._guarded(_Item(start=time.perf_counter()), self._prepare, c, r)
            for c, r in zip(completions, references, strict=True)
        ]
        backend = sandbox.get_backend(self.config.backend)
        if type(backend).run_many is sandbox.Backend.run_many:
            self._run_pipelined(items, backend)
        else:  # the backend schedules batches itself (Ray): hand it whole stages
            self._run_staged(items)
        return [i.verdict for i in items if i.verdict is not None]

    def _run_staged(self, items: Sequence[_Item]) -> None:
        """All expected outputs first, then every candidate, each stage as one batch."""
        try:
            self._ensure_oracles(items)
        except Exception as exc:  # never raise for what a completion or reference contains
            self._fail_oracle_items(items, exc)
        for item in items:
            if item.verdict is None:
                self._guarded(item, self._make_job, item)
        pending = [i for i in items if i.verdict is None and i.job is not None]
        results = sandbox.run_many(
            [i.job for i in pending if i.job is not None],
            concurrency=self.config.concurrency,
            backend=self.config.backend,
        )
        for item, result in zip(pending, results, strict=True):
            item.run_s = result.wall_s
            self._guarded(item, self._judge, item, result)

    def _run_pipelined(self, items: Sequence[_Item], backend: sandbox.Backend) -> None:
        """One pool for both stages, so no worker idles between them: reference runs go
        first (they unlock candidates); a HumanEval+ candidate starts as soon as its expected
        outputs exist, the slowest first (by the reference's run time), so the batch does not
        end waiting on one long job."""
        workers = check_concurrency(self.config.concurrency)
        try:
            todo = self._oracle_todo(items)
            # Reference programs are trusted: several share one sandbox job (each forked in
            # it), a few jobs per worker so the candidates they unlock can start early.
            keys = list(todo)
            size = max(1, math.ceil(len(keys) / (4 * workers)))
            groups = [tuple(keys[i : i + size]) for i in range(0, len(keys), size)]
        except Exception as exc:
            self._fail_oracle_items(items, exc)
            todo, groups = {}, []
        oracle_jobs: dict[tuple[str, ...], tuple[Job, str]] = {}  # built when started
        ready: list[_Ready] = []
        seq = itertools.count()
        for keys_of_job in groups:
            heapq.heappush(ready, (-math.inf, next(seq), "oracle", keys_of_job))

        def enqueue(item: _Item) -> None:
            self._guarded(item, self._make_job, item)
            if item.verdict is None and item.job is not None:
                heapq.heappush(ready, (-self._expected_cost(item), next(seq), "grade", item))

        for item in items:
            if item.verdict is None and item.oracle_key not in todo:
                enqueue(item)
        batch = self._batch_size(backend)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grade") as pool:
            running: dict[Future[ExecResult], tuple[str, Any]] = {}
            while ready or running:
                while ready and len(running) < workers:
                    entry = heapq.heappop(ready)
                    _, _, kind, what = entry
                    programs = _take_batch(entry, ready, batch)
                    if len(programs) > 1:
                        job = self._batch_job(programs)
                        running[pool.submit(backend.run, job)] = ("batch", programs)
                        continue
                    if kind == "oracle" and what not in oracle_jobs:
                        try:
                            oracle_jobs[what] = self._oracle_group_job([todo[k] for k in what])
                        except Exception as exc:
                            self._fail_oracle_items([i for i in items if i.oracle_key in what], exc)
                            continue
                    job = oracle_jobs[what][0] if kind == "oracle" else what.job
                    running[pool.submit(backend.run, job)] = (kind, what)
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    kind, what = running.pop(future)
                    result = future.result()
                    if kind == "grade":
                        what.run_s = result.wall_s
                        self._guarded(what, self._judge, what, result)
                        continue
                    if kind == "batch":
                        for item in self._accept_batch(what, result):  # graded again alone
                            heapq.heappush(
                                ready, (-self._expected_cost(item), next(seq), "grade", item)
                            )
                        continue
                    group: tuple[str, ...] = what
                    try:
                        retry = self._accept_oracle_group(group, result, oracle_jobs[group], items)
                    except Exception as exc:
                        retry = []
                        self._fail_oracle_items([i for i in items if i.oracle_key in group], exc)
                    for key in retry:  # failed in the shared job: each in a job of its own
                        oracle_jobs[(key,)] = self._oracle_job(todo[key])
                        heapq.heappush(ready, (-math.inf, next(seq), "oracle", (key,)))
                    for item in items:
                        if (
                            item.verdict is None
                            and item.oracle_key in group
                            and item.oracle_key not in retry
                        ):
                            enqueue(item)

    def _batch_size(self, backend: sandbox.Backend) -> int:
        """``batch_size``, or 1 where the backend cannot run batches (no fork server)."""
        size = self.config.batch_size
        if size > 1 and not backend.capabilities().fork_server:
            if not _batch_warned:
                _batch_warned.append(True)
                warnings.warn(
                    f"CodeVerifierConfig.batch_size={size} ignored: batches need the process "
                    "backend's fork server (bwrap), which this backend does not use; grading "
                    "one sandbox job per program",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return 1
        return size

    def _batch_job(self, group: Sequence[_Item]) -> Job:
        """One sandbox job grading several HumanEval(+) programs (harness mode ``many``),
        each with its own single job's files, spec, nonce and limits."""
        files: dict[str, str] = {}
        programs = []
        timeout, memory = self.config.startup_s, 64
        for n, item in enumerate(group):
            job = item.job
            assert job is not None
            for name, text in job.files.items():
                if name != "spec.json":
                    files[f"p/{n}/{name}"] = text
            # The job's own spec (a JSON object) with three more keys, not decoded again.
            more = json.dumps({"dir": f"p/{n}", "nonce": item.nonce, "timeout_s": job.timeout_s})
            programs.append(f"{job.files['spec.json'][:-1]}, {more[1:]}")
            timeout += job.timeout_s + BATCH_CLEANUP_S
            memory = max(memory, job.memory_mb)
        files["spec.json"] = f'{{"mode": "many", "programs": [{", ".join(programs)}]}}'
        return Job(
            HARNESS_SOURCE,
            files=files,
            timeout_s=timeout,
            memory_mb=memory,
            env={NONCE_VAR: uuid.uuid4().hex},
        )

    def _accept_batch(self, group: Sequence[_Item], result: ExecResult) -> list[_Item]:
        """Verdicts for the batch's programs that have a result line; the others (the batch
        ended before them), marked to be graded again in a job of their own."""
        lost = []
        for item in group:
            out = _parse_result(result.stdout, item.nonce)
            if out is None:
                item.alone = True
                lost.append(item)
                continue
            elapsed = out.get("elapsed_s")
            item.run_s = float(elapsed) if isinstance(elapsed, float) else 0.0
            self._guarded(item, self._judge_output, item, out)
        return lost

    def _expected_cost(self, item: _Item) -> float:
        """Seconds the candidate's job should take: the reference's run time (HumanEval+)."""
        if not item.oracle_key:
            return 0.0
        oracle = self._load_oracle(item.oracle_key)
        try:
            return float(sum(sum(t) for t in oracle["times"])) if oracle else 0.0
        except (TypeError, ValueError, KeyError):
            return 0.0

    def _fail_oracle_items(self, items: Sequence[_Item], exc: Exception) -> None:
        for item in items:
            if item.verdict is None and item.oracle_key:
                item.verdict = self._verdict(
                    item, Status.ERROR, f"internal error computing expected outputs: {exc}"
                )

    def _guarded(self, item: _Item, step: Any, *args: Any) -> _Item:
        """Run one grading step; anything unexpected becomes an ERROR verdict, never a raise."""
        try:
            out = step(*args)
        except Exception as exc:
            item.verdict = self._verdict(
                item, Status.ERROR, f"internal error while grading: {type(exc).__name__}: {exc}"
            )
            return item
        if isinstance(out, _Item):
            return out
        if isinstance(out, Verdict):
            item.verdict = out
        return item

    # -- stage 1: parse the reference and the completion ------------------------------------
    def _verdict(
        self, item: _Item, status: Status, reason: str, *, score: float | None = None
    ) -> Verdict:
        value = score if score is not None else (1.0 if status is Status.CORRECT else 0.0)
        elapsed = time.perf_counter() - item.start
        if item.run_s is not None:  # batch grading: count this item's own work, not the batch's
            elapsed = item.prep_s + item.run_s
        return Verdict(value, status, item.code, reason, elapsed)

    def _prepare(self, completion: str, reference: str) -> _Item:
        item = _Item(start=time.perf_counter())
        try:
            ref = self._parse_reference(reference)
            kind = ref["kind"]
        except (ValueError, TypeError) as exc:
            item.verdict = self._verdict(
                item, Status.ERROR, f"malformed code grading reference: {exc}"
            )
            return item
        item.ref = ref
        if kind == "bigcodebench" and self._host_libraries():
            missing = [lib for lib in ref.get("libs") or [] if not importable(lib)]
            if missing:
                item.verdict = self._verdict(
                    item,
                    Status.ERROR,
                    "cannot grade here: the task needs libraries that are not installed: "
                    + ", ".join(missing),
                )
                return item
        code = extract_code(completion, ref["entry_point"])
        if code is None:
            item.verdict = self._verdict(item, Status.UNPARSABLE, "no code found in the completion")
            return item
        program, candidate = build_program(code, ref["prompt"], ref["entry_point"])
        item.code = candidate
        if not candidate.strip():
            item.verdict = self._verdict(item, Status.UNPARSABLE, "no code found in the completion")
            return item
        if not _FENCE.search(completion) and not _parses(program):
            # Raw text that is not code in any reading (no fences to say it was meant as code).
            item.verdict = self._verdict(
                item, Status.UNPARSABLE, "no compilable code found in the completion"
            )
            return item
        try:
            _compile_quietly(program, "solution.py")
        except SyntaxError as exc:
            item.verdict = self._verdict(
                item,
                Status.INCORRECT,
                f"the program does not compile: SyntaxError: {exc.msg} (line {exc.lineno})",
            )
            return item
        except (ValueError, RecursionError, MemoryError) as exc:
            item.verdict = self._verdict(
                item, Status.INCORRECT, f"the program does not compile: {type(exc).__name__}"
            )
            return item
        item.program = program
        if kind == "humanevalplus":
            item.oracle_key = ref["_oracle_key"]
        item.prep_s = time.perf_counter() - item.start
        return item

    # -- stage 2: expected outputs for HumanEval+ -------------------------------------------
    def _oracle_key(self, reference: str) -> str:
        """The cache key of a reference's outputs *and run times*: the times set the per-input
        limits, so they are only reused on the same kind of machine and backend. The whole
        reference text is hashed (it holds the program and every input; re-encoding them
        cost ~0.5 ms a problem)."""
        head = f"v{_ORACLE_VERSION}\0{_host_signature()}\0{self.config.backend}\0"
        return hashlib.sha256((head + reference).encode("utf-8", "surrogatepass")).hexdigest()

    def _cache_path(self, key: str) -> Path:
        root = Path(self.config.cache_dir) if self.config.cache_dir else _default_cache_dir()
        return root / "humanevalplus" / f"{key}.pkl"

    def _load_oracle(self, key: str) -> dict[str, Any] | None:
        with _oracle_lock:
            if key in _oracle_memory:
                return _oracle_memory[key]
        if not self.config.disk_cache:
            return None
        path = self._cache_path(key)
        try:
            data = _safe_loads(path.read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("expected"), str):
            return None  # not what this version writes: computed again
        with _oracle_lock:
            _oracle_memory[key] = data
        return data  # type: ignore[no-any-return]

    def _store_oracle(self, key: str, data: dict[str, Any]) -> None:
        with _oracle_lock:
            _oracle_memory[key] = data
        if not self.config.disk_cache:
            return
        path = self._cache_path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as fh:
                fh.write(pickle.dumps(data, protocol=4))
            os.replace(fh.name, path)
        except OSError:
            pass  # the cache is an optimisation; grading still works without it

    def _oracle_todo(self, items: Sequence[_Item]) -> dict[str, _Item]:
        """One item per reference whose expected outputs are not cached yet."""
        todo: dict[str, _Item] = {}
        for item in items:
            key = item.oracle_key
            if item.verdict is None and key and key not in todo and self._load_oracle(key) is None:
                todo[key] = item
        return todo

    def _oracle_job(self, item: _Item) -> tuple[Job, str]:
        """The sandbox job that runs the reference on every input, and its nonce."""
        assert item.ref is not None
        nonce = uuid.uuid4().hex
        job = Job(
            HARNESS_SOURCE,
            files={
                "solution.py": item.ref["canonical"],
                "io.json": _inputs_json(item.oracle_key, item.ref),
                "spec.json": json.dumps(
                    {"mode": "io_oracle", "entry_point": item.ref["entry_point"]}
                ),
            },
            timeout_s=self.config.oracle_timeout_s,
            memory_mb=max(4096, self._limits(item.ref)[1]),
            env={NONCE_VAR: nonce},
            max_output_bytes=256 << 20,
        )
        return job, nonce

    def _accept_oracle(
        self, key: str, result: ExecResult, nonce: str, items: Sequence[_Item]
    ) -> None:
        """Store a reference run's outputs, or fail every item that needed them."""
        out = _parse_result(result.stdout, nonce)
        if out is not None and out.get("outcome") == "oracle":
            try:
                self._store_oracle(key, _oracle_data(out))
                return
            except (ValueError, TypeError):
                pass
        why = _describe_run_failure(result, out)
        for other in items:
            if other.verdict is None and other.oracle_key == key:
                other.verdict = self._verdict(
                    other,
                    Status.ERROR,
                    "could not compute the expected outputs from the reference solution: " + why,
                )

    def _oracle_group_job(self, group: Sequence[_Item]) -> tuple[Job, str]:
        """One sandbox job computing the expected outputs of several references."""
        if len(group) == 1:
            return self._oracle_job(group[0])
        nonce = uuid.uuid4().hex
        files: dict[str, str] = {}
        problems = []
        for n, item in enumerate(group):
            assert item.ref is not None
            files[f"oracle/{n}.py"] = item.ref["canonical"]
            files[f"oracle/{n}.json"] = _inputs_json(item.oracle_key, item.ref)
            problems.append(
                {
                    "entry_point": item.ref["entry_point"],
                    "solution": f"oracle/{n}.py",
                    "io": f"oracle/{n}.json",
                    "timeout_s": self.config.oracle_timeout_s,
                }
            )
        files["spec.json"] = json.dumps({"mode": "io_oracle_many", "problems": problems})
        job = Job(
            HARNESS_SOURCE,
            files=files,
            timeout_s=self.config.oracle_timeout_s * len(group) + self.config.startup_s,
            memory_mb=max(4096, *(self._limits(i.ref)[1] for i in group if i.ref is not None)),
            env={NONCE_VAR: nonce},
            max_output_bytes=256 << 20,
        )
        return job, nonce

    def _accept_oracle_group(
        self,
        group: tuple[str, ...],
        result: ExecResult,
        job: tuple[Job, str],
        items: Sequence[_Item],
    ) -> list[str]:
        """Store each reference's outputs; the keys to run again in a job of their own: all
        of them when the shared job failed as a whole, and each reference that failed in it
        or was not run (the references share one process, so the one before may be to
        blame; see the harness's ``io_oracle_many``). One that ran past its own limit fails
        the items that needed it."""
        nonce = job[1]
        if len(group) == 1:  # a plain io_oracle job (see _oracle_group_job)
            self._accept_oracle(group[0], result, nonce, items)
            return []
        out = _parse_result(result.stdout, nonce)
        subs = (
            out.get("results") if out is not None and out.get("outcome") == "oracle_many" else None
        )
        if not isinstance(subs, list) or len(subs) != len(group):
            return list(group)
        retry = []
        for key, sub in zip(group, subs, strict=True):
            if isinstance(sub, dict) and sub.get("outcome") == "oracle":
                try:
                    self._store_oracle(key, _oracle_data(sub))
                    continue
                except (ValueError, TypeError):
                    pass
            if not isinstance(sub, dict) or sub.get("outcome") != "timeout":
                retry.append(key)
                continue
            why = f"the reference ran past its {sub.get('limit_s')} s limit"
            for other in items:
                if other.verdict is None and other.oracle_key == key:
                    other.verdict = self._verdict(
                        other,
                        Status.ERROR,
                        "could not compute the expected outputs from the reference solution: "
                        + why,
                    )
        return retry

    def _ensure_oracles(self, items: Sequence[_Item]) -> None:
        todo = self._oracle_todo(items)
        if not todo:
            return
        jobs = {key: self._oracle_job(item) for key, item in todo.items()}
        results = sandbox.run_many(
            [job for job, _ in jobs.values()],
            concurrency=self.config.concurrency,
            backend=self.config.backend,
        )
        for (key, (_, nonce)), result in zip(jobs.items(), results, strict=True):
            self._accept_oracle(key, result, nonce, items)

    # -- stage 3: the candidate's job --------------------------------------------------------
    def _limits(self, ref: Mapping[str, Any]) -> tuple[float, int]:
        timeout, memory = KIND_LIMITS[ref["kind"]]
        if isinstance(ref.get("timeout_s"), (int, float)) and ref["timeout_s"] > 0:
            timeout = float(ref["timeout_s"])
        if isinstance(ref.get("memory_mb"), int) and ref["memory_mb"] >= 64:
            memory = int(ref["memory_mb"])
        if self.config.timeout_s is not None:
            timeout = float(self.config.timeout_s)
        if self.config.memory_mb is not None:
            memory = self.config.memory_mb
        return timeout, memory

    def _make_job(self, item: _Item) -> None:
        ref, program = item.ref, item.program
        assert ref is not None and program is not None
        item.nonce = uuid.uuid4().hex
        timeout, memory = self._limits(ref)
        kind = ref["kind"]
        files: dict[str, str] = {"solution.py": program}
        more = ""  # spec keys already in JSON
        if kind == "humaneval":
            files["tests.py"] = ref["test"]
            files["prompt.py"] = ref["prompt"]  # its helpers, for the tests: the judge's own
            spec: dict[str, Any] = {"mode": "check", "entry_point": ref["entry_point"]}
        elif kind == "bigcodebench":
            files["tests.py"] = ref["test"]
            spec = {"mode": "unittest", "entry_point": ref["entry_point"]}
        else:
            io_json, expected, limits_json, total = self._io_files(item)
            more = f', "time_limits": {limits_json}'  # encoded once per reference
            files["io.json"] = io_json
            files["expected.b64"] = expected
            spec = {
                "mode": "io",
                "entry_point": ref["entry_point"],
                "atol": float(ref.get("atol") or 0.0),
                "sets": [name for name, _ in _set_fields(ref)],
            }
            if self.config.timeout_s is None and not isinstance(ref.get("timeout_s"), (int, float)):
                timeout = min(self.config.max_io_time_s, total) + self.config.startup_s
        files["spec.json"] = f"{json.dumps(spec)[:-1]}{more}}}"
        item.job = Job(
            HARNESS_SOURCE,
            files=files,
            timeout_s=timeout,
            memory_mb=memory,
            env={NONCE_VAR: item.nonce},
        )

    def _io_files(self, item: _Item) -> tuple[str, str, str, float]:
        """A HumanEval+ job's inputs, expected outputs, per-input limits (JSON) and their sum;
        built once per reference and limit settings, then shared by every completion graded
        against it (encoding ~750 limits cost ~0.1 ms a job, twice in a batch)."""
        ref, key = item.ref, item.oracle_key
        assert ref is not None and key is not None
        factor, floor = self.config.time_limit_factor, self.config.min_time_limit_s
        with _oracle_lock:
            cached = _io_memory.get((key, factor, floor))
        if cached is not None:
            return cached
        oracle = self._load_oracle(key)
        assert oracle is not None
        limits = [[max(floor, factor * t) for t in times] for times in oracle["times"]]
        total = sum(sum(x) for x in limits)
        files = (_inputs_json(key, ref), oracle["expected"], json.dumps(limits), total)
        with _oracle_lock:
            _io_memory[(key, factor, floor)] = files
        return files

    # -- stage 4: the verdict ----------------------------------------------------------------
    def _judge(self, item: _Item, result: ExecResult) -> Verdict:
        """The verdict for one finished sandbox run."""
        if result.sandbox_error:
            return self._verdict(item, Status.ERROR, f"sandbox failure: {result.sandbox_error}")
        out = _parse_result(result.stdout, item.nonce)
        if out is None:
            if result.status is ExecStatus.TIMEOUT:
                return self._verdict(item, Status.TIMEOUT, f"timed out: {result.detail}")
            return self._verdict(item, Status.INCORRECT, _describe_run_failure(result, None))
        return self._judge_output(item, out)

    def _judge_output(self, item: _Item, out: Mapping[str, Any]) -> Verdict:
        """The verdict for the harness's result line about one program."""
        ref = item.ref
        assert ref is not None
        outcome = out.get("outcome")
        kind = ref["kind"]
        if outcome == "passed":
            if kind == "humaneval":
                reason = "passed: check() raised no assertion"
            elif kind == "humanevalplus":
                counts = out.get("counts") or []
                parts = ", ".join(
                    f"{name} {n}" for name, n in zip(("base", "plus"), counts, strict=False)
                )
                reason = f"passed all {out.get('inputs')} inputs ({parts})"
            else:
                reason = f"passed {out.get('tests')}/{out.get('tests')} unittest tests"
            return self._verdict(item, Status.CORRECT, reason)
        if outcome == "timeout" and "program_limit_s" in out:  # a batch's own limit
            if "set" in out:
                where = f" (no output from {out.get('set')} input #{out.get('index')} on)"
            elif out.get("phase") == "definition":
                where = " while being defined"
            else:
                where = " while its tests ran"
            return self._verdict(
                item,
                Status.TIMEOUT,
                f"timed out: the program ran past its {out.get('program_limit_s')} s limit{where}",
            )
        if outcome == "timeout" and ("budget_s" in out or "silent_s" in out):
            # the per-input alarm did not end it: its judge did (see the harness's _judge_io)
            if "set" in out:
                where = f"{out.get('set')} input #{out.get('index')} "
                where += f"{_short(out.get('input', ''), 120)} on"
            else:
                where = "its last input"
            if "silent_s" in out:
                what = (
                    f"sent nothing for {out.get('silent_s', 0):.2g} s from {where}, longer than "
                    f"its longest input limit ({out.get('limit_s', 0):.2g} s) allows"
                )
            else:
                what = f"ran past its whole budget of {out.get('budget_s')} s from {where}"
            return self._verdict(
                item,
                Status.TIMEOUT,
                f"timed out: the program {what} (the per-input alarm did not end it: caught, "
                "cancelled, or a long call in C)",
            )
        if outcome == "timeout":
            return self._verdict(
                item,
                Status.TIMEOUT,
                f"timed out on {out.get('set')} input #{out.get('index')} "
                f"{_short(out.get('input', ''), 120)} (limit {out.get('limit_s', 0):.2g} s)",
            )
        if outcome == "harness_error":
            return self._verdict(
                item, Status.ERROR, f"the test harness failed: {_describe_error(out.get('error'))}"
            )
        if kind == "humanevalplus":
            # Every failure here comes from the program's own process, which can say anything
            # (a raised "Name or service not known", a claimed missing library): no excuses.
            return self._verdict(item, Status.INCORRECT, _describe_failure(kind, out))
        missing = self._missing_module(ref, out, host=self._host_libraries())
        if missing:
            return self._verdict(
                item,
                Status.ERROR,
                f"cannot grade here: library {missing!r} is not installed (ModuleNotFoundError)",
            )
        blocked = _environment_failure(out)
        if blocked and outcome in ("failed", "candidate_error", "test_error"):
            return self._verdict(item, Status.ERROR, f"cannot grade here: {blocked}")
        if outcome == "candidate_error":
            return self._verdict(
                item,
                Status.INCORRECT,
                f"the code failed while being defined: {_describe_error(out.get('error'))}",
            )
        if outcome == "missing_entry_point":
            return self._verdict(
                item, Status.INCORRECT, f"the code does not define `{ref['entry_point']}`"
            )
        if outcome == "test_error":
            return self._verdict(
                item,
                Status.INCORRECT,
                f"the tests could not run against this code: {_describe_error(out.get('error'))}",
            )
        return self._verdict(item, Status.INCORRECT, _describe_failure(kind, out))

    def _host_libraries(self) -> bool:
        """Whether sandboxed programs import this interpreter's libraries, so a missing one can
        be found here before running. False for a backend that runs its own image (a docker
        image with the BigCodeBench stack): then only the sandbox can tell what is missing."""
        backend = sandbox.get_backend(self.config.backend)
        return bool(getattr(backend, "uses_host_python", True))

    @staticmethod
    def _missing_module(
        ref: Mapping[str, Any], out: Mapping[str, Any], *, host: bool = True
    ) -> str | None:
        """A module missing where the program ran that grading needs: raised inside a library
        or the tests, or imported by the candidate but declared in the task's ``libs``. A
        module the candidate alone chose to import is the candidate's problem (INCORRECT).
        With ``host`` (the sandbox runs this interpreter), one importable here is not missing."""
        found: list[tuple[str, str]] = []  # (module, file it was raised in)
        err = out.get("error") or {}
        if err.get("type") in ("ModuleNotFoundError", "ImportError") and err.get("module"):
            found.append((str(err["module"]), str(err.get("origin") or "")))
        text = f"{err.get('message', '')}\n{out.get('trace') or ''}"
        files = re.findall(r'File "([^"]+)"', str(out.get("trace") or ""))
        origin = os.path.basename(files[-1]) if files else str(err.get("origin") or "")
        for pattern in _MISSING_PATTERNS:
            found += [(m, origin) for m in pattern.findall(text)]
        declared = set(ref.get("libs") or [])
        for name, where in found:
            root = name.split(".")[0]
            if host and importable(root):
                continue
            if where != "solution.py" or root in declared:
                return root
        return None


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ENVIRONMENT_FAILURES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"Temporary failure in name resolution|Name or service not known|NameResolutionError"
            r"|Failed to resolve|\[Errno -[235]\]|Network is unreachable|No route to host"
        ),
        "the tests need network access, which the sandbox denies",
    ),
    (
        re.compile(r"Resource (\S+) not found\.\s+Please use the NLTK Downloader"),
        "the tests need NLTK data that is not installed here (python -m nltk.downloader ...)",
    ),
)


def _environment_failure(out: Mapping[str, Any]) -> str | None:
    """Why a failure came from this machine rather than the code: no network inside the
    sandbox, or a data package (NLTK corpora) that is not installed. Such a run says nothing
    about the code, so it is an ``error``, never ``incorrect``."""
    err = out.get("error") or {}
    text = (
        f"{err.get('message', '') if isinstance(err, Mapping) else err}\n{out.get('trace') or ''}"
    )
    text = _ANSI.sub("", text)
    for pattern, why in _ENVIRONMENT_FAILURES:
        found = pattern.search(text)
        if found:
            where = f" (first: {out.get('test')})" if out.get("test") else ""
            detail = f"; {found.group(1)!r} missing" if found.groups() else ""
            return f"{why}{detail}{where}"
    return None


_MISSING_PATTERNS = (
    re.compile(r"No module named '([\w.]+)'"),
    re.compile(r"Missing optional dependency '([\w.]+)'"),
)


def _set_fields(ref: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A HumanEval+ reference's input sets in grading order, as (name, field): base, then
    plus (unless ``base_only``)."""
    sets = [("base", "base_input")]
    if not ref.get("base_only"):
        sets.append(("plus", "plus_input"))
    return sets


def input_sets(ref: Mapping[str, Any]) -> list[tuple[str, list[Any]]]:
    """A HumanEval+ reference's named input sets, in grading order, decoded (grading itself
    never decodes them on the host)."""
    return [(name, _as_list(ref[field])) for name, field in _set_fields(ref)]


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, list):
        raise ValueError(f"inputs must be a JSON list, got {type(value).__name__}")
    return value


def _parse_result(stdout: str, nonce: str) -> dict[str, Any] | None:
    """The harness's result line carrying our nonce (the last one, if several)."""
    marker = f"{RESULT_PREFIX} {nonce} "
    pos = stdout.rfind(marker)
    if pos < 0 or not nonce:
        return None
    line = stdout[pos + len(marker) :].split("\n", 1)[0]
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _describe_run_failure(result: ExecResult, out: Mapping[str, Any] | None) -> str:
    if out is not None:
        if out.get("error"):
            return f"{out.get('outcome')}: {_describe_error(out['error'])}"
        if out.get("message"):
            return f"{out.get('outcome')}: {_short(str(out['message']), 300)}"
        return f"harness outcome {out.get('outcome')!r}"
    if result.status is ExecStatus.OOM:
        return f"ran out of memory: {result.detail}"
    if result.status is ExecStatus.KILLED:
        return f"the program was killed: {result.detail}"
    if result.status is ExecStatus.TIMEOUT:
        return f"timed out: {result.detail}"
    tail = [ln for ln in result.stderr.strip().splitlines() if ln.strip()][-1:]
    why = f" ({_short(tail[0], 160)})" if tail else ""
    return f"the program exited with status {result.exit_code} before the tests finished{why}"


def _describe_failure(kind: str, out: Mapping[str, Any]) -> str:
    if kind == "humanevalplus":
        where = f"{out.get('set')} input #{out.get('index')}"
        if out.get("error"):
            return (
                f"failed on {where} {_short(out.get('input', ''), 120)}: "
                f"raised {_describe_error(out['error'])}"
            )
        return (
            f"wrong output on {where} {_short(out.get('input', ''), 120)}: got "
            f"{_short(out.get('got', ''), 100)}, expected {_short(out.get('expected', ''), 100)}"
        )
    if kind == "bigcodebench" and out.get("test"):
        trace = [ln for ln in str(out.get("trace", "")).strip().splitlines() if ln.strip()]
        last = _short(trace[-1], 200) if trace else ""
        return (
            f"{out.get('failed')}/{out.get('tests')} tests failed; first: {out.get('test')} "
            f"({out.get('kind')}): {last}"
        )
    err = out.get("error")
    if isinstance(err, Mapping) and err.get("type") == "AssertionError" and err.get("source"):
        msg = f": {_short(err['message'], 120)}" if err.get("message") else ""
        return (
            f"failed test at {err.get('file')} line {err.get('line')}: "
            f"`{_short(err['source'], 160)}`{msg}"
        )
    return f"failed: {_describe_error(err if isinstance(err, Mapping) else None)}"
