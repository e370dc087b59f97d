"""HumanEval+ programs graded in batches (``CodeVerifierConfig.batch_size``): the verdicts are
the ones a sandbox job per program gives, nothing one program leaves reaches the next, and a
batch that ends early loses no program."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import ClassVar

import pytest

import sandbox
from sandbox import ExecResult, Job
from sandbox.process import ProcessBackend
from tests.helpers import plus_reference
from verifiers import Status, VerifierConfigError
from verifiers.code import HARNESS_SOURCE, NONCE_VAR, CodeVerifier, CodeVerifierConfig


def _fork_server_backend() -> ProcessBackend:
    """The default process backend, which batches only through its fork server."""
    backend = sandbox.get_backend("process")
    caps = backend.capabilities()
    if not caps.fork_server:
        pytest.skip(f"no fork server here (isolation {caps.isolation!r}): batches need it")
    assert isinstance(backend, ProcessBackend)
    return backend


def _code(body: str) -> str:
    return f"```python\n{body}\n```"


SQUARE = plus_reference("def f(x):\n    return x * x\n", [[i] for i in range(20)])
HALF = plus_reference("def f(x):\n    return x / 3\n", [[i] for i in range(5)], atol=1e-6)
CASES = [
    (_code("def f(x):\n    return x * x"), SQUARE, Status.CORRECT),
    (_code("def f(x):\n    return x * x if x != 7 else 0"), SQUARE, Status.INCORRECT),
    (_code("def f(x):\n    raise ValueError('no')"), SQUARE, Status.INCORRECT),
    (_code("def f(x):\n    return object()"), SQUARE, Status.INCORRECT),
    (_code("import sys\nsys.exit(3)\ndef f(x):\n    return x * x"), SQUARE, Status.INCORRECT),
    (_code("def g(x):\n    return x"), SQUARE, Status.INCORRECT),
    (_code("def f(x):\n    while x == 5:\n        pass\n    return x * x"), SQUARE, Status.TIMEOUT),
    (_code("def f(x):\n    return x / 3 + 1e-9"), HALF, Status.CORRECT),
    (_code("def f(x):\n    return x / 3 + 1e-3"), HALF, Status.INCORRECT),
    (_code("import os\ndef f(x):\n    os._exit(0)"), SQUARE, Status.INCORRECT),
]


def test_batched_verdicts_are_the_one_job_per_program_verdicts(tmp_path: Path) -> None:
    backend = _counting_backend()
    completions = [c for c, _, _ in CASES]
    references = [r for _, r, _ in CASES]
    alone = CodeVerifier(cache_dir=str(tmp_path), min_time_limit_s=0.5)
    batched = CodeVerifier(
        cache_dir=str(tmp_path), min_time_limit_s=0.5, batch_size=16, backend=backend
    )
    one = alone.verify_many(completions, references)
    many = batched.verify_many(completions, references)
    _every_batch_reported_all(len(CASES))
    assert [v.status for v in one] == [s for _, _, s in CASES], [v.reason for v in one]
    assert [v.status for v in many] == [v.status for v in one], [v.reason for v in many]
    assert [v.reason for v in many] == [v.reason for v in one]
    assert all(0 < v.elapsed_s < 30 for v in many)


ADD = json.dumps(
    {
        "kind": "humaneval",
        "prompt": 'def add(a: int, b: int) -> int:\n    """Add two numbers."""\n',
        "entry_point": "add",
        "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n"
        "    assert candidate(-1, 1) == 0\n",
    }
)
CHECK_CASES = [
    (_code("def add(a, b):\n    return a + b"), ADD, Status.CORRECT),
    (_code("def add(a, b):\n    return a - b"), ADD, Status.INCORRECT),
    (_code("def add(a, b):\n    raise KeyError(a)"), ADD, Status.INCORRECT),
    (_code("def add(a, b):\n    return {a, b}.__iter__()"), ADD, Status.INCORRECT),
    (_code("import os\nos._exit(0)\ndef add(a, b):\n    return a + b"), ADD, Status.INCORRECT),
    (_code("def add(a, b):\n    while True:\n        pass"), ADD, Status.TIMEOUT),
]


def test_humaneval_programs_batch_too_beside_humanevalplus_ones(tmp_path: Path) -> None:
    """``check`` programs share batches with ``io`` ones; the same verdicts as alone (the
    reasons too, but for the hanging program: its batch names its own limit)."""
    backend = _counting_backend()
    cases = [*CHECK_CASES, *CASES[:2]]
    completions = [c for c, _, _ in cases]
    references = [r for _, r, _ in cases]
    options = {"cache_dir": str(tmp_path), "timeout_s": 2, "min_time_limit_s": 0.5}
    one = CodeVerifier(**options).verify_many(completions, references)
    many = CodeVerifier(**options, batch_size=16, backend=backend).verify_many(
        completions, references
    )
    _every_batch_reported_all(len(cases))
    assert [v.status for v in one] == [x for _, _, x in cases], [v.reason for v in one]
    assert [v.status for v in many] == [v.status for v in one], [v.reason for v in many]
    for a, b in zip(one, many, strict=True):
        if a.status is not Status.TIMEOUT:
            assert a.reason == b.reason
    assert "ran past its 2.0 s limit while its tests ran" in many[5].reason, many[5].reason


def test_a_batched_program_past_its_own_limit_after_some_outputs_says_so(
    tmp_path: Path,
) -> None:
    """Ten inputs of 0.3 s each, every one within its 1 s limit, under a 2 s limit for the
    whole program: its batch ends it at 2 s, after the first outputs have come, and names its
    own limit and the first input not answered (a job of its own: the sandbox's limit)."""
    backend = _counting_backend()
    body = "import time\ndef f(x):\n    time.sleep(0.3)\n    return x\n"
    same = plus_reference("def f(x):\n    return x\n", [[i] for i in range(10)])
    options = {"cache_dir": str(tmp_path), "timeout_s": 2, "min_time_limit_s": 1.0}
    one, many = (  # the same backend, so the batched run finds the expected outputs cached
        CodeVerifier(**options, backend=backend, batch_size=size).verify_many(
            [_code(body)] * 2, [same, SQUARE]
        )
        for size in (1, 16)
    )
    _every_batch_reported_all(2)
    assert [v.status for v in one] == [Status.TIMEOUT, Status.INCORRECT], one
    assert [v.status for v in many] == [v.status for v in one], many
    assert "ran past the 2 s wall-clock limit" in one[0].reason, one[0].reason
    found = re.search(
        r"ran past its 2.0 s limit \(no output from base input #(\d) on\)", many[0].reason
    )
    assert found and 3 <= int(found.group(1)) <= 7, many[0].reason


def test_tests_that_swallow_the_end_of_a_program_cannot_turn_it_into_a_pass(
    tmp_path: Path,
) -> None:
    """In a batch the judge's end of a program is an exception, and ``check`` runs the
    dataset's code, which may catch everything: the first outcome stands all the same."""
    _fork_server_backend()
    swallow = json.dumps(
        {
            **json.loads(ADD),
            "test": "def check(candidate):\n    for _ in range(3):\n        try:\n"
            "            assert candidate(1, 2) == 3\n        except BaseException:\n"
            "            pass\n",
        }
    )
    hang = _code("def add(a, b):\n    while True:\n        pass")
    right = _code("def add(a, b):\n    return a + b")
    v = CodeVerifier(cache_dir=str(tmp_path), timeout_s=1.5, batch_size=4)
    stuck, fine = v.verify_many([hang, right], [swallow] * 2)
    assert stuck.status is Status.TIMEOUT, stuck.reason
    assert fine.status is Status.CORRECT, fine.reason


def test_a_program_hanging_while_defined_times_out_alone_in_its_batch(tmp_path: Path) -> None:
    _fork_server_backend()
    v = CodeVerifier(cache_dir=str(tmp_path), timeout_s=2, batch_size=4)
    hang = _code("while True:\n    pass\ndef f(x):\n    return x * x")
    right = _code("def f(x):\n    return x * x")
    first, stuck, last = v.verify_many([right, hang, right], [SQUARE] * 3)
    assert first.status is Status.CORRECT and last.status is Status.CORRECT, (first, last)
    assert stuck.status is Status.TIMEOUT, stuck
    assert "2.0 s limit while being defined" in stuck.reason, stuck.reason


# The first program of a batch leaves all it can: a double-forked daemon that keeps writing,
# files where Python looks for modules and in every writable directory, a TCP listener, an
# abstract Unix socket; and it tries the kernel objects that would outlive it (System V shared
# memory, a POSIX message queue, a key), which a batch refuses. It returns "clean" only if it
# planted everything and was refused those.
_PLANTER = r"""
import ctypes, errno, os, socket, time

def _daemon():
    if os.fork():
        return
    os.setsid()
    if os.fork():
        os._exit(0)
    n = 0
    while True:
        for where in ("/tmp", "/dev/shm", os.getcwd()):
            try:
                with open(os.path.join(where, f"late{n}.py"), "w") as fh:
                    fh.write("LEFT = True\n")
            except OSError:
                pass
        n += 1
        time.sleep(0.005)

KEEP = []

def f(x):
    problems = []
    for path, text in (("helper.py", "LEFT = True\n"), ("sitecustomize.py", "LEFT = True\n"),
                       ("/tmp/helper.py", "LEFT = True\n"), ("/dev/shm/helper", "x")):
        with open(path, "w") as fh:
            fh.write(text)
    os.makedirs("/tmp/locked/inner", exist_ok=True)
    os.chmod("/tmp/locked", 0)
    os.makedirs("/tmp/locked-ro")
    open("/tmp/locked-ro/kept", "w").close()
    os.chmod("/tmp/locked-ro", 0o500)
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 47831))
    tcp.listen()
    unix = socket.socket(socket.AF_UNIX)
    unix.bind("\0brite-batch-test")
    unix.listen()
    KEEP.extend([tcp, unix])
    _daemon()
    libc = ctypes.CDLL(None, use_errno=True)
    for name, call in (
        ("shmget", lambda: libc.shmget(0, 4096, 0o1600)),
        ("mq_open", lambda: libc.mq_open(b"/brite", 0o100 | 2, 0o600, None)),
        ("add_key", lambda: libc.syscall(248, b"user", b"brite", b"x", 1, -3)),
    ):
        if call() != -1 or ctypes.get_errno() != errno.EPERM:
            problems.append(f"{name} allowed (errno {ctypes.get_errno()})")
    time.sleep(0.05)  # the daemon has written
    return "clean" if not problems else problems
"""

# Any later program of the batch looks for all of it, and says what kinds it found.
_CHECKER = r"""
import os, socket

JOB_FILES = {"solution.py", "main.py", "spec.json", "io.json", "tests.py", "prompt.py"}

def f(x):
    found = set()
    mine = {1, os.getppid(), os.getpid()}
    if any(p.isdigit() and int(p) not in mine for p in os.listdir("/proc")):
        found.add("process")
    if not os.path.isdir(os.environ.get("TMPDIR", "/")):  # its own job's TMPDIR is there
        found.add("no TMPDIR")
    for where in ("/tmp", "/dev/shm", "."):
        dev = os.stat(where).st_dev
        for root, dirs, files in os.walk(where):
            # Not the sandbox's read-only mounts (a virtualenv under /tmp, say): not writable.
            dirs[:] = [d for d in dirs if os.lstat(os.path.join(root, d)).st_dev == dev]
            if set(files) - JOB_FILES:
                found.add("file")
            if any("locked" in d for d in dirs):
                found.add("locked")
    for family, address in ((socket.AF_INET, ("127.0.0.1", 47831)),
                            (socket.AF_UNIX, "\0brite-batch-test")):
        s = socket.socket(family)
        try:
            s.connect(address)
            found.add("listener")
        except OSError:
            pass
        finally:
            s.close()
    try:
        import helper  # noqa: F401
        found.add("module")
    except ImportError:
        pass
    return "clean" if not found else sorted(found)
"""


def test_nothing_a_program_leaves_reaches_the_next_in_its_batch(tmp_path: Path) -> None:
    if platform.machine() != "x86_64":
        pytest.skip(f"the batch's seccomp filter is x86_64 only; this is {platform.machine()}")
    backend = _counting_backend()
    ref = plus_reference("def f(x):\n    return 'clean'\n", [[1]])
    v = CodeVerifier(cache_dir=str(tmp_path), batch_size=8, backend=backend)
    planter, *checkers = v.verify_many(
        [_code(_PLANTER), _code(_CHECKER), _code(_CHECKER)], [ref] * 3
    )
    assert _CountingBackend.batches == [(3, 3)]  # one batch, which reported all three
    assert planter.status is Status.CORRECT, planter.reason  # it planted, and was refused
    for checker in checkers:
        assert checker.status is Status.CORRECT, checker.reason
    # The checker does see what is there: alone after the planter in one plain job it fails.
    both = _code(_PLANTER.replace("def f(x):", "def plant(x):") + "\nplant(1)\n" + _CHECKER)
    seen = v.verify(both, ref)
    assert seen.status is Status.INCORRECT, seen.reason
    assert "['file', 'listener', 'locked', 'module', 'process']" in seen.reason, seen.reason


class _CountingBackend(ProcessBackend):
    """Records, for every batch job, how many programs it had and how many it reported (a
    batch that failed as a whole would go unnoticed otherwise: its programs are graded again
    alone, with the same verdicts)."""

    batches: ClassVar[list[tuple[int, int]]] = []

    def run(self, job: Job) -> ExecResult:
        result = super().run(job)
        spec = json.loads(job.files["spec.json"])
        if spec.get("mode") == "many":
            reported = sum(f"BRITE-RESULT {p['nonce']} " in result.stdout for p in spec["programs"])
            type(self).batches.append((len(spec["programs"]), reported))
        return result


def _counting_backend() -> str:
    _fork_server_backend()
    if "process-counting-batches" not in sandbox.available_backends():
        sandbox.register_backend("process-counting-batches", _CountingBackend)
    _CountingBackend.batches.clear()
    return "process-counting-batches"


def _every_batch_reported_all(at_least: int) -> None:
    done = _CountingBackend.batches
    assert sum(n for n, _ in done) >= at_least, done
    assert all(n == reported for n, reported in done), f"a batch failed as a whole: {done}"


class _LosingBackend(ProcessBackend):
    """Drops every result line of a batch but the first: as if the batch had ended there."""

    batches = 0
    singles = 0

    def run(self, job: Job) -> ExecResult:
        result = super().run(job)
        if json.loads(job.files["spec.json"]).get("mode") != "many":
            type(self).singles += 1
            return result
        type(self).batches += 1
        first = result.stdout.find("BRITE-RESULT")
        cut = result.stdout.find("BRITE-RESULT", first + 1)
        stdout = result.stdout if cut < 0 else result.stdout[:cut]
        return dataclasses.replace(result, stdout=stdout)


def test_programs_a_batch_did_not_report_are_graded_again_alone(tmp_path: Path) -> None:
    _fork_server_backend()
    if "process-losing-batches" not in sandbox.available_backends():
        sandbox.register_backend("process-losing-batches", _LosingBackend)
    v = CodeVerifier(cache_dir=str(tmp_path), backend="process-losing-batches", batch_size=8)
    right = _code("def f(x):\n    return x * x")
    wrong = _code("def f(x):\n    return x")
    verdicts = v.verify_many([right, wrong] * 3, [SQUARE] * 6)
    assert [x.status for x in verdicts] == [Status.CORRECT, Status.INCORRECT] * 3
    assert _LosingBackend.batches >= 1
    assert _LosingBackend.singles >= 5  # the reference's job, and the five programs lost


def test_batches_need_the_fork_server_and_say_so(tmp_path: Path) -> None:
    name = "process-no-fork-server-for-batches"
    if name not in sandbox.available_backends():
        sandbox.register_backend(name, lambda: ProcessBackend(fork_server="off"))
    v = CodeVerifier(cache_dir=str(tmp_path), backend=name, batch_size=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        verdicts = v.verify_many([_code("def f(x):\n    return x * x")] * 2, [SQUARE] * 2)
    assert all(x.status is Status.CORRECT for x in verdicts), verdicts
    import verifiers.code as code

    if code._batch_warned and not caught:
        return  # warned once already, by an earlier test in this process
    assert any("batch_size=4 ignored" in str(w.message) for w in caught), caught


def test_batch_size_is_validated() -> None:
    for bad in (0, -1, 1.5, True, "8"):
        with pytest.raises(VerifierConfigError, match="batch_size must be an int >= 1"):
            CodeVerifierConfig(batch_size=bad)  # type: ignore[arg-type]


def test_the_batch_judge_refuses_to_run_outside_its_own_pid_namespace(tmp_path: Path) -> None:
    """It ends other programs with kill(-1): only ever as PID 2 of the job's namespace."""
    (tmp_path / "main.py").write_text(HARNESS_SOURCE)
    (tmp_path / "spec.json").write_text(json.dumps({"mode": "many", "programs": []}))
    env = {**os.environ, NONCE_VAR: "n0"}
    proc = subprocess.run(
        [sys.executable, "main.py"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("BRITE-RESULT n0 "), proc.stdout
    out = json.loads(line.split(" ", 2)[2])
    assert out["outcome"] == "harness_error", out
    assert "needs the job's own PID namespace" in out["error"]["message"], out
