"""Test harness that runs *inside* the sandbox as ``main.py`` to grade one candidate program.

Standard library only: it is copied into the sandbox as source and never imports the project.
It reads ``spec.json`` (what to do), ``solution.py`` (the candidate program) and, per mode,
``tests.py`` or ``io.json``/``expected.b64``, and reports exactly one result line on the
original stdout::

    BRITE-RESULT <nonce> {"outcome": ..., ...}

The nonce comes from ``$BRITE_HARNESS_NONCE``, which the harness removes from the environment
before the candidate runs, so a candidate that exits early or prints its own result line
cannot pass. The candidate's own stdout goes to /dev/null.

Modes
* ``check``: HumanEval style; exec ``tests.py`` in the candidate's namespace and call
  ``check(<entry point>)``.
* ``io``: HumanEval+ style differential testing; call the entry point on each input of
  ``io.json`` and compare with the expected outputs in ``expected.b64`` (evalplus semantics,
  per-input time limits). The candidate runs in a child process forked before the expected
  outputs are read (their file is removed first); this process judges what it sends back,
  so no program can read the answers it is graded against.
* ``io_oracle``: run a trusted reference on the inputs and report its outputs, as the judge
  reads them, and run times (a large output is kept as its pickle's hash; on other bytes the
  judge computes it again with the reference).
* ``io_oracle_many``: ``io_oracle`` for several references in one job, one after another in
  one process, each with its own time limit (one sandbox start-up for many problems).
* ``many``: several ``io`` and ``check`` programs one after another in one job (a batch),
  each in its own process with everything it left removed before the next.
* ``unittest``: BigCodeBench style; exec ``tests.py`` in the candidate's module and run its
  ``TestCases``.
"""

from __future__ import annotations

import array
import base64
import builtins
import contextlib
import hashlib
import io
import json
import math
import os
import pickle
import resource
import select
import signal
import sys
import time
import traceback
import types
from collections.abc import Callable

RESULT_PREFIX = "BRITE-RESULT"
NONCE_VAR = "BRITE_HARNESS_NONCE"
DIGEST_MIN_BYTES = 64 * 1024
"""Outputs whose pickle is at least this large travel as its hash first, and expected ones are
kept as that hash (see _expected_entry)."""

# Private references: the candidate runs in this process and may patch these modules.
_write, _read, _exit, _dumps, _perf = os.write, os.read, os._exit, json.dumps, time.perf_counter
_pickle, _Pickler, _sha256 = pickle.dumps, pickle.Pickler, hashlib.sha256
_getrusage = resource.getrusage
_STATE: dict[str, object] = {"nonce": "", "out": 1}
_PLAIN = (type(None), bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset)
_SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes})
_NUMBERS = frozenset({bool, int, float})


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[_write(fd, view) :]


class _Reported(BaseException):
    """The end of one program in a batch's (``many``) judge, which goes on to the next; the
    outcome is the first one reported (``_STATE["reported"]``)."""


def report(outcome: str, **fields: object) -> None:
    """Write the single result line and exit at once (no candidate atexit hooks run). In a
    candidate's process forked by a judge, the outcome goes to the judge instead; in a
    batch's (``many``) judge it ends the current program only."""
    to_judge = _STATE.get("stop")
    if callable(to_judge):
        to_judge(outcome, **fields)
    fields["outcome"] = outcome
    if _STATE.get("batch"):
        # The first outcome stands: the exception ends the program's grading, but it passes
        # through the tests' own code (``check``), which may catch it and go on.
        if _STATE.get("reported") is None:
            _STATE["reported"] = fields
        raise _Reported(outcome)
    line = f"\n{RESULT_PREFIX} {_STATE['nonce']} {_dumps(fields, default=repr)}\n".encode()
    _write_all(_STATE["out"], line)  # type: ignore[arg-type]
    _exit(0)


def short(value: object, limit: int = 300) -> str:
    try:
        text = repr(value)
    except BaseException as exc:  # a hostile __repr__
        text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    return text if len(text) <= limit else text[: limit - 15] + f"... ({len(text)} chars)"


def error_info(exc: BaseException) -> dict[str, object]:
    """The exception and the innermost frame in the candidate or test file."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if os.path.basename(f.filename) in ("solution.py", "tests.py")]
    last = ours[-1] if ours else (frames[-1] if frames else None)
    info: dict[str, object] = {"type": type(exc).__name__, "message": str(exc)[:500]}
    if isinstance(exc, ImportError) and exc.name:
        info["module"] = exc.name
    if frames:  # where it was raised: the candidate's own code, the tests, or a library
        info["origin"] = os.path.basename(frames[-1].filename)
    if last is not None:
        info["file"] = os.path.basename(last.filename)
        info["line"] = last.lineno
        info["source"] = (last.line or "")[:300]
    return info


class TimeLimit(BaseException):
    """Raised by the per-input alarm; a BaseException so ``except Exception`` cannot eat it."""


def silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def load_candidate(name: str = "solution", filename: str = "solution.py") -> dict[str, object]:
    """Exec ``filename`` as module ``name``; a crash or exit while defining it is reported."""
    path = os.path.abspath(filename)
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    module = types.ModuleType(name)
    module.__dict__.update({"__file__": path, "__builtins__": builtins})
    sys.modules[name] = module
    try:
        exec(compile(source, path, "exec"), module.__dict__)
    except SystemExit as exc:
        report("candidate_error", error={"type": "SystemExit", "message": str(exc.code)})
    except BaseException as exc:
        report("candidate_error", error=error_info(exc))
    return module.__dict__


def entry(namespace: dict[str, object], name: str) -> object:
    fn = namespace.get(name)
    if not callable(fn):
        report("missing_entry_point", entry_point=name)
    return fn


def is_plain(value: object, depth: int = 0) -> bool:
    """Only built-in values: a candidate must not return an object whose ``__eq__`` lies."""
    t = type(value)
    if t not in _PLAIN:
        np = sys.modules.get("numpy")  # numpy scalars compare honestly
        return np is not None and isinstance(value, np.generic) and t.__module__ == "numpy"
    if depth > 50:
        return False
    # Containers of scalars only (the common, and the huge, case) are checked at C speed.
    if t in (list, tuple, set, frozenset):
        if depth < 50 and set(map(type, value)) <= _SCALARS:  # type: ignore[call-overload]
            return True
        return all(is_plain(v, depth + 1) for v in value)  # type: ignore[attr-defined]
    if t is dict:
        if (
            depth < 50
            and set(map(type, value)) <= _SCALARS  # type: ignore[call-overload]
            and set(map(type, value.values())) <= _SCALARS  # type: ignore[attr-defined]
        ):
            return True
        return all(
            is_plain(k, depth + 1) and is_plain(v, depth + 1)
            for k, v in value.items()  # type: ignore[attr-defined]
        )
    return True


def is_floats(x: object) -> bool:
    """evalplus: a float, or a non-empty list/tuple of floats."""
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return False


def _poly(xs: list[float], x: float) -> float:
    return sum(coeff * math.pow(x, i) for i, coeff in enumerate(xs))


def _allclose(out: object, exp: object, atol: float) -> bool:
    """``numpy.allclose(out, exp, rtol=1e-7, atol=atol)`` for scalars and flat sequences."""
    outs = out if isinstance(out, (list, tuple)) else [out]
    exps = exp if isinstance(exp, (list, tuple)) else [exp]
    if len(outs) != len(exps):
        return False
    for o, e in zip(outs, exps, strict=False):
        if not isinstance(o, (int, float)) or not isinstance(e, (int, float)):
            return False
        if math.isnan(o) or math.isnan(e):
            return False
        if math.isinf(o) or math.isinf(e):
            if o != e:
                return False
            continue
        if abs(o - e) > atol + 1e-7 * abs(e):
            return False
    return True


def matches(entry_point: str, inp: list[object], out: object, exp: object, atol: float) -> bool:
    """evalplus's ``unsafe_execute`` comparison (with the HumanEval/32 ``find_zero`` oracle)."""
    t = type(exp)
    if t is type(out) and t in _SCALARS and entry_point != "find_zero" and out == exp:
        return True  # the same built-in scalar and equal: what every path below also says
    if not is_plain(out):
        return False
    if entry_point == "find_zero":
        try:
            return abs(_poly(*inp, out)) <= atol  # type: ignore[call-arg, arg-type]
        except Exception:
            return False
    if atol == 0 and is_floats(exp):
        atol = 1e-6
    if out == exp:
        return True
    if atol == 0:
        return False
    if type(out) is not type(exp):
        return False
    return _allclose(out, exp, atol)


class _ProgramRaised(Exception):
    """Raised in the judge where the program raised in its own process."""

    def __init__(self, info: dict[str, object]) -> None:
        super().__init__(str(info.get("message", "")))
        self.info = info


def _serve_calls(spec: dict[str, object], calls: int, out: _Frames) -> None:
    """The program's process in ``check`` mode: define the program, then run each call the
    judge sends (pickled arguments) and send back its result, or what it raised."""
    _STATE["stop"] = out.stop  # load_candidate / entry report through the pipe
    ns = load_candidate()
    fn = entry(ns, str(spec["entry_point"]))
    out.add(_LOADED)
    requests = _FrameReader(calls)
    while True:
        frame = requests.next(math.inf)
        if frame is None:
            _exit(0)
        args, kwargs = pickle.loads(frame[1])  # from the judge
        try:
            result = fn(*args, **kwargs)  # type: ignore[operator]
        except BaseException as exc:
            out.add(_RAISED, _dumps(error_info(exc), default=repr).encode())
            continue
        if not out.output(result):
            out.add(
                _RAISED, _dumps({"type": "NotPlain", "message": type(result).__name__}).encode()
            )
        else:
            out.add(_END)


def _prompt_code(prompt: str) -> types.CodeType:
    """The dataset's prompt as code for the judge (its imports and helper functions). A prompt
    that ends in a bare header (``def add(a, b):``) gets a body; one that still does not
    compile gives nothing: the tests then see only the proxy."""
    path = os.path.abspath("prompt.py")
    for source in (prompt, prompt.rstrip() + "\n    pass\n"):
        try:
            return compile(source, path, "exec")
        except (SyntaxError, ValueError):
            continue
    return compile("", path, "exec")


def mode_check(spec: dict[str, object]) -> None:
    """HumanEval's ``check(candidate)``, run by a judge the program cannot touch.

    The tests run in this process, on the dataset's prompt (its helper functions), never
    importing the program; ``candidate`` is a proxy that sends each call's arguments to the
    program's process (forked first, with no capability and no way into this one) and turns
    what comes back into the return value, or into the exception the program raised. A
    program can therefore fail or hang its calls, but cannot pass ``check`` by reporting it
    passed, rewriting the tests or exiting early.
    """
    with open("tests.py", encoding="utf-8") as fh:
        tests = fh.read()
    with open("prompt.py", encoding="utf-8") as fh:
        prompt = fh.read()
    _make_undumpable()
    _judge_check(spec, tests, prompt)


def _judge_check(spec: dict[str, object], tests: str, prompt: str) -> None:
    """Grade one program (see :func:`mode_check`); ends by :func:`report`. With ``timeout_s``
    in the spec (a batch) the judge enforces the program's whole wall-clock limit."""
    path = os.path.abspath("tests.py")
    cap = spec.get("timeout_s")
    end = math.inf if cap is None else _perf() + float(cap)  # type: ignore[arg-type]
    r, w = os.pipe()
    calls_r, calls_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _become_program({w, calls_r}, cap)
        try:
            _serve_calls(spec, calls_r, _Frames(w))
        except BaseException as exc:
            _Frames(w).stop("harness_error", error=error_info(exc))
        _exit(0)
    os.close(w)
    os.close(calls_r)
    frames = _FrameReader(r)
    plain = bool(spec.get("plain_outputs", True))
    defined = False  # the program's LOADED frame came: its calls (check) are running

    def stop(outcome: str, **fields: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        report(outcome, **fields)

    def receive() -> tuple[bytes, bytes]:
        frame = frames.next(end)
        if frame is None and _perf() >= end:  # a batch's own limit for the program
            stop("timeout", program_limit_s=cap, phase="run" if defined else "definition")
        if frame is None:
            msg = f"the program ended its process ({_child_exit(pid)})"
            stop("failed", error={"type": "ProcessExit", "message": msg})
        kind, payload = frame  # type: ignore[misc]
        if kind == _STOP:
            outcome, fields = _stop_fields(payload)
            if outcome in ("candidate_error", "missing_entry_point"):
                stop(outcome, **{k: v for k, v in fields.items() if k in ("error", "entry_point")})
            msg = f"the program's process reported {outcome!r} itself"
            stop("failed", error={"type": "Forged", "message": msg})
        return kind, payload

    def candidate(*args: object, **kwargs: object) -> object:
        try:
            request = pickle.dumps((args, kwargs), protocol=4)
        except Exception as exc:
            stop("test_error", error=error_info(exc))
        _write_all(calls_w, _frame_head(_CALL, len(request)) + request)
        kind, payload = receive()
        if kind == _RAISED:
            info = json.loads(payload)
            if info.get("type") == "NotPlain" and plain:
                raise AssertionError(f"returned a {info.get('message')}, not a built-in value")
            raise _ProgramRaised(info)
        if kind != _OUTPUT:
            stop("failed", error={"type": "Protocol", "message": f"frame {kind!r}"})
        count = int.from_bytes(payload[:4], "little")
        if count != 1 or payload[4] != _PICKLE or receive()[0] != _END:
            stop("failed", error={"type": "Protocol", "message": "not one result"})
        try:
            return _PlainUnpickler(io.BytesIO(payload[9:])).load()
        except Exception as exc:
            raise AssertionError(
                f"returned something that is not a built-in value: {exc}"
            ) from None

    if receive()[0] != _LOADED:
        stop("failed", error={"type": "Protocol", "message": "no program"})
    defined = True
    ns: dict[str, object] = {"__name__": "__check__", "__builtins__": builtins}
    try:
        exec(_prompt_code(prompt), ns)
        ns[str(spec["entry_point"])] = candidate  # tests may call it by name (HumanEval/33)
        exec(compile(tests, path, "exec"), ns)
        check = ns["check"]
    except BaseException as exc:
        stop("test_error", error=error_info(exc))
    try:
        check(candidate)  # type: ignore[operator]
    except _ProgramRaised as exc:
        stop("failed", error=exc.info)
    except BaseException as exc:
        stop("failed", error=error_info(exc))
    stop("passed")


def _pristine(raw: str, set_index: int, index: int) -> object:
    """An input as it was before the program ran (it may have changed it in place): parsed
    again from the JSON text, only when a report shows it. Copying every input up front
    instead cost more CPU than most programs under test (~5 ms for 1000 small lists)."""
    return json.loads(raw)[set_index][index]


class _PlainUnpickler(pickle.Unpickler):
    """Built-in values and numpy scalars only: the bytes come from the candidate's process."""

    _ALLOWED = frozenset(
        {
            ("builtins", "complex"),
            ("builtins", "set"),
            ("builtins", "frozenset"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
        }
    )

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not a built-in value")


# Frames from the candidate's process to the judge: kind (1 byte), length (4 bytes), payload.
_LOADED, _OUTPUT, _FULL, _END, _STOP = b"L", b"O", b"F", b"E", b"R"
_CALL, _RAISED = b"C", b"X"  # check mode: a call's arguments (judge to program), an exception


def _frame_head(kind: bytes, size: int) -> bytes:
    return kind + size.to_bytes(4, "little")


# Entries of an output frame: a pickle (tag, 4-byte length, bytes), or, for a pickle of at
# least DIGEST_MIN_BYTES, its hash first (tag, 32-byte sha256, 8-byte length).
_PICKLE, _HASH = 80, 72  # b"P"[0], b"H"[0]
_MATCHED, _SEND = b"k", b"s"  # the judge's answer to a hash
SEND_EVERY_S = 0.1
"""A program's process sends its queued outputs after an input once this long has passed
since it last sent anything, so its judge can tell one stuck in an input (see _judge_io)."""
STALL_MARGIN_S = 1.0
"""How much longer than the longest input limit a judge waits for a silent program."""
_PR_SET_DUMPABLE, _PR_SET_NO_NEW_PRIVS = 4, 38


def _libc() -> object:
    libc = _STATE.get("libc")
    if libc is None:
        import ctypes

        libc = _STATE["libc"] = ctypes.CDLL(None, use_errno=True)
    return libc


def _make_undumpable() -> None:
    """No process of this uid may read the judge's memory or file descriptors through /proc
    or ptrace (that needs CAP_SYS_PTRACE once a process is not dumpable)."""
    if _libc().prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:  # type: ignore[attr-defined]
        raise OSError("prctl(PR_SET_DUMPABLE, 0) failed")


def _drop_privileges(*, batch: bool = False) -> None:
    """The candidate's process keeps no capability (so the judge's memory stays out of
    reach even where the sandbox maps it to root) and cannot regain one through execve; it
    gets a session of its own and cannot signal or reschedule the judge (its parent). In a
    batch it also cannot create the kernel objects that would outlive it in the job's
    namespaces (see :func:`mode_many`)."""
    judge = os.getppid()
    libc = _libc()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:  # type: ignore[attr-defined]
        raise OSError("prctl(PR_SET_NO_NEW_PRIVS) failed")
    import ctypes

    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this pid
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: all empty
    if libc.capset(header, data) != 0:  # type: ignore[attr-defined]  # dropping always works
        raise OSError("capset() failed")
    judge_group = os.getpgid(judge)
    with contextlib.suppress(OSError):  # already a session leader (nothing to leave)
        os.setsid()
    _protect_judge(libc, judge, judge_group, batch=batch)


# x86_64 system call numbers of the calls that can stop, kill or starve another process of
# the same uid: kill, tkill, tgkill, rt_sigqueueinfo, rt_tgsigqueueinfo, pidfd_open,
# pidfd_send_signal, sched_setparam, sched_setscheduler, sched_setaffinity, sched_setattr,
# prlimit64, setpriority, ioprio_set; and fcntl and ioctl (F_SETOWN, FIOSETOWN: SIGIO to a pid).
_SECCOMP_X86_64 = {
    "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297,
    "pidfd_open": 434, "pidfd_send_signal": 424, "sched_setparam": 142,
    "sched_setscheduler": 144, "sched_setaffinity": 203, "sched_setattr": 314,
    "prlimit64": 302, "setpriority": 141, "ioprio_set": 251, "fcntl": 72, "ioctl": 16,
}  # fmt: skip
# ... and, in a batch, those creating what outlives a process in its IPC namespace or user
# namespace: System V shared memory, semaphores and message queues, POSIX message queues, keys.
_PERSISTENT_X86_64 = {
    "shmget": 29, "semget": 64, "msgget": 68, "mq_open": 240, "add_key": 248,
    "request_key": 249, "keyctl": 250,
}  # fmt: skip


def _judge_filter(
    judge: int, judge_group: int, *, batch: bool = False
) -> list[tuple[int, object, object, int]]:
    """A seccomp program (classic BPF, with labels) that fails with EPERM every call aimed at
    the judge: a signal to its pid, its process group or every process (-1), SIGIO pointed at
    it, a change of its scheduling, priority, affinity or limits, a pidfd for it. The judge
    is not dumpable, so ptrace and /proc writes are refused already; the rest is allowed.
    With ``batch``, the calls of ``_PERSISTENT_X86_64`` fail too."""
    nr = _SECCOMP_X86_64
    ld, jeq, jset, ret = 0x20, 0x15, 0x45, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JSET|K, RET|K
    arg = [16 + 8 * i for i in range(6)]  # the low 32 bits of each argument (pid_t is 32-bit)
    neg = [(-judge) & 0xFFFFFFFF, (-judge_group) & 0xFFFFFFFF, 0xFFFFFFFF]
    prog: list[tuple[int, object, object, int]] = [
        (ld, 0, 0, 4),  # the calling convention
        (jeq, 0, "deny", 0xC000003E),  # AUDIT_ARCH_X86_64 only (not i386 through int 0x80)
        (ld, 0, 0, 0),
        (jset, "deny", 0, 0x40000000),  # the x32 ABI
        *[(jeq, "deny", 0, n) for n in (_PERSISTENT_X86_64.values() if batch else ())],
        (jeq, "kill", 0, nr["kill"]),
        (jeq, "pid0", 0, nr["tkill"]),
        (jeq, "pid01", 0, nr["tgkill"]),
        (jeq, "pid0", 0, nr["rt_sigqueueinfo"]),
        (jeq, "pid01", 0, nr["rt_tgsigqueueinfo"]),
        (jeq, "pid0", 0, nr["pidfd_open"]),
        (jeq, "deny", 0, nr["pidfd_send_signal"]),  # its pidfd can be an open /proc/<pid>
        *[(jeq, "pid0", 0, nr[n]) for n in ("sched_setparam", "sched_setscheduler")],
        *[(jeq, "pid0", 0, nr[n]) for n in ("sched_setaffinity", "sched_setattr", "prlimit64")],
        (jeq, "who", 0, nr["setpriority"]),
        (jeq, "ioprio", 0, nr["ioprio_set"]),
        (jeq, "fcntl", 0, nr["fcntl"]),
        (jeq, "ioctl", 0, nr["ioctl"]),
        (ret, 0, 0, 0x7FFF0000),  # SECCOMP_RET_ALLOW
        ("kill", ld, 0, 0, arg[0]),
        (jeq, "deny", 0, judge),
        *[(jeq, "deny", 0, v) for v in neg],
        (ret, 0, 0, 0x7FFF0000),
        ("pid01", ld, 0, 0, arg[1]),
        (jeq, "deny", 0, judge),
        ("pid0", ld, 0, 0, arg[0]),
        (jeq, "deny", 0, judge),
        (ret, 0, 0, 0x7FFF0000),
        ("who", ld, 0, 0, arg[0]),  # PRIO_PROCESS (0) only: not a whole group or user
        (jeq, 0, "deny", 0),
        (ld, 0, 0, arg[1]),
        (jeq, "deny", 0, judge),
        (ret, 0, 0, 0x7FFF0000),
        ("ioprio", ld, 0, 0, arg[0]),  # IOPRIO_WHO_PROCESS (1) only
        (jeq, 0, "deny", 1),
        (ld, 0, 0, arg[1]),
        (jeq, "deny", "allow", judge),
        ("fcntl", ld, 0, 0, arg[1]),
        (jeq, "deny", 0, 15),  # F_SETOWN_EX: its target is behind a pointer
        (jeq, 0, "allow", 8),  # F_SETOWN
        (ld, 0, 0, arg[2]),
        (jeq, "deny", 0, judge),
        *[(jeq, "deny", 0, v) for v in neg[:2]],
        ("allow", ret, 0, 0, 0x7FFF0000),
        ("ioctl", ld, 0, 0, arg[1]),
        (jeq, "deny", 0, 0x8901),  # FIOSETOWN
        (jeq, "deny", 0, 0x8902),  # SIOCSPGRP
        (ret, 0, 0, 0x7FFF0000),
        ("deny", ret, 0, 0, 0x00050001),  # SECCOMP_RET_ERRNO | EPERM
    ]
    labels: dict[str, int] = {}
    plain: list[tuple[int, object, object, int]] = []
    for ins in prog:
        if isinstance(ins[0], str):
            labels[ins[0]] = len(plain)
            ins = ins[1:]
        plain.append(ins)  # type: ignore[arg-type]
    out = []
    for at, (code, jt, jf, k) in enumerate(plain):
        jumps = [labels[j] - at - 1 if isinstance(j, str) else j for j in (jt, jf)]
        if not all(0 <= j <= 255 for j in jumps):  # classic BPF jumps forward only
            raise ValueError(f"seccomp program: bad jump at {at}: {jumps}")
        out.append((code, jumps[0], jumps[1], k))
    return out  # type: ignore[return-value]


def _seccomp_program(judge: int, judge_group: int, *, batch: bool = False) -> object | None:
    """:func:`_judge_filter` as the ``struct sock_fprog`` prctl takes (None off x86_64),
    built once per judge: a batch's judge builds it before forking its programs, which then
    only install it (building the ctypes table costs about half a millisecond)."""
    key = f"seccomp {judge} {judge_group} {batch}"
    if key in _STATE:
        return _STATE[key][0]  # type: ignore[index]
    import platform

    if platform.machine() != "x86_64":
        _STATE[key] = (None,)
        return None
    import ctypes

    class _Insn(ctypes.Structure):
        _fields_ = [
            ("code", ctypes.c_uint16),
            ("jt", ctypes.c_uint8),
            ("jf", ctypes.c_uint8),
            ("k", ctypes.c_uint32),
        ]

    class _Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Insn))]

    insns = _judge_filter(judge, judge_group, batch=batch)
    table = (_Insn * len(insns))(*[_Insn(*i) for i in insns])
    prog = _Prog(len(insns), table)
    _STATE[key] = (prog, table)  # the table lives as long as the program pointing at it
    return prog


def _protect_judge(libc: object, judge: int, judge_group: int, *, batch: bool = False) -> bool:
    """Install :func:`_judge_filter` (x86_64 only; elsewhere, or where the kernel has no
    seccomp filters, the judge stays signalable, as docs/SANDBOX.md says). Inherited by every
    process the program starts, and it cannot be removed."""
    prog = _seccomp_program(judge, judge_group, batch=batch)
    if prog is None:
        return False
    import ctypes

    # PR_SET_SECCOMP, SECCOMP_MODE_FILTER (no_new_privs is set, so no privilege is needed)
    return libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0  # type: ignore[attr-defined,arg-type]


_LONG_FROM: dict[type, int] = {
    **dict.fromkeys((str, bytes), DIGEST_MIN_BYTES // 4),
    **dict.fromkeys((list, tuple, dict, set, frozenset), DIGEST_MIN_BYTES // 32),
}
"""The length from which a value's pickle may reach DIGEST_MIN_BYTES, per type (others never
are streamed: one dict lookup per output, on the path of every input)."""


def _may_be_large(value: object) -> bool:
    """Whether ``value``'s pickle may reach DIGEST_MIN_BYTES (cheap: by its length alone)."""
    at = _LONG_FROM.get(type(value))
    return at is not None and len(value) >= at  # type: ignore[arg-type]


class _HashingSink:
    """pickle's file for a value that may be large: the first DIGEST_MIN_BYTES are kept (a
    value that stays smaller is sent whole), then everything is hashed as it is written, so
    a large output's pickle is never held whole (HumanEval/15 returns ~150 MB of strings:
    hashing them this way took 0.10 s against 0.14 s pickled first). The bytes are those of
    ``pickle.dumps``, which the expected outputs' hashes are of."""

    __slots__ = ("head", "sha", "size")

    def __init__(self) -> None:
        self.head = bytearray()
        self.sha: object = None
        self.size = 0

    def write(self, data: bytes) -> int:
        n = len(data)
        self.size += n
        if self.sha is not None:
            self.sha.update(data)  # type: ignore[attr-defined]
        else:
            self.head += data
            if len(self.head) >= DIGEST_MIN_BYTES:
                self.sha = _sha256(self.head)
                self.head = bytearray()
        return n


class _Frames:
    """The candidate side of the pipe. Each output is pickled when it is returned (a snapshot:
    the program may change a returned list later) and queued as a length-prefixed entry; a
    frame goes out per ~64 KB or 512 outputs, or once :data:`SEND_EVERY_S` has passed since
    the last one. A large output goes as its hash alone: the judge answers whether that is
    the expected output's hash, and only if not is the pickle sent (HumanEval/130 returns
    ~90 MB of lists that then never cross the pipe)."""

    def __init__(self, fd: int, answers: int = -1, *, check_plain: bool = True) -> None:
        self.fd = fd
        self.answers = answers
        # io mode: the judge refuses anything but built-in values itself (equal bytes to its
        # own pickle, or its allow-list unpickler), so the ~15 ns an item that checking a
        # ten-million-item list here costs is saved.
        self.check_plain = check_plain
        self.buf = bytearray()
        self.entries = bytearray()
        self.count = 0
        self.sent_at = _perf()

    def output(self, value: object) -> bool:
        """Queue ``value``; False (nothing queued) if it is not a built-in value."""
        sink: _HashingSink | None = None
        try:
            if self.check_plain and not is_plain(value):
                return False
            if self.answers >= 0 and _may_be_large(value):
                sink = _HashingSink()
                _Pickler(sink, protocol=4).dump(value)
                blob = bytes(sink.head)
            else:
                blob = _pickle(value, protocol=4)
        except BaseException:
            return False
        self.count += 1
        if sink is not None and sink.sha is not None:  # large: its hash first
            digest, size = sink.sha.digest(), sink.size  # type: ignore[attr-defined]
        elif self.answers >= 0 and len(blob) >= DIGEST_MIN_BYTES:  # large, yet short
            digest, size = _sha256(blob).digest(), len(blob)
        else:
            digest = None
        if digest is not None:
            self.entries.append(_HASH)
            self.entries += digest
            self.entries += size.to_bytes(8, "little")
            self._pack()
            self.flush()
            answer = _read(self.answers, 1)
            if answer == _SEND:
                if len(blob) < size:  # streamed: pickled again, the same way
                    whole = io.BytesIO()
                    try:
                        _Pickler(whole, protocol=4).dump(value)
                    except BaseException:
                        _exit(0)  # the judge then reports the output missing
                    blob = whole.getvalue()
                self.add(_FULL, blob)
            elif answer != _MATCHED:
                _exit(0)  # the judge is gone
            return True
        self.entries.append(_PICKLE)
        self.entries += len(blob).to_bytes(4, "little")
        self.entries += blob
        if (
            self.count >= 512
            or len(self.entries) >= 1 << 16
            or _perf() - self.sent_at > SEND_EVERY_S
        ):
            self._pack()
            self.flush()
        return True

    def _pack(self) -> None:
        if self.count:
            self._frame(_OUTPUT, self.count.to_bytes(4, "little") + self.entries)
            self.entries.clear()
            self.count = 0

    def _frame(self, kind: bytes, payload: bytes) -> None:
        self.buf += _frame_head(kind, len(payload))
        self.buf += payload

    def add(self, kind: bytes, payload: bytes = b"") -> None:
        """Send a control frame now, after the outputs queued before it."""
        self._pack()
        self._frame(kind, payload)
        self.flush()

    def flush(self) -> None:
        data = bytes(self.buf)
        self.buf.clear()
        _write_all(self.fd, data)
        self.sent_at = _perf()

    def stop(self, outcome: str, **fields: object) -> None:
        self.add(_STOP, _dumps({"outcome": outcome, **fields}, default=repr).encode())
        _exit(0)


def _run_candidate(spec: dict[str, object], io_sets: list[list[object]], out: _Frames) -> None:
    """The candidate's process: call the entry point on every input, send each output. It
    never sees the expected outputs; what it sends is only what the program returned."""
    limits: list[list[float]] = spec["time_limits"]  # type: ignore[assignment]
    clock = _InputClock()
    signal.signal(signal.SIGALRM, clock.on_alarm)
    _STATE["stop"] = out.stop  # load_candidate / entry report through the pipe
    ns = load_candidate()
    fn = entry(ns, str(spec["entry_point"]))
    out.add(_LOADED)
    heap = _Heap()
    for s, inputs in enumerate(io_sets):
        for i, inp in enumerate(inputs):
            if clock.started >= heap.next_check:
                heap.check()
            try:
                clock.start(limits[s][i])
                try:
                    result = fn(*inp)  # type: ignore[operator]
                finally:
                    clock.running = False
            except TimeLimit:
                out.stop("timeout", set=s, index=i, limit_s=limits[s][i])
            except BaseException as exc:
                out.stop("failed", set=s, index=i, error=error_info(exc))
            if not out.output(result):
                out.stop("not_plain", set=s, index=i, type=type(result).__name__)
    signal.setitimer(signal.ITIMER_REAL, 0)
    out.add(_END)
    _exit(0)


class _InputClock:
    """Each input's own time limit, without two timer calls per input (HumanEval+ has ~750
    inputs a problem, most taking microseconds): the timer is armed only when no earlier
    deadline is armed already; when it fires for an input that has ended, it is re-armed for
    the running input's deadline if that one has time left, and raises :class:`TimeLimit`
    if not. So the alarm comes exactly when the running input passes its limit. A program the
    alarm cannot end (it catches it, cancels the timer, or sits in one long call in C) is
    ended by its judge once silent for too long (see :func:`_judge_io`)."""

    def __init__(self) -> None:
        self.started = 0.0  # when the running (or last) input started
        self.deadline = math.inf  # the running (or last) input's
        self.armed = math.inf  # when the timer fires (inf: not armed)
        self.running = False

    def start(self, limit: float) -> None:
        self.started = now = _perf()
        self.deadline = now + limit
        self.running = True  # before arming: an alarm from here on re-arms for this input
        if self.deadline < self.armed:
            self.armed = self.deadline
            signal.setitimer(signal.ITIMER_REAL, limit)

    def on_alarm(self, signum: int, frame: object) -> None:
        if not self.running:  # between inputs: the next one arms it again
            self.armed = math.inf
            return
        left = self.deadline - _perf()
        if left <= 0:
            self.running = False
            self.armed = math.inf
            raise TimeLimit
        self.armed = self.deadline
        signal.setitimer(signal.ITIMER_REAL, left)


HEAP_CHECK_AFTER_S, HEAP_CHECK_EVERY_S = 0.2, 0.1
"""When a program's process first looks at its page faults (see _Heap), and then how often."""
CHURN_PAGES = 4096
"""Pages faulted in between two looks (16 MiB) that make a process keep its memory mapped."""
RESERVE_MB = 64


class _Heap:
    """Keeps the small-object memory a program's process frees mapped, once it churns.

    CPython returns an emptied 1 MiB arena of small objects to the kernel at once, and maps
    a fresh one when it next needs room; so a function that builds and drops millions of
    small objects per call (HumanEval/15: ``' '.join([str(x) for x in range(n)])``) has
    every page of them faulted in again on each call: ~330k page faults and ~0.45 s of
    kernel time over its inputs, a fifth of its run. A process whose arenas each hold a few
    live objects (evalplus's workers, forked from one holding the whole dataset) reuses them
    instead. So, looking between inputs (never inside one's time), once this process has
    faulted in :data:`CHURN_PAGES` pages since its last look, it allocates
    :data:`RESERVE_MB` in blocks of pymalloc's largest size, keeps one block per 512 KiB of
    addresses (so each arena holds one) and frees the rest: the arenas stay mapped, their
    emptied pools already faulted in and reusable by objects of any size. Once, and only
    within 1/16 of the address-space limit. It costs ~0.04 s; HumanEval/15's job runs in
    ~2.45 s instead of ~2.8 s. (A second step to 128 MiB measured slower: HumanEval/130 keeps
    ~300 MiB of floats per call, which no reserve of this size holds.)"""

    def __init__(self) -> None:
        self.next_check = _perf() + HEAP_CHECK_AFTER_S
        self.faults = _getrusage(resource.RUSAGE_SELF).ru_minflt
        self.pins: list[bytes] = []
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        room = math.inf if soft == resource.RLIM_INFINITY else soft / 16 / 2**20
        self.allowed = room >= RESERVE_MB

    def check(self) -> None:
        """Between inputs, once :attr:`next_check` has come: reserve if the process churned."""
        if not self.allowed:
            self.next_check = math.inf
            return
        faults = _getrusage(resource.RUSAGE_SELF).ru_minflt
        if faults - self.faults < CHURN_PAGES:
            self.faults = faults
            self.next_check = _perf() + HEAP_CHECK_EVERY_S
            return
        # 440 bytes and a bytes object's header: pymalloc's largest size class (512).
        blocks = [bytes(440) for _ in range(RESERVE_MB * 2048)]
        kept: dict[int, bytes] = {}
        for block in blocks:
            kept.setdefault(id(block) >> 19, block)
        del blocks
        self.pins = list(kept.values())
        self.next_check = math.inf


class _FrameReader:
    """The judge's side of the pipe: reads in large chunks and cuts frames out of its buffer
    (a read and a select per frame cost more than most programs' calls)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.pos = 0

    def _fill(self, need: int, deadline: float) -> bool:
        while len(self.buf) - self.pos < need:
            left = deadline - _perf()
            if (
                left <= 0
                or not select.select([self.fd], [], [], None if left == math.inf else left)[0]
            ):
                return False
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                return False
            if self.pos:
                del self.buf[: self.pos]
                self.pos = 0
            self.buf += chunk
        return True

    def next(self, deadline: float) -> tuple[bytes, bytes] | None:
        """The next frame's (kind, payload); None at end of file or at ``deadline``."""
        if not self._fill(5, deadline):
            return None
        head = self.buf[self.pos : self.pos + 5]
        size = int.from_bytes(head[1:], "little")
        if not self._fill(5 + size, deadline + 5.0):
            return None
        start = self.pos + 5
        self.pos = start + size
        return bytes(head[:1]), bytes(self.buf[start : self.pos])


def _child_exit(pid: int) -> str:
    """How the candidate's process ended, for a report."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


def _stop_fields(payload: bytes) -> tuple[str, dict[str, object]]:
    """The outcome and fields of a stop frame from the program's process ("?" if garbled)."""
    try:
        fields = json.loads(payload)
        return str(fields.pop("outcome")), fields
    except Exception:
        return "?", {}


_PROGRAM_OUTCOMES = frozenset({"failed", "candidate_error", "missing_entry_point", "not_plain"})


def _claimed_stop(
    payload: bytes,
    flat: list[tuple[int, int]],
    done: int,
    limits: list[list[float]],
    elapsed: float,
    where: Callable[[int, int], dict[str, object]],
) -> tuple[str, dict[str, object]]:
    """The outcome to report for a stop the program's process sent. That process runs the
    program, which can send anything itself (``sys.modules['__main__'].report('passed')``),
    so only failures are taken from it, at the input being judged: never a pass, a harness
    error or a missing library, and a timeout only once that input's limit can have passed."""
    s, i = flat[min(done, len(flat) - 1)]
    outcome, fields = _stop_fields(payload)
    if outcome == "timeout" and elapsed >= 0.9 * limits[s][i] and done < len(flat):
        return "timeout", {**where(s, i), "limit_s": limits[s][i]}
    if outcome not in _PROGRAM_OUTCOMES:
        msg = f"the program's process reported {outcome!r} itself"
        return "failed", {**where(s, i), "error": {"type": "Forged", "message": msg}}
    kept: dict[str, object] = {}
    if outcome in ("failed", "not_plain") and done < len(flat):
        kept.update(where(s, i))
    err = fields.get("error")
    if isinstance(err, dict):
        kept["error"] = {
            k: err[k]
            for k in ("type", "message", "file", "line", "source", "origin", "module")
            if k in err
        }
    if outcome == "not_plain":
        outcome = "failed"
        kept["got"] = f"a {short(fields.get('type', '?'), 60)}, not a built-in value"
    return outcome, kept


def _keep_only(keep: set[int]) -> None:
    """Close every descriptor from 3 up except ``keep``."""
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


def mode_io(spec: dict[str, object]) -> None:
    """HumanEval+ differential testing with the judge and the candidate in two processes.

    The judge (this process) forks the candidate's process before it reads the expected
    outputs, and removes their file first, so no candidate can read them from disk, from its
    own memory or from the judge's (the judge is not dumpable; the candidate holds no
    capability). The candidate sends back each output as a pickle; the judge compares it
    with the expected output's pickle byte for byte, and only when they differ unpickles it
    (built-in values only) and compares with evalplus's semantics, on the inputs as given:
    the candidate's in-place changes happen in its own copy.
    """
    with open("io.json", encoding="utf-8") as fh:
        io_sets: list[list[object]] = json.loads(fh.read())
    expected_fd = os.open("expected.b64", os.O_RDONLY)
    os.unlink("expected.b64")
    _make_undumpable()
    _judge_io(spec, io_sets, expected_fd)


def _become_program(keep: set[int], cap: object) -> None:
    """The program's process, just forked by its judge: only the descriptors in ``keep``, no
    privilege (:func:`_drop_privileges`); in a batch (``cap`` is the program's own limit) the
    CPU limit its own job would have had, the sandbox's being the whole batch's."""
    _STATE["batch"] = False
    _keep_only(keep)
    _drop_privileges(batch=cap is not None)
    if cap is not None:
        import resource

        seconds = math.ceil(float(cap)) + 1  # type: ignore[arg-type]
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds))


def _judge_io(spec: dict[str, object], io_sets: list[list[object]], expected_fd: int) -> None:
    """Grade one program (see :func:`mode_io`); ends by :func:`report`. With ``timeout_s`` in
    the spec (a batch: ``many``) the judge also enforces the program's whole wall-clock limit,
    which is otherwise the sandbox's."""
    names: list[str] = spec["sets"]  # type: ignore[assignment]
    limits: list[list[float]] = spec["time_limits"]  # type: ignore[assignment]
    cap = spec.get("timeout_s")
    started = _perf()
    r, w = os.pipe()
    answers_r, answers_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        # Not the expected outputs, the real stdout or the read end.
        _become_program({w, answers_r}, cap)
        try:
            _run_candidate(spec, io_sets, _Frames(w, answers_r, check_plain=False))
        except BaseException as exc:
            _Frames(w).stop("harness_error", error=error_info(exc))
        _exit(0)
    os.close(w)
    os.close(answers_r)
    with os.fdopen(expected_fd, "rb") as fh:
        # The entries a right answer sends, flat over the sets (see mode_io_oracle), where
        # each starts, and whether equal bytes mean a pass.
        expected = _PlainUnpickler(io.BytesIO(base64.b64decode(fh.read()))).load()
    entries: bytes = expected["entries"]
    offsets: list[int] = expected["offsets"]
    fast: list[bool] = expected["fast"]
    slow_before = [0]  # positions before k whose equal bytes do not settle it
    for ok in fast:
        slow_before.append(slow_before[-1] + (not ok))

    def expected_blob(k: int) -> bytes:
        return entries[offsets[k] + 5 : offsets[k + 1]]

    entry_point = str(spec["entry_point"])
    atol = float(spec["atol"])  # type: ignore[arg-type]
    flat = [(s, i) for s, inputs in enumerate(io_sets) for i in range(len(inputs))]
    # The candidate's own alarm enforces each input's limit. One it does not end (caught,
    # cancelled, or a long call in C: the handler runs between bytecodes) is ended here: when
    # the program has been silent longer than it can be while within the limits, i.e. longer
    # than SEND_EVERY_S plus the longest limit (the input it is in started at most
    # SEND_EVERY_S after it last sent) plus a margin; and at the latest when the whole budget
    # has passed.
    longest = max((max(x) for x in limits if x), default=0.0)
    budget = sum(sum(x) for x in limits) * 1.5 + 2.0
    # Until the program is defined: the sandbox's own limit, or the program's in a batch.
    end = math.inf if cap is None else started + float(cap)  # type: ignore[arg-type]
    deadline = end
    done = 0

    def stop(outcome: str, **fields: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        report(outcome, **fields)

    def where(s: int, i: int) -> dict[str, object]:
        return {"set": names[s], "index": i, "input": short(io_sets[s][i])}

    def protocol(message: str) -> None:
        # Only the program's process writes to the pipe: whatever breaks the protocol is the
        # program's doing (it may write there itself), so it fails the program.
        msg = f"the program's process broke the harness protocol: {message}"
        stop(
            "failed",
            **where(*flat[min(done, len(flat) - 1)]),
            error={"type": "Protocol", "message": msg},
        )

    def judge(k: int, blob: bytes) -> None:
        """Stop the run unless ``blob`` (the candidate's pickle) is the expected output."""
        s, i = flat[k]
        if fast[k] and blob == expected_blob(k):
            return  # the same built-in values (and no NaN): what evalplus also says
        large = entries[offsets[k]] == _HASH
        if large:
            info = pickle.loads(expected_blob(k))
            if info["sha256"] is not None and _sha256(blob).hexdigest() == info["sha256"]:
                return
        try:  # one unpickler per pickle: each was written on its own
            got = _PlainUnpickler(io.BytesIO(blob)).load()
        except Exception as exc:  # not a built-in value (or not a pickle at all)
            stop("failed", **where(s, i), got=f"<{type(exc).__name__}: {exc}>")
        exp: object = None
        if large:  # other bytes: a string or bytes differs (equal ones pickle alike)
            same = info["recompute"] and recompute_matches(k, got)
        else:
            exp = pickle.loads(expected_blob(k))
            try:
                same = matches(entry_point, io_sets[s][i], got, exp, atol)  # type: ignore[arg-type]
            except (RecursionError, MemoryError, TypeError, ValueError):
                same = False
        if not same:
            shown_got = (
                f"<a {type(got).__name__} of {len(blob)} pickled bytes>"
                if len(blob) >= DIGEST_MIN_BYTES
                else short(got)
            )
            shown_exp = "<large output>" if large else short(exp)
            stop("failed", **where(s, i), got=shown_got, expected=shown_exp)

    def recompute_matches(k: int, got: object) -> bool:
        """Whether ``got`` equals the large expected output ``k``, computed again by the
        reference in a process of its own (trusted code; the program's process cannot reach
        it) and compared with evalplus's semantics: ``got`` may pickle otherwise and still be
        equal (1 == 1.0). Only a wrong-looking large output pays for this."""
        s, i = flat[k]
        source = expected.get("reference")
        if not isinstance(source, str):
            stop("harness_error", error={"type": "Recompute", "message": "no reference"})
        verdict_r, verdict_w = os.pipe()
        child = os.fork()
        if child == 0:
            answer = b"E"
            try:
                os.close(verdict_r)
                # Imports from the standard library only: the program may have written
                # modules into the working directory.
                here = os.getcwd()
                sys.path[:] = [p for p in sys.path if p and not p.startswith(here)]
                ns: dict[str, object] = {"__name__": "reference", "__builtins__": builtins}
                exec(compile(source, "reference.py", "exec"), ns)
                want = ns[entry_point](*io_sets[s][i])  # type: ignore[operator]
                answer = b"1" if matches(entry_point, io_sets[s][i], got, want, atol) else b"0"
            except BaseException:
                answer = b"E"
            finally:
                _write_all(verdict_w, answer)
                _exit(0)
        os.close(verdict_w)
        limit = 2 * limits[s][i] + STALL_MARGIN_S
        answer = b""
        ready, _, _ = select.select([verdict_r], [], [], limit)
        if ready:
            answer = os.read(verdict_r, 1)
        os.close(verdict_r)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        if answer not in (b"0", b"1"):
            what = "failed" if answer else f"took longer than {limit:.3g} s"
            message = f"computing the expected output of this input again {what}"
            stop("harness_error", **where(s, i), error={"type": "Recompute", "message": message})
        return answer == b"1"

    def judge_hash(k: int, digest: bytes, size: int) -> None:
        """A large output announced by its hash: answer whether it is the expected pickle's,
        and if not, judge the pickle it must then send (and that must have that hash)."""
        if (
            entries[offsets[k]] == _HASH
            and pickle.loads(expected_blob(k))["sha256"] == digest.hex()
        ):
            _write(answers_w, _MATCHED)
            return
        _write(answers_w, _SEND)
        frame = frames.next(deadline)
        if frame is None or frame[0] != _FULL:
            protocol("no output after its hash")
        blob = frame[1]  # type: ignore[index]
        if len(blob) != size or _sha256(blob).digest() != digest:
            protocol("an output that is not the one its hash announced")
        judge(k, blob)

    frames = _FrameReader(r)
    loaded_at = heard = math.inf
    while True:
        silent = heard + SEND_EVERY_S + longest + STALL_MARGIN_S
        frame = frames.next(min(deadline, silent))
        if frame is None:
            now = _perf()
            if now >= min(deadline, silent):
                # ``done`` is the first input whose output has not come (outputs go in
                # frames, so the program may have got further)
                at = where(*flat[done]) if loaded_at < math.inf and done < len(flat) else {}
                if now >= end:  # a batch's own limit for the program
                    phase = "run" if loaded_at < math.inf else "definition"
                    stop("timeout", **at, program_limit_s=cap, phase=phase)
                if now >= silent:
                    stop("timeout", **at, silent_s=round(now - heard, 3), limit_s=longest)
                stop("timeout", **at, budget_s=round(budget, 3))
            ended = _child_exit(pid)
            if loaded_at == math.inf:  # before the program was defined
                msg = f"the program ended its process ({ended}) while being defined"
                report("candidate_error", error={"type": "ProcessExit", "message": msg})
            if done < len(flat):
                s, i = flat[done]
                msg = f"the program ended its process ({ended}) while running this input"
                report("failed", **where(s, i), error={"type": "ProcessExit", "message": msg})
            report("candidate_error", error={"type": "ProcessExit", "message": ended})
        kind, payload = frame
        if kind == _LOADED:
            loaded_at = heard = _perf()
            deadline = min(loaded_at + budget, end)
        elif kind == _OUTPUT:
            count = int.from_bytes(payload[:4], "little")
            if done + count > len(flat):
                protocol("extra output")
            upto = done + count
            if (
                slow_before[upto] == slow_before[done]
                and payload[4:] == entries[offsets[done] : offsets[upto]]
            ):
                done = upto  # the whole frame is byte for byte the expected outputs
                heard = _perf()
                continue
            view = memoryview(payload)
            pos = 4
            for _ in range(count):
                tag = view[pos] if pos < len(view) else -1
                if tag == _PICKLE:
                    size = int.from_bytes(view[pos + 1 : pos + 5], "little")
                    blob = bytes(view[pos + 5 : pos + 5 + size])
                    if len(blob) != size:
                        protocol("a cut output")
                    pos += 5 + size
                    judge(done, blob)
                elif tag == _HASH and pos + 41 <= len(view):
                    digest = bytes(view[pos + 1 : pos + 33])
                    size = int.from_bytes(view[pos + 33 : pos + 41], "little")
                    pos += 41
                    judge_hash(done, digest, size)
                else:
                    protocol("a malformed output")
                done += 1
            heard = _perf()  # after judging them: the wait for the next starts now
        elif kind == _END:
            if done != len(flat):
                protocol("ended early")
            _child_exit(pid)
            report("passed", inputs=done, counts=[len(x) for x in io_sets])
        elif kind == _STOP:
            outcome, fields = _claimed_stop(payload, flat, done, limits, _perf() - loaded_at, where)
            stop(outcome, **fields)
        else:
            protocol(f"frame {kind!r}")


def _bad_inputs(io_sets: object) -> str:
    """What is wrong with the inputs (the host passes a reference's inputs on as text,
    undecoded): '' when they are input sets (base, then plus) of argument lists."""
    fix = "a HumanEval+ reference's base_input and plus_input must be lists of argument lists"
    if type(io_sets) is not list:
        return f"{fix}; the inputs are not a list: {short(io_sets, 80)}"
    for s, inputs in enumerate(io_sets):
        name = ("base_input", "plus_input")[s] if s < 2 else f"input set {s}"
        if type(inputs) is not list:
            return f"{fix}; {name} is not a list: {short(inputs, 80)}"
        for i, args in enumerate(inputs):
            if type(args) is not list:
                return f"{fix}; {name}[{i}] is not a list: {short(args, 80)}"
    return ""


def _nan_free(out: object, blob: bytes) -> bool:
    """Whether ``out`` (pickled as ``blob``) equals itself (no NaN inside), so that equal
    pickle bytes mean an equal value. A list of numbers is checked by its sum (a NaN makes it
    NaN) at C speed; other containers by comparing with a fresh copy."""
    t = type(out)
    if t is str or t is int or t is bool or t is bytes or out is None:
        return True
    if t is float or t is complex:
        return out == out
    if t is list or t is tuple:
        kinds = set(map(type, out))  # type: ignore[call-overload]
        if kinds and kinds <= _NUMBERS and not math.isnan(sum(out)):  # type: ignore[arg-type]
            return True
    try:
        return bool(pickle.loads(blob) == out)  # fresh objects: False with a NaN
    except Exception:
        return False


class _BuiltinsPickler(pickle.Pickler):
    """Says whether the value it pickled holds only objects of the types the pickler writes
    itself (None, bool, int, float, str, bytes, bytearray, list, tuple, dict, set, frozenset;
    exact types): ``reducer_override`` is called for every other object, so the check costs
    nothing per item. The expected outputs are pickled with it (trusted code: the reference's
    process)."""

    plain = True

    def reducer_override(self, obj: object) -> object:
        self.plain = False
        return NotImplemented


def _may_hold_nan(data: bytes) -> bool:
    """Whether pickled bytes may hold a NaN float: every float is written as ``G`` and its 8
    bytes big-endian, and a NaN has its 11 exponent bits set and a mantissa that is not
    zero, so it always shows as ``G``, 0x7f or 0xff (the sign), then a byte from 0xf0. Other
    bytes that look alike (an infinity, data) only cost the exact check."""
    for head in (b"G\x7f", b"G\xff"):
        if data.find(head[1:]) < 0:  # memchr: ~10x the two-byte search (text has neither)
            continue
        at = data.find(head)
        while at >= 0:
            if at + 2 < len(data) and data[at + 2] >= 0xF0:
                return True
            at = data.find(head, at + 1)
    return False


def _numbers_nan_free(out: object) -> bool:
    """For a list or tuple of built-in values (see :class:`_BuiltinsPickler`): whether all
    are numbers (bool, int, float) and none is NaN, by their sum at C speed (any other item
    makes ``sum`` raise; an infinity of each sign reads as a NaN, and costs the exact check).
    Lists of numbers are where bytes that look like a NaN turn up (HumanEval/130's ints)."""
    if type(out) is not list and type(out) is not tuple:
        return False
    try:
        total = sum(out)  # type: ignore[call-overload]
    except TypeError:
        return False
    return type(total) is int or total == total


class _ExpectedSink(_HashingSink):
    """A large expected output's pickle, hashed as it is written (never held whole), and
    whether its bytes may hold a NaN (:func:`_may_hold_nan`, across the writes' seams too)."""

    __slots__ = ("nan", "tail")

    def __init__(self) -> None:
        super().__init__()
        self.nan = False
        self.tail = b""

    def write(self, data: bytes) -> int:
        if not self.nan:
            data = data if type(data) is bytes else bytes(data)
            self.nan = _may_hold_nan(self.tail + data[:2]) or _may_hold_nan(data)
            self.tail = data[-2:]
        return super().write(data)


def _hash_entry(sha: str | None, exact: bool) -> tuple[bytes, bool]:
    info = _pickle({"sha256": sha, "recompute": not exact}, protocol=4)
    return b"H" + len(info).to_bytes(4, "little") + info, False


def _checked_hash_entry(out: object, blob: bytes, exact: bool) -> tuple[bytes, bool]:
    """The hash entry of ``out`` pickled as ``blob``, after the exact NaN check."""
    return _hash_entry(_sha256(blob).hexdigest() if _nan_free(out, blob) else None, exact)


def _expected_entry(out: object, by_bytes: bool) -> tuple[bytes, bool]:
    """One expected output as the judge keeps it (tag, 4-byte length, payload), and whether
    equal bytes are a pass without a look inside.

    Most are the pickle a right answer's process sends (tag ``P``); equal bytes settle it
    unless the value holds a NaN (equal to nothing under evalplus's ``==``, yet pickled
    alike) or ``by_bytes`` is False (``find_zero``: judged by the polynomial). A large one
    (tag ``H``, the program's process then sends only its hash) is kept as the hash of its
    pickle: equal strings always pickle alike, so for them the hash decides; other values
    may not (1 == 1.0), and on other bytes the judge computes the output again with the
    reference and compares the values (``recompute``). A hash of a value that may hold a
    NaN is not kept (None: every program's output is then computed again and compared).
    Floats compared with a tolerance stay whole.

    A value whose length says it may be large is pickled into :class:`_ExpectedSink` by
    :class:`_BuiltinsPickler`: built-in values whose bytes show no NaN, or a list of numbers
    whose sum is not one, need no other check (HumanEval/130's ten million-item lists:
    0.42 -> 0.20 s, where a set of the items' types and the pickle held whole cost the
    difference)."""
    exact = type(out) in (str, bytes)
    if _may_be_large(out) and not is_floats(out):
        sink = _HashingSink() if exact else _ExpectedSink()  # text holds no float
        pickler = _BuiltinsPickler(sink, protocol=4)
        pickler.dump(out)
        if sink.sha is not None:  # large
            if exact or (pickler.plain and (not sink.nan or _numbers_nan_free(out))):  # type: ignore[attr-defined]
                return _hash_entry(sink.sha.hexdigest(), exact)  # type: ignore[attr-defined]
            return _checked_hash_entry(out, _pickle(out, protocol=4), exact)
        blob = bytes(sink.head)
    else:
        blob = _pickle(out, protocol=4)
    if len(blob) >= DIGEST_MIN_BYTES and not is_floats(out):  # a short value pickled large
        return _checked_hash_entry(out, blob, exact)
    return b"P" + len(blob).to_bytes(4, "little") + blob, by_bytes and _nan_free(out, blob)


def mode_io_oracle(spec: dict[str, object], heap: _Heap | None = None) -> None:
    """Run the trusted reference on every input; report the expected outputs in the form
    the judge reads (``expected``: each output's entry, back to back in ``entries`` so a whole
    frame of right answers is one byte comparison, where each starts, and whether equal bytes
    settle it) and each input's run time (``times``: packed doubles, ``counts`` per set).
    ``heap``: the process's, when references share it (``io_oracle_many``)."""
    with open(str(spec.get("io", "io.json")), encoding="utf-8") as fh:
        raw = fh.read()
    io_sets: list[list[object]] = json.loads(raw)
    bad = _bad_inputs(io_sets)
    if bad:
        report("bad_inputs", message=bad)
    entry_point = str(spec["entry_point"])
    ns = load_candidate(filename=str(spec.get("solution", "solution.py")))
    fn = entry(ns, entry_point)
    by_bytes = entry_point != "find_zero"
    entries = bytearray()
    offsets = [0]
    fast: list[bool] = []
    times = array.array("d")
    recompute = False
    if heap is None:
        heap = _Heap()
    for s, inputs in enumerate(io_sets):
        for i, inp in enumerate(inputs):
            t0 = _perf()
            if t0 >= heap.next_check:
                heap.check()
                t0 = _perf()
            try:
                out = fn(*inp)  # type: ignore[operator]
            except BaseException as exc:
                report("failed", index=i, input=short(_pristine(raw, s, i)), error=error_info(exc))
            times.append(_perf() - t0)
            entry_bytes, ok = _expected_entry(out, by_bytes)
            entries += entry_bytes
            offsets.append(len(entries))
            fast.append(ok)
            recompute = recompute or entry_bytes[0] == _HASH
    expected: dict[str, object] = {"entries": bytes(entries), "offsets": offsets, "fast": fast}
    if recompute:  # for the judge to compute a large output again (see _judge_io)
        with open(str(spec.get("solution", "solution.py")), encoding="utf-8") as fh:
            expected["reference"] = fh.read()
    report(
        "oracle",
        expected=base64.b64encode(_pickle(expected, protocol=4)).decode("ascii"),
        times=base64.b64encode(times.tobytes()).decode("ascii"),
        counts=[len(inputs) for inputs in io_sets],
    )


def mode_unittest(spec: dict[str, object]) -> None:
    # Imported here, not at the top (it costs ~10 ms of start-up in every other mode), but
    # still before the candidate runs, so the candidate cannot plant its own ``unittest``.
    import unittest

    ns = load_candidate(str(spec.get("module", "__test__")))
    path = os.path.abspath("tests.py")
    with open(path, encoding="utf-8") as fh:
        tests = fh.read()
    try:
        exec(compile(tests, path, "exec"), ns)
        cases = ns[str(spec.get("test_class", "TestCases"))]
        suite = unittest.TestLoader().loadTestsFromTestCase(cases)  # type: ignore[arg-type]
    except BaseException as exc:
        report("test_error", error=error_info(exc))
    result = unittest.TestResult()
    try:
        suite.run(result)
    except BaseException as exc:
        report("failed", error=error_info(exc), tests=result.testsRun)
    issues = [("failure", t, tb) for t, tb in result.failures]
    issues += [("error", t, tb) for t, tb in result.errors]
    if issues or result.testsRun == 0:
        kind, test, trace = issues[0] if issues else ("error", None, "no tests ran")
        report(
            "failed",
            test=test.id().rsplit(".", 1)[-1] if test is not None else None,
            kind=kind,
            trace=trace[-2000:],
            failed=len(issues),
            tests=result.testsRun,
        )
    report("passed", tests=result.testsRun, skipped=len(result.skipped))


class _ReferenceClock:
    """A reference's own time limit in a process several run in (``io_oracle_many``): an
    interval timer raising :class:`TimeLimit`, and whether it did (the reference's code may
    catch it and fail otherwise)."""

    def __init__(self) -> None:
        self.armed = False
        self.fired = False
        signal.signal(signal.SIGALRM, self.on_alarm)

    def start(self, limit_s: float) -> None:
        self.armed, self.fired = True, False
        signal.setitimer(signal.ITIMER_REAL, limit_s)

    def stop(self) -> None:
        self.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)

    def on_alarm(self, signum: int, frame: object) -> None:
        if self.armed:
            self.armed, self.fired = False, True
            raise TimeLimit


class _SharedState:
    """What one reference could leave behind for the next in a process they share
    (``io_oracle_many``), where a fork per reference left nothing. The working directory,
    the recursion limit and the int-to-str digit limit are restored after each reference;
    every module's namespace and every class found in one (built-ins included: ``math.pi``,
    ``fractions.Fraction.__add__``, ``builtins.len``), the environment and ``decimal``'s
    context are checked, at C speed (~0.2 ms): one that changed any of them makes the
    references after it run alone, each in a job of its own. A module a reference imports
    first is checked from the end of that reference on."""

    def __init__(self) -> None:
        self.home, self.depth = os.getcwd(), sys.getrecursionlimit()
        self.digits: int | None = getattr(sys, "get_int_max_str_digits", lambda: None)()
        self.env = dict(os.environ)
        self.known: set[str] = set()
        self.classes: set[int] = set()
        self.live: list[object] = []  # module dicts and class mappingproxies, live
        self.saved: list[dict[str, object]] = []  # ... and their contents as first seen
        self.watch()

    def watch(self) -> None:
        """Start checking the modules (and their classes) not seen yet."""
        for name, module in list(sys.modules.items()):
            if name in self.known:
                continue
            self.known.add(name)
            space = getattr(module, "__dict__", None)
            if type(space) is not dict:
                continue
            self.live.append(space)
            self.saved.append(dict(space))
            for value in list(space.values()):
                if isinstance(value, type) and id(value) not in self.classes:
                    self.classes.add(id(value))
                    self.live.append(vars(value))
                    self.saved.append(dict(vars(value)))

    def restore(self) -> str:
        """Undo what is cheap to undo; what else changed ('' if nothing)."""
        sys.modules.pop("solution", None)  # the reference's own module: never watched
        os.chdir(self.home)
        sys.setrecursionlimit(self.depth)
        if self.digits is not None:
            sys.set_int_max_str_digits(self.digits)  # type: ignore[attr-defined]
        try:
            same = self.live == self.saved
        except Exception:  # a value whose == raises
            same = False
        if not same:
            return "a module's or a class's attributes"
        if dict(os.environ) != self.env:
            return "the environment"
        decimal = sys.modules.get("decimal")
        if decimal is not None:
            ctx = decimal.getcontext()  # type: ignore[attr-defined]
            default = (28, decimal.ROUND_HALF_EVEN, -999999, 999999, 1, 0)  # type: ignore[attr-defined]
            if (ctx.prec, ctx.rounding, ctx.Emin, ctx.Emax, ctx.capitals, ctx.clamp) != default:
                return "decimal's context"
        self.watch()
        return ""


def mode_io_oracle_many(spec: dict[str, object]) -> None:
    """``io_oracle`` for several trusted references in one sandbox job, one after another in
    this process, as evalplus computes its ground truth in one: a process forked for each
    cost ~5 ms a reference (its copy-on-write faults, fresh memory for parsing its inputs
    and compiling), ~0.6 CPU-seconds over HumanEval+'s 164 in the sandbox. Each reference
    runs under its own time limit; what it may leave for the next is restored or checked
    (:class:`_SharedState`), and once one has changed what cannot be restored, the rest
    are not run here (``not_run``). A reference that ends or wrecks the process
    (``os._exit``, a crash, a hang in C the timer cannot end) fails the job as a whole. The
    host runs every reference that failed here, or was not run, or was in a job that failed
    as a whole, in a job of its own (so one reference cannot fail or change another)."""
    results: list[object] = []
    clock = _ReferenceClock()
    heap = _Heap()
    shared = _SharedState()
    changed = ""
    _STATE["batch"] = True  # report() ends the reference, not the process
    for problem in spec["problems"]:  # type: ignore[attr-defined]
        if changed:
            results.append(
                {"outcome": "not_run", "message": f"a reference before changed {changed}"}
            )
            continue
        limit_s = float(problem.get("timeout_s", 300.0))
        _STATE["reported"] = None
        try:
            clock.start(limit_s)
            mode_io_oracle(problem, heap)
        except _Reported:
            pass
        except BaseException as exc:
            if not clock.fired:
                _STATE["reported"] = {"outcome": "harness_error", "error": error_info(exc)}
        finally:
            clock.stop()
        # io_oracle always reports; the host runs alone whatever is not an outcome here
        results.append(
            {"outcome": "timeout", "limit_s": limit_s} if clock.fired else _STATE["reported"]
        )
        changed = shared.restore()
    _STATE["batch"] = False
    report("oracle_many", results=results)


def _empty(root: str, keep: str, dev: int) -> bool:
    """Remove what is in ``root`` on the filesystem ``dev``, whatever the program made of it
    (links are removed, never followed; unreadable directories are opened up, being the
    judge's uid's), except the directories leading to ``keep`` and other filesystems
    mounted there (the sandbox's read-only ones). True if ``root`` is left empty."""
    opened = False

    def open_up() -> None:  # made unreadable or read-only by the program: its own directory
        nonlocal opened
        if opened:
            raise PermissionError(f"cannot empty {root}")
        os.chmod(root, 0o700)
        opened = True

    def remove(call: Callable[[str], None], path: str) -> None:
        try:
            call(path)
        except PermissionError:
            open_up()
            call(path)

    empty = True
    try:
        entries = list(os.scandir(root))
    except PermissionError:
        open_up()
        entries = list(os.scandir(root))
    for entry in entries:
        if entry.stat(follow_symlinks=False).st_dev != dev:
            empty = False
        elif entry.is_dir(follow_symlinks=False):
            if _empty(entry.path, keep, dev) and not (
                keep == entry.path or keep.startswith(entry.path + "/")
            ):
                remove(os.rmdir, entry.path)
            else:
                empty = False
        else:
            remove(os.unlink, entry.path)
    return empty


def _wipe(root: str, keep: str) -> None:
    """Empty ``root`` (see :func:`_empty`)."""
    _empty(root, keep, os.stat(root).st_dev)


def _end_processes(judge: int, budget_s: float = 2.0) -> None:
    """SIGKILL every process of the job but the init and the judge, and wait until the job's
    PID namespace holds no other (the init reaps what it inherits; the judge its own)."""
    end = _perf() + budget_s
    while True:
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)  # all but PID 1 and the caller
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, judge)]
        if not others:
            return
        if _perf() > end:
            raise RuntimeError(f"processes {others[:5]} outlived the program")
        time.sleep(0.0002)


def _load_program(prog: dict[str, object]) -> tuple[dict[str, str], int]:
    """A batch program's files, read, and its expected outputs opened (-1 for ``check``):
    read only once its process is forked, as in ``io``."""
    folder = str(prog["dir"])
    names = {"io": ("solution.py", "io.json"), "check": ("solution.py", "tests.py", "prompt.py")}
    kind = str(prog["mode"])
    if kind not in names:
        raise ValueError(f"a batch grades 'io' and 'check' programs, not {kind!r}")
    files: dict[str, str] = {}
    for name in names[kind]:
        with open(os.path.join(folder, name), encoding="utf-8") as fh:
            files[name] = fh.read()
    expected = os.path.join(folder, "expected.b64")
    return files, (os.open(expected, os.O_RDONLY) if kind == "io" else -1)


def mode_many(spec: dict[str, object]) -> None:
    """Several programs (``io`` or ``check``) graded one after another in one sandbox job,
    each as in its own job (its own process, limits and whole wall-clock limit), with a
    result line per program under that program's nonce, written as soon as it is judged.

    Nothing of one program reaches the next: the judge reads every program's files into
    memory (expected outputs stay unread behind descriptors the programs do not inherit)
    and deletes them before the first program runs; after each program it SIGKILLs every
    other process of the job and waits until they are gone, then empties ``/tmp``,
    ``/dev/shm`` and the working directory. Inside a batch a program cannot create System V
    IPC objects, POSIX message queues or keys (the kernel objects that would outlive it in
    the job's namespaces). It needs a PID namespace of its own with the judge as PID 2 (the
    fork server's layout); anything that breaks the batch ends it, and the programs without
    a result line are for the host to grade again, one job each.
    """
    judge = os.getpid()
    if judge != 2:  # kill(-1) anywhere else would reach processes that are not the job's
        raise RuntimeError(f"a batch needs the job's own PID namespace (pid {judge}, not 2)")
    workdir = os.getcwd()
    programs: list[dict[str, object]] = spec["programs"]  # type: ignore[assignment]
    loaded = [_load_program(prog) for prog in programs]
    # What each program's own job would have had: its TMPDIR (in the working directory).
    tmpdir = os.environ.get("TMPDIR", "")
    tmpdir = tmpdir if tmpdir and os.path.isdir(tmpdir) else ""
    import resource  # noqa: F401  (for the programs' processes: sys.modules, not the disk)

    _make_undumpable()
    _seccomp_program(judge, os.getpgid(0), batch=True)  # each program's process installs it
    out = int(_STATE["out"])  # type: ignore[call-overload]
    _STATE["batch"] = True
    try:
        for n, prog in enumerate(programs):
            files, expected_fd = loaded[n]
            for root in ("/tmp", "/dev/shm", workdir):
                if os.path.isdir(root):
                    _wipe(root, workdir)
            os.makedirs(workdir, exist_ok=True)
            if tmpdir:
                os.makedirs(tmpdir, mode=0o700, exist_ok=True)
            os.chdir(workdir)
            for name, text in files.items():  # as in the program's own job (tracebacks too)
                with open(name, "w", encoding="utf-8") as fh:
                    fh.write(text)
            started = _perf()
            _STATE["reported"] = None
            error: dict[str, object] | None = None
            try:
                if prog["mode"] == "io":
                    _judge_io(prog, json.loads(files["io.json"]), expected_fd)
                else:
                    _judge_check(prog, files["tests.py"], files["prompt.py"])
            except _Reported:
                pass  # the first outcome reported stands, whatever came after it
            except Exception as exc:  # a bug of ours in this program's grading
                error = error_info(exc)
            first = _STATE.get("reported")
            fields: dict[str, object] = (
                first if isinstance(first, dict) else {"outcome": "harness_error", "error": error}
            )
            fields["elapsed_s"] = _perf() - started
            line = f"\n{RESULT_PREFIX} {prog['nonce']} {_dumps(fields, default=repr)}\n"
            _write_all(out, line.encode())
            _end_processes(judge)
            later = {fd for _, fd in loaded[n + 1 :] if fd >= 0}
            _keep_only({out, *later})  # closes this program's pipes
    finally:
        _STATE["batch"] = False  # a failure from here on is the whole batch's (main reports it)
    _exit(0)


MODES = {
    "check": mode_check,
    "io": mode_io,
    "io_oracle": mode_io_oracle,
    "io_oracle_many": mode_io_oracle_many,
    "many": mode_many,
    "unittest": mode_unittest,
}


def main() -> None:
    _STATE["nonce"] = os.environ.pop(NONCE_VAR, "")
    _STATE["out"] = os.dup(1)
    silence_stdout()
    try:
        with open("spec.json", encoding="utf-8") as fh:
            spec = json.load(fh)
        MODES[spec["mode"]](spec)
    except BaseException as exc:  # a bug here, not in the candidate: report it as ours
        report("harness_error", error=error_info(exc), trace=traceback.format_exc()[-2000:])


if __name__ == "__main__":
    main()
