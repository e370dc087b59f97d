"""The fork server (``sandbox/forkserver.py``): jobs forked from a warm sandboxed interpreter.

The threat tests of ``tests/test_sandbox.py`` run through it too (variant
``bwrap-forkserver``); this file covers what is particular to it: jobs isolated from each other
(no shared files, modules, network or processes), what a job runs as, behaving like
``python main.py``, and the server's own life (restart after a death, no process outliving
the backend or the interpreter).
"""

from __future__ import annotations

import gc
import json
import marshal
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

import sandbox
from sandbox import ExecStatus, Job, SandboxConfigError
from sandbox.errors import IsolationUnavailableError
from sandbox.forkserver import MAX_SERVER_CODES, ForkServer, build_payload
from sandbox.process import FORK_SERVER_WORKDIR, ProcessBackend, ProcessConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def backend() -> ProcessBackend:
    b = ProcessBackend(fork_server="auto")
    caps = b.capabilities()
    if not caps.fork_server:
        pytest.skip(f"no fork server here ({caps.isolation}): {caps.notes}")
    yield b
    b.close()


def _server_pids(server: ForkServer) -> list[int]:
    """The server's processes on the host (bwrap, its init, the server)."""
    assert server.pid is not None
    root = psutil.Process(server.pid)
    return [root.pid, *(p.pid for p in root.children(recursive=True))]


# -- configuration ----------------------------------------------------------------------------


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match=r"fork_server must be one of .*got 'yes'"):
        ProcessConfig(fork_server="yes")
    with pytest.raises(
        SandboxConfigError, match="fork_server_tmpfs_mb must be an int >= 16, got 8"
    ):
        ProcessConfig(fork_server_tmpfs_mb=8)
    with pytest.raises(SandboxConfigError, match=r"fork_server_preload .* got 'json'"):
        ProcessConfig(fork_server_preload="json")  # type: ignore[arg-type]
    with pytest.raises(SandboxConfigError, match=r"fork_server_preload .*'no such'"):
        ProcessConfig(fork_server_preload=("no such",))


def test_on_requires_bwrap_and_off_disables_it() -> None:
    with pytest.raises(IsolationUnavailableError, match="needs isolation 'bwrap'"):
        ProcessBackend(isolation="none", fork_server="on").capabilities()
    off = ProcessBackend(fork_server="off")
    assert not off.capabilities().fork_server
    assert off.fork_server() is None
    assert off.run(Job("print('plain')")).stdout == "plain\n"


def test_a_server_that_cannot_start_falls_back_to_plain_jobs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    b = ProcessBackend(fork_server_preload=("module_that_does_not_exist_xyz",))
    if b.capabilities().isolation != "bwrap":
        pytest.skip("no bwrap here")
    caps = b.capabilities()
    assert not caps.fork_server
    assert any("module_that_does_not_exist_xyz" in n for n in caps.notes), caps.notes
    assert b.run(Job("print(1)")).stdout == "1\n"
    with pytest.raises(IsolationUnavailableError, match="module_that_does_not_exist_xyz"):
        ProcessBackend(
            fork_server="on", fork_server_preload=("module_that_does_not_exist_xyz",)
        ).run(Job("pass"))


# -- what a job runs as -------------------------------------------------------------------------


def test_a_job_has_no_privileges(backend: ProcessBackend) -> None:
    code = textwrap.dedent(
        """
        import os, socket
        status = dict(line.split(':', 1) for line in open('/proc/self/status').read().splitlines())
        print(os.getuid(), os.geteuid(), os.getgid(), os.getpid())
        for key in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp'):
            print(key, status[key].strip())
        print(sorted(p for p in os.listdir('/proc') if p.isdigit()))
        print(socket.gethostname(), [name for _, name in socket.if_nameindex()])
        for path in ('/', '/usr', '/etc', '/dev', '/root', '/proc/sys/kernel', os.environ['HOME']):
            print(path, os.access(path, os.W_OK))
        """
    )
    r = backend.run(Job(code))
    assert r.ok, r
    lines = r.stdout.splitlines()
    uid = str(backend.config.sandbox_uid)
    assert lines[0].split() == [uid, uid, uid, "2"]
    caps = dict(line.split(" ", 1) for line in lines[1:8])
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(caps[key], 16) == 0, caps
    assert caps["NoNewPrivs"] == "1"
    assert lines[8] == "['1', '2']", "the job sees only its own init and itself in /proc"
    assert lines[9] == "sandbox ['lo']"
    writable = dict(line.rsplit(" ", 1) for line in lines[10:])
    assert [p for p, w in writable.items() if w == "True"] == [lines[-1].rsplit(" ", 1)[0]]


def test_loopback_works_inside_a_job(backend: ProcessBackend) -> None:
    code = textwrap.dedent(
        """
        import socket
        srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(1)
        c = socket.create_connection(srv.getsockname(), timeout=2); c.sendall(b'ping')
        conn, _ = srv.accept(); print(conn.recv(4).decode())
        """
    )
    r = backend.run(Job(code))
    assert r.ok and r.stdout == "ping\n", r


def test_the_workdir_is_a_private_size_limited_tmpfs() -> None:
    b = ProcessBackend(fork_server_tmpfs_mb=16)
    if not b.capabilities().fork_server:
        pytest.skip("no fork server here")
    code = textwrap.dedent(
        """
        import os, errno
        try:
            with open('big', 'wb') as fh:
                for _ in range(40):
                    fh.write(b'x' * (1 << 20))
            print('wrote 40 MB')
        except OSError as e:
            print('full', errno.errorcode[e.errno])
        print(os.getcwd().startswith('/tmp/brite-sbx-'), sorted(os.listdir('/tmp')))
        """
    )
    r = b.run(Job(code))
    b.close()
    assert r.ok, r
    lines = r.stdout.splitlines()
    assert lines[0] == "full ENOSPC"
    assert lines[1].startswith("True ['brite-sbx-") and lines[1].count("brite-sbx-") == 1


# -- jobs are isolated from each other -----------------------------------------------------------


def test_concurrent_jobs_share_nothing(backend: ProcessBackend) -> None:
    """One job leaves files, a listener, an abstract socket and a process; another running at
    the same time finds none of them."""
    tag = uuid.uuid4().hex
    first = textwrap.dedent(
        f"""
        import os, socket, subprocess, sys, time
        for path in ('/tmp/{tag}', '/dev/shm/{tag}', os.environ['HOME'] + '/{tag}'):
            open(path, 'w').write('secret')
        for path in ('/dev/{tag}', '/root/{tag}'):
            try:
                open(path, 'w'); print('WROTE', path)
            except OSError:
                pass
        tcp = socket.socket(); tcp.bind(('127.0.0.1', 47123)); tcp.listen(5)
        unix = socket.socket(socket.AF_UNIX); unix.bind('\\0{tag}'); unix.listen(5)
        child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)', '{tag}'])
        print('first ready', time.time(), flush=True)
        time.sleep(3)
        child.kill()
        """
    )
    second = textwrap.dedent(
        f"""
        import glob, os, socket, time
        time.sleep(1.0)
        found = glob.glob('/tmp/*') + glob.glob('/dev/shm/*') + glob.glob('/dev/{tag}')
        print('files', [f for f in found if '{tag}' in f])
        targets = ((socket.AF_INET, ('127.0.0.1', 47123)), (socket.AF_UNIX, '\\0{tag}'))
        for family, address in targets:
            s = socket.socket(family)
            try:
                s.connect(address); print('CONNECTED', address)
            except OSError as e:
                print('refused')
        cmdlines = [open(f'/proc/{{p}}/cmdline').read() for p in os.listdir('/proc') if p.isdigit()]
        print('procs', sum('{tag}' in c for c in cmdlines))
        print(time.time())
        """
    )
    jobs = [Job(first, timeout_s=20), Job(second, timeout_s=20)]
    out = sandbox.run_many(jobs, backend=backend, concurrency=2)
    assert out[0].ok and out[0].stdout.startswith("first ready"), out[0]
    assert out[1].ok, out[1]
    *lines, checked = out[1].stdout.splitlines()
    assert lines == ["files []", "refused", "refused", "procs 0"], out[1]
    ready = float(out[0].stdout.split()[-1])
    assert ready < float(checked) < ready + 3, "the second job did not look while the first ran"


def test_modules_and_state_do_not_leak_between_jobs(backend: ProcessBackend) -> None:
    tag = uuid.uuid4().hex
    dirty = textwrap.dedent(
        f"""
        import builtins, json, os, sys, colorsys, random
        json.dumps = lambda *a, **k: 'HACKED'
        builtins.{"leak_" + tag} = 1
        sys.modules['planted_{tag}'] = sys
        os.environ['PLANTED'] = '1'
        sys.path.insert(0, '/tmp/planted')
        print(random.random())
        """
    )
    check = textwrap.dedent(
        f"""
        import builtins, json, os, sys, random
        print(json.dumps(1), hasattr(builtins, {"'leak_" + tag + "'"}),
              'planted_{tag}' in sys.modules, 'colorsys' in sys.modules,
              'PLANTED' in os.environ, '/tmp/planted' in sys.path)
        print(random.random())
        """
    )
    for _ in range(2):  # the second time, the harness-style compile cache is in play too
        a = backend.run(Job(dirty))
        b = backend.run(Job(check))
        assert a.ok and b.ok, (a, b)
        assert b.stdout.splitlines()[0] == "1 False False False False False", b
        assert a.stdout != b.stdout.splitlines()[1] + "\n", "random state is not shared"


# -- behaving like `python main.py` --------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "exit_code", "stdout", "stderr_has"),
    [
        ("import sys\nprint('x', end='')\nsys.exit(3)", ExecStatus.ERROR, 3, "x", ""),
        ("import sys\nsys.exit('bye')", ExecStatus.ERROR, 1, "", "bye\n"),
        ("raise SystemExit(None)", ExecStatus.OK, 0, "", ""),
        ("x = (", ExecStatus.ERROR, 1, "", "SyntaxError: '(' was never closed"),
        ("def f():\n    raise KeyError('k')\nf()", ExecStatus.ERROR, 1, "", "line 2, in f"),
        (
            "import atexit\natexit.register(lambda: print('at exit'))\nprint('main')",
            ExecStatus.OK,
            0,
            "main\nat exit\n",
            "",
        ),
        (
            "import threading, time\n"
            "threading.Thread(target=lambda: (time.sleep(0.3), print('thread'))).start()\n"
            "print('main')",
            ExecStatus.OK,
            0,
            "main\nthread\n",
            "",
        ),
        ("raise KeyboardInterrupt", ExecStatus.KILLED, -signal.SIGINT, "", "KeyboardInterrupt"),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)", ExecStatus.KILLED, -15, "", ""),
        ("import os\nos.abort()", ExecStatus.KILLED, -signal.SIGABRT, "", ""),
    ],
)
def test_programs_end_as_under_python(
    backend: ProcessBackend,
    code: str,
    status: ExecStatus,
    exit_code: int,
    stdout: str,
    stderr_has: str,
) -> None:
    plain = ProcessBackend(fork_server="off").run(Job(code))
    forked = backend.run(Job(code))
    for r in (plain, forked):
        assert (r.status, r.exit_code, r.stdout) == (status, exit_code, stdout), r
        assert stderr_has in r.stderr, r
    # The same error output, but for the working directory in the paths.
    assert forked.stderr.count("\n") == plain.stderr.count("\n"), (plain.stderr, forked.stderr)
    assert '"<string>"' not in forked.stderr  # no frame of the server's own code


def test_the_program_sees_a_fresh_interpreter(backend: ProcessBackend) -> None:
    code = textwrap.dedent(
        """
        import os, sys, helper, json
        print(sys.argv, os.path.basename(__file__), __name__, sys.path[0] == os.getcwd())
        print(helper.VALUE, sys.stdin.read(), sys.stdout.encoding, sys.stderr.errors)
        print(sorted(k for k in os.environ if k.startswith(('BRITE', 'JOB'))))
        print('SECRET' in open('/proc/self/environ').read())
        """
    )
    job = Job(
        code,
        stdin="from stdin",
        files={"helper.py": "VALUE = 42\n"},
        env={"JOB_VAR": "1"},
    )
    r = backend.run(job)
    assert r.ok, r
    assert r.stdout.splitlines() == [
        "['main.py'] main.py __main__ True",
        "42 from stdin utf-8 backslashreplace",
        "['JOB_VAR']",
        "False",
    ]


def test_startup_variables_run_the_plain_way(backend: ProcessBackend) -> None:
    """PYTHONHASHSEED (like every PYTHON*, LD_* or locale variable) only acts when an
    interpreter starts: such a job is not forked from the warm server."""
    code = "print(hash('brite'))"
    seeded = [backend.run(Job(code, env={"PYTHONHASHSEED": "7"})).stdout for _ in range(2)]
    expected = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONHASHSEED": "7", "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert seeded == [expected, expected]


def test_compiled_code_cache_keeps_tracebacks_right(backend: ProcessBackend) -> None:
    code = "import os\nprint(os.getcwd())\n\ndef f():\n    return 1 / 0\n\nf()\n"
    for _ in range(3):  # the second and later runs ship code compiled on the host
        r = backend.run(Job(code))
        cwd = r.stdout.strip()
        assert r.status is ExecStatus.ERROR and cwd.startswith("/tmp/brite-sbx-"), r
        assert f'File "{cwd}/main.py", line 5, in f' in r.stderr, r.stderr
        assert "return 1 / 0" in r.stderr


def test_compiled_code_is_sent_once_per_server_and_again_after_a_restart(
    backend: ProcessBackend,
) -> None:
    server = backend.fork_server()
    assert server is not None
    code = f"import sys\nprint('{uuid.uuid4().hex}', __name__, sys.argv)\n"
    first = backend.run(Job(code))
    assert server.compiled(code, f"{FORK_SERVER_WORKDIR}/main.py") is not None  # seen twice now
    outputs = [backend.run(Job(code)).stdout for _ in range(2)]
    code_id = server.compiled(code, f"{FORK_SERVER_WORKDIR}/main.py")[0]  # type: ignore[index]
    assert code_id in server._loaded  # sent to the server, not in every payload
    assert outputs == [first.stdout] * 2 and "__main__ ['main.py']" in first.stdout
    server.restart(server.generation)  # a fresh server holds no code: the host sends it again
    again = backend.run(Job(code))
    assert again.stdout == first.stdout and code_id in server._loaded


def test_code_the_server_lacks_or_compiled_for_another_path_is_compiled_from_source(
    backend: ProcessBackend,
) -> None:
    server = backend.fork_server()
    assert server is not None
    source = "def f():\n    return 1 / 0\n\nf()\n"
    wrong_path = marshal.dumps(compile(source, "/elsewhere/main.py", "exec"))
    right = marshal.dumps(compile(source, f"{FORK_SERVER_WORKDIR}/main.py", "exec"))
    lacking = uuid.uuid4().hex
    server._loaded[lacking] = None  # the host believes it sent it: the server never got it
    for compiled in ((uuid.uuid4().hex, wrong_path), (lacking, right), None):
        out: list[bytes] = []
        err: list[bytes] = []
        outcome = server.run(
            {
                "id": uuid.uuid4().hex,
                "timeout_s": 10.0,
                "rlimits": {},
                "workdir": FORK_SERVER_WORKDIR,
                "uid": 65534,
            },
            build_payload(source, {}, {}),
            None,
            None,
            (out.append, err.append),
            10.0,
            compiled,
        )
        stderr = b"".join(err).decode()
        assert outcome.report is not None and outcome.report["exit_code"] == 1, outcome
        assert f'File "{FORK_SERVER_WORKDIR}/main.py", line 2, in f' in stderr, stderr


def test_more_programs_than_the_server_keeps_all_run_right(backend: ProcessBackend) -> None:
    codes = [f"print({i} * 2)\n" for i in range(MAX_SERVER_CODES + 3)]
    for _ in range(3):  # compiled from the second round on; the oldest are dropped and resent
        results = sandbox.run_many([Job(c) for c in codes], concurrency=2, backend=backend)
        assert [r.stdout for r in results] == [f"{i * 2}\n" for i in range(len(codes))]


def test_payload_layout() -> None:
    blob = build_payload("print(1)", {"a.txt": "é"}, {"K": "V"})
    head_len = int.from_bytes(blob[:8], "little")
    head = json.loads(blob[8 : 8 + head_len])
    assert head == {"code_size": 8, "files": [["a.txt", 2]], "env": {"K": "V"}}
    assert blob[8 + head_len :] == b"print(1)" + "é".encode()


# -- the server's own life -------------------------------------------------------------------------


def test_a_dead_server_fails_its_jobs_as_errors_and_is_restarted() -> None:
    b = ProcessBackend()
    if not b.capabilities().fork_server:
        pytest.skip("no fork server here")
    server = b.fork_server()
    assert server is not None
    generation, pids = server.generation, _server_pids(server)
    results: list[sandbox.ExecResult] = []
    worker = threading.Thread(
        target=lambda: results.append(
            b.run(Job("import time\nprint('started', flush=True)\ntime.sleep(20)"))
        )
    )
    worker.start()
    time.sleep(1.0)
    os.killpg(server.pid, signal.SIGKILL)  # type: ignore[arg-type]
    worker.join(30)
    assert results, "the job did not end when its server died"
    r = results[0]
    assert r.status is ExecStatus.ERROR and r.sandbox_error, r
    # Which of the two sees the death first (the server's socket or the job's status pipe)
    # is a race; both are reported as the server's failure, never as the program's.
    assert re.search(r"fork server (died|closed the job's status pipe)", r.sandbox_error), r
    after = b.run(Job("print('fresh server')"))
    assert after.ok and after.stdout == "fresh server\n", after
    assert server.generation == generation + 1
    b.close()
    time.sleep(0.2)
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]


def test_a_server_started_from_a_short_lived_thread_survives_it() -> None:
    """bwrap's --die-with-parent acts on the *thread* that started it: pools start the server
    from worker threads that end long before the server should."""
    b = ProcessBackend()
    if not b.capabilities().fork_server:
        pytest.skip("no fork server here")
    b.close()  # the next job starts a new server, from the thread below
    t = threading.Thread(target=lambda: b.run(Job("pass")))
    t.start()
    t.join()
    server = b.fork_server()
    assert server is not None
    generation = server.generation
    time.sleep(0.5)
    assert server.alive(), "the server died with the thread that started it"
    assert b.run(Job("print(2)")).stdout == "2\n"
    assert server.generation == generation
    b.close()


def test_close_and_garbage_collection_stop_the_server() -> None:
    b = ProcessBackend()
    if not b.capabilities().fork_server:
        pytest.skip("no fork server here")
    server = b.fork_server()
    assert server is not None
    pids = _server_pids(server)
    b.close()
    assert not server.alive()
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert b.run(Job("print('again')")).stdout == "again\n"  # closing is not final for a backend
    server = b.fork_server()
    assert server is not None
    pids = _server_pids(server)
    del b, server
    gc.collect()
    time.sleep(0.2)
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]


def test_no_server_outlives_the_interpreter(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sandbox
        from sandbox.process import ProcessBackend
        b = ProcessBackend()
        assert sandbox.run('print(1)').stdout == '1\\n'
        assert b.run(sandbox.Job('print(2)')).stdout == '2\\n'
        servers = [sandbox.get_backend('process').fork_server(), b.fork_server()]
        print(' '.join(str(s.pid) for s in servers if s is not None))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    pids = [int(p) for p in out.stdout.split()]
    time.sleep(0.5)
    assert not [p for p in pids if psutil.pid_exists(p)], out


def test_a_forked_host_gets_its_own_server(backend: ProcessBackend) -> None:
    server = backend.fork_server()
    assert server is not None
    generation, pid = server.generation, server.pid
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.close(r)
            res = backend.run(Job("print('from the child')"))
            os.write(w, res.stdout.encode())
            backend.close()
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        got = fh.read()
    os.waitpid(child, 0)
    assert got == "from the child\n"
    assert server.alive() and server.pid == pid and server.generation == generation
    assert backend.run(Job("print('parent')")).stdout == "parent\n"
