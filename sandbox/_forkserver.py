"""The fork server that runs *inside* the sandbox: the host side is ``sandbox/forkserver.py``,
the design and threat model are in docs/SANDBOX.md.

The host starts it once per backend as ``python -s -c <this source> <config json>`` inside a
bwrap sandbox (read-only host filesystem, no network, its own user and PID namespaces), with
its end of a Unix socket. It imports the modules programs commonly need, freezes them and then
only serves jobs: it never runs a program itself, so no program can leave anything behind for
the next one. For each job:

* the **server** ``clone()``s the job's init straight into fresh user, mount, PID, network,
  IPC, UTS and cgroup namespaces, enforces the job's wall-clock deadline (by killing the init,
  which takes the whole PID namespace with it) and forwards the init's report to the host's
  status pipe, which nothing else holds;
* the job's **init** (PID 1 of the new PID namespace) joins the job's pids cgroup, maps uid
  65534, makes every inherited mount read-only, mounts a fresh size-limited tmpfs on /tmp
  (holding the working directory) and /dev/shm, a fresh devpts and /proc (its sysctls
  read-only), brings up loopback, writes the job's files and forks the program; when the
  program ends it kills and reaps everything else in the namespace, then reports;
* the **program** (PID 2): a new session, the job's stdio, environment and rlimits, every
  capability dropped and no-new-privileges, then ``main.py`` run as ``__main__`` the way
  ``python main.py`` would (exit status, tracebacks, atexit, non-daemon threads).

Standard library only; compatible with every Python the project supports.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gc
import importlib
import importlib.util
import io
import json
import marshal
import mmap
import os
import platform
import resource
import selectors
import signal
import socket
import struct
import sys
import time
import types

PR_SET_CHILD_SUBREAPER = 36  # the leftover scan (tests/test_zz_no_leftovers.py) keys on this line
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_SETFCAP = 31

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
JOB_NAMESPACES = (
    CLONE_NEWUSER
    | CLONE_NEWNS
    | CLONE_NEWPID
    | CLONE_NEWNET
    | CLONE_NEWIPC
    | CLONE_NEWUTS
    | CLONE_NEWCGROUP
)

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2
_MOUNT_FLAGS = {
    "ro": MS_RDONLY,
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
}
# syscall numbers glibc has no wrapper for: (capset, keyctl)
_SYSCALLS = {
    "x86_64": (126, 250),
    "aarch64": (91, 219),
    "riscv64": (91, 219),
    "ppc64le": (184, 271),
    "ppc64": (184, 271),
    "s390x": (185, 280),
    "i686": (185, 288),
    "i386": (185, 288),
    "armv7l": (185, 311),
}
_CLONE_SYSCALL = {
    # Architectures whose clone() takes (flags, stack, ...) first; s390 swaps them.
    "x86_64": 56,
    "aarch64": 220,
    "riscv64": 220,
    "ppc64le": 120,
    "ppc64": 120,
    "i686": 120,
    "i386": 120,
    "armv7l": 120,
}
KEYCTL_JOIN_SESSION_KEYRING = 1
_PROC_COVERS = ("sys", "sysrq-trigger", "irq", "bus")
"""Parts of /proc that reach the whole machine (sysctls, the interrupt table): read-only."""

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, *[ctypes.c_ulong] * 4]
_libc.syscall.restype = ctypes.c_long
# clone() must run holding the GIL, as os.fork() does: PyDLL does not release it.
_clone_call = ctypes.PyDLL(None, use_errno=True).syscall
_clone_call.restype = ctypes.c_long
_clone_call.argtypes = [ctypes.c_long, ctypes.c_ulong, *[ctypes.c_void_p] * 3, ctypes.c_ulong]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _prctl(option: int, arg: int = 0, arg3: int = 0) -> int:
    return int(_libc.prctl(option, arg, arg3, 0, 0))


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    _check(
        _libc.mount(
            src.encode() if src is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            flags,
            data.encode() if data is not None else None,
        ),
        f"mount {target}",
    )


def _capset(bits: int) -> None:
    """Set the effective and permitted capabilities to ``bits`` (inheritable: none)."""
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        raise OSError(f"no capset syscall number known for {platform.machine()}")
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = bits & 0xFFFFFFFF
    data[1].effective = data[1].permitted = bits >> 32
    _check(int(_libc.syscall(numbers[0], ctypes.byref(header), data)), "capset")


def _drop_all_capabilities() -> None:
    """No capability in any set, none to gain back (no-new-privileges, empty bounding set)."""
    _check(_prctl(PR_SET_NO_NEW_PRIVS, 1), "no_new_privs")
    for cap in range(64):
        if _prctl(PR_CAPBSET_DROP, cap) != 0:
            if ctypes.get_errno() == 22:  # EINVAL: past the last capability
                break
            _check(-1, f"drop capability {cap} from the bounding set")
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    _capset(0)


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _close_all_but(keep: set[int]) -> None:
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, max(low, resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1024))


# -- the server -------------------------------------------------------------------------------


def _umount_below(root: str) -> None:
    """Detach the mounts bwrap put below ``root`` (read-only covers of /proc entries): a fresh
    /proc can only be mounted in a job's namespace while this one is not partly covered."""
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        points = [_unescape(line.split()[4]) for line in fh]
    for point in sorted(points, key=len, reverse=True):
        if point.startswith(root + "/"):
            # EINVAL: a mount of the host's /proc, hidden below the sandbox's own: unreachable
            _libc.umount2(point.encode(), MNT_DETACH)


def _unescape(field: str) -> str:
    """A mountinfo path: spaces, tabs, newlines and backslashes come as octal escapes."""
    if "\\" not in field:
        return field
    return field.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")


def _prepare_server(config: dict[str, object]) -> dict[str, object]:
    if platform.machine() not in _CLONE_SYSCALL or platform.machine() not in _SYSCALLS:
        raise RuntimeError(f"no clone/capset syscall numbers known for {platform.machine()}")
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _umount_below("/proc")
    _plan_filesystem()
    _MAX_CODES[0] = int(config.get("max_codes", 16))  # type: ignore[call-overload]
    for name in config.get("preload", []):  # type: ignore[attr-defined]
        importlib.import_module(str(name))
    # Forking a process that has threads is unsafe; a preloaded module must not start any.
    with open("/proc/self/status", encoding="ascii") as fh:
        threads = int(next(ln.split()[1] for ln in fh if ln.startswith("Threads:")))
    if threads != 1:
        raise RuntimeError(f"the preloaded modules started threads ({threads} running)")
    _OUTER_IDS[:] = [os.geteuid(), os.getegid()]  # what a job's user namespace maps
    # Creating a job's user namespace that maps this namespace's root needs CAP_SETFCAP;
    # nothing else is needed any more (bwrap gave CAP_SYS_ADMIN for the unmounts above).
    _capset(1 << CAP_SETFCAP)
    # Python's start-up dispositions, which the program must find again, and the few this
    # server changes (only these are reset per job: resetting all 64 costs a job ~0.3 ms).
    for sig in range(1, signal.NSIG):
        with contextlib.suppress(OSError, ValueError):
            handler = signal.getsignal(sig)
            if handler not in (signal.SIG_DFL, None):
                _STARTUP_SIGNALS[sig] = handler
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the loop (wakeup fd)
    _CHANGED_SIGNALS.extend(
        {*_STARTUP_SIGNALS, signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    )
    gc.collect()
    gc.freeze()  # forked jobs neither scan nor copy the server's objects
    return {
        "pid": os.getpid(),
        "python": sys.version,
        "magic": importlib.util.MAGIC_NUMBER.hex(),
        "optimize": sys.flags.optimize,
        "modules": len(sys.modules),
    }


_OUTER_IDS = [0, 0]


def _clone(flags: int) -> int:
    """fork() into fresh namespaces in one step, with CPython's fork bookkeeping around it
    (what ``os.fork`` does, for a clone() it does not offer)."""
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = int(
        _clone_call(_CLONE_SYSCALL[platform.machine()], flags | signal.SIGCHLD, None, None, None, 0)
    )
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone: {os.strerror(err)}")
    return pid


class _Job:
    """A job the server has started: its init's pid, the pipe the init reports on, the host's
    status pipe and the deadline."""

    __slots__ = ("data", "deadline", "id", "killed", "pid", "rep_r", "start", "status_fd")

    def __init__(self, job_id: str, pid: int, rep_r: int, status_fd: int, timeout_s: float) -> None:
        self.id, self.pid, self.rep_r, self.status_fd = job_id, pid, rep_r, status_fd
        self.start = time.monotonic()
        self.deadline = self.start + timeout_s
        self.data = bytearray()
        self.killed = False


class _Server:
    """The event loop: start jobs, forward their reports, enforce their deadlines."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.jobs: dict[int, _Job] = {}  # by init pid
        self.by_pipe: dict[int, _Job] = {}
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        self.sel = selectors.DefaultSelector()  # any number of jobs (select() stops at fd 1024)
        self.sel.register(self.sock, selectors.EVENT_READ)
        self.sel.register(self.wake_r, selectors.EVENT_READ)

    def run(self) -> None:
        while True:
            deadlines = [j.deadline for j in self.jobs.values() if j.status_fd >= 0]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            for key, _ in self.sel.select(timeout):
                fd = key.fd
                if fd == self.wake_r:
                    with contextlib.suppress(OSError):
                        os.read(self.wake_r, 4096)
                elif fd in self.by_pipe:
                    self._read_report(self.by_pipe[fd])
                elif not self._request():
                    self._shutdown()
                    return
            self._reap()
            now = time.monotonic()
            for job in list(self.jobs.values()):
                if job.status_fd >= 0 and now >= job.deadline:
                    self._kill(job)

    def _request(self) -> bool:
        try:
            msg, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 16)
        except OSError:
            return False
        if not msg:
            return False
        try:
            request = json.loads(msg)
            if request.get("op") == "job":
                self._start(request, fds)
            elif request.get("op") == "code":
                _load_code(str(request["id"]), fds[0])
            elif request.get("op") == "kill":
                for job in self.jobs.values():
                    if job.id == request.get("id"):
                        self._kill(job)
        except Exception as exc:  # a bad request must not take the server down
            print(f"fork server: bad request: {type(exc).__name__}: {exc}", file=sys.stderr)
        finally:
            for fd in fds:  # the job's init has its own copies; the server dup'ed the status
                with contextlib.suppress(OSError):
                    os.close(fd)
        return True

    def _start(self, request: dict[str, object], fds: list[int]) -> None:
        status_fd = fds[1]
        rep_r, rep_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(rep_r, False)
        try:
            pid = _clone(JOB_NAMESPACES)
        except OSError as exc:  # EAGAIN, ENOMEM: the job fails, the server goes on
            os.close(rep_r)
            os.close(rep_w)
            report = {"start_error": f"fork server: could not start the job: {exc}"}
            with contextlib.suppress(OSError):
                _write(status_fd, json.dumps(report).encode())
            return
        if pid == 0:
            try:
                _init(request, [fd for i, fd in enumerate(fds) if i != 1], rep_w)
            finally:
                os._exit(1)  # never back into the server's loop
        os.close(rep_w)
        timeout_s = float(request["timeout_s"])  # type: ignore[arg-type]
        job = _Job(str(request["id"]), pid, rep_r, os.dup(status_fd), timeout_s)
        self.jobs[pid] = job
        self.by_pipe[rep_r] = job
        self.sel.register(rep_r, selectors.EVENT_READ)

    def _read_report(self, job: _Job) -> None:
        try:
            chunk = os.read(job.rep_r, 1 << 16)
        except BlockingIOError:  # only after the init died: it left no report
            chunk = b""
        except OSError:
            chunk = b""
        job.data += chunk
        if not chunk or job.data.endswith(b"\n"):
            self._finish(job, bytes(job.data) if job.data.endswith(b"\n") else None)

    def _finish(self, job: _Job, line: bytes | None) -> None:
        """Hand the job's report to the host (once) and stop watching its pipe."""
        if job.rep_r in self.by_pipe:
            del self.by_pipe[job.rep_r]
            self.sel.unregister(job.rep_r)
            os.close(job.rep_r)
        if job.status_fd < 0:
            return
        report: dict[str, object]
        if job.killed:
            report = {"timed_out": True, "exit_code": -signal.SIGKILL, "signal": signal.SIGKILL}
        elif line is not None:
            try:
                report = json.loads(line)
            except ValueError:
                report = {"start_error": "fork server: the job's init sent a bad report"}
        else:
            report = {"start_error": "fork server: the job's init died without a report"}
        report.setdefault("leftover", 0)
        report["elapsed_s"] = time.monotonic() - job.start
        with contextlib.suppress(OSError):
            _write(job.status_fd, json.dumps(report).encode())
        os.close(job.status_fd)
        job.status_fd = -1

    def _kill(self, job: _Job) -> None:
        """Past the deadline: the init goes, and the kernel takes its namespace with it."""
        job.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(job.pid, signal.SIGKILL)
        self._finish(job, None)

    def _reap(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = self.jobs.pop(pid, None)
            if job is not None and job.status_fd >= 0:
                if job.rep_r in self.by_pipe:  # a report may still sit in the pipe
                    self._read_report(job)
                self._finish(job, None)

    def _shutdown(self) -> None:
        for job in self.jobs.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(job.pid, signal.SIGKILL)


_CODES: dict[str, types.CodeType] = {}
"""Compiled programs the host sends once (the code harness), by id: a job's program runs the
server's copy, which it shares copy-on-write, instead of unmarshalling (and allocating) its
own: ~170 page faults less per job (measured on the code harness's judge)."""
_MAX_CODES = [16]  # the host's MAX_SERVER_CODES, from the config


def _load_code(code_id: str, fd: int) -> None:
    with mmap.mmap(fd, os.fstat(fd).st_size, mmap.MAP_SHARED, mmap.PROT_READ) as blob:
        code = marshal.loads(blob)
    if not isinstance(code, types.CodeType):
        raise TypeError(f"code {code_id!r} is a {type(code).__name__}, not code")
    _CODES.pop(code_id, None)
    _CODES[code_id] = code
    while len(_CODES) > _MAX_CODES[0]:
        del _CODES[next(iter(_CODES))]
    gc.freeze()  # the jobs neither scan nor copy it


def serve(sock: socket.socket) -> None:
    """Start a job per request until the host closes its end."""
    _Server(sock).run()


# -- the job's init (PID 1 of its namespace) -------------------------------------------------


def _mounts() -> list[tuple[str, int, str]]:
    """(mount point, mount flags, filesystem type) of the mount visible at each mount point
    (the last one mounted there; the ones below it cannot be reached)."""
    found: dict[str, tuple[int, str]] = {}
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields = left.split()
            flags = 0
            for opt in fields[5].split(","):
                flags |= _MOUNT_FLAGS.get(opt, 0)
            point = _unescape(fields[4])
            found.pop(point, None)  # keep mount order: a later mount covers an earlier one
            found[point] = (flags, right.split()[0])
    return [(point, flags, fstype) for point, (flags, fstype) in found.items()]


def _plan_filesystem() -> None:
    """Work out once, in the server, what each job's init does to its copy of the server's
    mounts: every writable one made read-only (device nodes bound into /dev aside: writing to
    them is not storing), /proc and devpts replaced."""
    remounts: list[tuple[str, int]] = []
    for point, flags, fstype in _mounts():
        if flags & MS_RDONLY or fstype == "devpts" or point == "/proc":
            continue
        if point.startswith("/proc/") or not os.path.isdir(point) or os.path.islink(point):
            continue
        remounts.append((point, flags))
    _FS_PLAN["remount"] = remounts
    # Read-only binds that bwrap placed under /tmp or /dev/shm (an interpreter or virtualenv
    # living there, e.g. a CI checkout in /tmp): the job's fresh tmpfs would hide them, so
    # each job's init carries them over (open_tree + move_mount).
    _FS_PLAN["carry"] = [
        point
        for point, flags, _ in _mounts()
        if flags & MS_RDONLY and point.startswith(("/tmp/", "/dev/shm/")) and os.path.isdir(point)
    ]
    _FS_PLAN["shm"] = os.path.isdir("/dev/shm")
    _FS_PLAN["pts"] = os.path.isdir("/dev/pts")


_FS_PLAN: dict[str, object] = {}


_OPEN_TREE, _MOVE_MOUNT = 428, 429  # the same numbers on every architecture
_AT_FDCWD = -100
_OPEN_TREE_CLONE, _AT_RECURSIVE, _MOVE_F_EMPTY = 1, 0x8000, 0x4


def _open_tree(path: str) -> int:
    """A detached copy of the mount at ``path`` (and below), to re-attach elsewhere."""
    flags = _OPEN_TREE_CLONE | _AT_RECURSIVE | os.O_CLOEXEC
    fd = int(_libc.syscall(_OPEN_TREE, _AT_FDCWD, path.encode(), flags))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"open_tree {path}: {os.strerror(err)}")
    return fd


def _isolate_filesystem(workdir: str, tmpfs_mb: int) -> None:
    """Everything inherited read-only; a private /tmp (holding the working directory),
    /dev/shm, devpts and /proc."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    tmp_opts = f"size={tmpfs_mb}m,mode=1777"
    for point, flags in _FS_PLAN["remount"]:  # type: ignore[attr-defined]
        _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags, None)
    carried = [(point, _open_tree(point)) for point in _FS_PLAN.get("carry", ())]  # type: ignore[attr-defined]
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, tmp_opts)
    if _FS_PLAN["shm"]:
        _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, tmp_opts)
    for point, fd in carried:
        os.makedirs(point, exist_ok=True)
        _check(
            int(_libc.syscall(_MOVE_MOUNT, fd, b"", _AT_FDCWD, point.encode(), _MOVE_F_EMPTY)),
            f"move_mount {point}",
        )
        os.close(fd)
    if _FS_PLAN["pts"]:
        _mount(
            "devpts",
            "/dev/pts",
            "devpts",
            MS_NOSUID | MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=620",
        )
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    for name in _PROC_COVERS:
        path = f"/proc/{name}"
        if os.path.exists(path):
            _mount(path, path, None, MS_BIND | MS_REC, None)
            _mount(
                None,
                path,
                None,
                MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                None,
            )
    os.makedirs(os.path.join(workdir, ".tmp"), mode=0o700)


def _loopback_up() -> None:
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s, siocgifflags, req))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sh22x", b"lo", flags | iff_up))


def _fresh_session_keyring() -> None:
    """Keyrings are not namespaced by mount or PID: give the job its own session keyring so
    it cannot leave keys for another job."""
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is not None:
        _libc.syscall(numbers[1], KEYCTL_JOIN_SESSION_KEYRING, None)


def _init(request: dict[str, object], fds: list[int], rep_w: int) -> None:
    """The job's PID 1, cloned by the server into fresh namespaces: set the job up, run the
    program, then kill and reap everything left and report before exiting (tearing down a
    mount namespace takes a few ms that the host need not wait for)."""
    report: dict[str, object] = {}
    try:
        _close_all_but({0, 1, 2, rep_w, *fds})
        payload_fd, out_fd, err_fd, *rest = fds
        stdin_fd = rest.pop(0) if request.get("stdin") else -1
        if request.get("cgroup"):  # the job's pids cgroup, opened for us by the host
            cgroup_fd = rest.pop(0)
            _write(cgroup_fd, b"0")
            os.close(cgroup_fd)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the server goes: the job goes
        signal.set_wakeup_fd(-1)
        for sig in _CHANGED_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        sandbox_uid = int(request.get("uid", 65534))  # type: ignore[call-overload]
        outer_uid, outer_gid = _OUTER_IDS
        for name, line in (
            ("setgroups", "deny"),
            ("uid_map", f"{sandbox_uid} {outer_uid} 1"),
            ("gid_map", f"{sandbox_uid} {outer_gid} 1"),
        ):
            fd = os.open(f"/proc/self/{name}", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        size = os.fstat(payload_fd).st_size
        payload = mmap.mmap(payload_fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        os.close(payload_fd)
        (head_len,) = struct.unpack_from("<Q", payload, 0)
        head = json.loads(bytes(payload[8 : 8 + head_len]))
        workdir = str(request["workdir"])
        _isolate_filesystem(workdir, int(request.get("tmpfs_mb", 1024)))  # type: ignore[call-overload]
        _loopback_up()
        _fresh_session_keyring()
        _write_files(workdir, head, payload, 8 + head_len)
        code = _CODES.get(str(request.get("code_id", "")))
        if code is not None and code.co_filename != os.path.join(workdir, "main.py"):
            code = None  # compiled for another path: tracebacks must name this one
        os.chdir(workdir)
        start_r, start_w = os.pipe2(os.O_CLOEXEC)
    except BaseException as exc:
        _report(rep_w, {"start_error": f"job setup failed: {type(exc).__name__}: {exc}"})
    start = time.monotonic()
    program = os.fork()
    if program == 0:
        try:
            os.close(start_r)
            _program(request, head, workdir, (stdin_fd, out_fd, err_fd), start_w, code)
        finally:
            os._exit(127)  # never back into the init's code
    os.close(start_w)
    for fd in (stdin_fd, out_fd, err_fd):
        if fd >= 0:
            os.close(fd)
    status = None
    while status is None:  # reap everything; the job ends when the program does
        pid, wait_status = os.waitpid(-1, 0)
        if pid == program:
            status = wait_status
    with os.fdopen(start_r, "rb") as fh:  # the program's last words if it could not start
        start_error = fh.read().decode("utf-8", "replace")
    report: dict[str, object] = {"elapsed_s": time.monotonic() - start}
    if start_error:
        report["start_error"] = start_error
    elif os.WIFSIGNALED(status):
        report["signal"] = os.WTERMSIG(status)
        report["exit_code"] = -os.WTERMSIG(status)
    else:
        report["exit_code"] = os.WEXITSTATUS(status)
    report["leftover"] = _kill_the_rest(float(request.get("kill_budget_s", 2.0)))  # type: ignore[arg-type]
    _report(rep_w, report)


def _kill_the_rest(budget_s: float) -> int:
    """SIGKILL every other process in the namespace (detached daemons, a fork bomb) and reap
    them all; the number still there after ``budget_s``."""
    end = time.monotonic() + budget_s
    while True:
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)  # from PID 1: everyone in the namespace but itself
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return 0
        if pid == 0:
            if time.monotonic() > end:
                return len([p for p in os.listdir("/proc") if p.isdigit()]) - 1
            time.sleep(0.0005)


def _report(rep_w: int, report: dict[str, object]) -> None:
    """Hand the report to the server, which forwards it to the host at once; then exit."""
    with contextlib.suppress(OSError):
        _write(rep_w, json.dumps(report).encode() + b"\n")
    os._exit(0)


def _write_files(workdir: str, head: dict[str, object], payload: mmap.mmap, offset: int) -> None:
    """Write main.py and the job's files out of the payload."""
    view = memoryview(payload)
    pos = offset
    code_size = int(head["code_size"])  # type: ignore[call-overload]
    names = [(str(n), int(s)) for n, s in head["files"]]  # type: ignore[attr-defined]
    for name, size in [("main.py", code_size), *names]:
        path = os.path.join(workdir, name)
        parent = os.path.dirname(path)
        if parent != workdir:
            os.makedirs(parent, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            _write(fd, view[pos : pos + size])
        finally:
            os.close(fd)
        pos += size
    view.release()
    payload.close()  # before the program starts: its address-space limit is its own


# -- the program ------------------------------------------------------------------------------

_STARTUP_SIGNALS: dict[int, object] = {}
"""Signal dispositions a fresh interpreter starts with (SIGINT's handler, SIGPIPE and SIGXFSZ
ignored): recorded by the server before it changes any."""
_CHANGED_SIGNALS: list[int] = []


def _apply_rlimits(limits: dict[str, list[int]]) -> None:
    for name, (soft, hard) in limits.items():
        which = getattr(resource, name, None)
        if which is None:
            continue
        _, cur_hard = resource.getrlimit(which)
        if cur_hard != resource.RLIM_INFINITY:
            hard = cur_hard if hard == -1 else min(hard, cur_hard)
            soft = hard if soft == -1 else min(soft, hard)
        resource.setrlimit(which, (soft, hard))


def _std_streams() -> None:
    """Fresh ``sys.std*`` on fds 0-2, made the way interpreter start-up makes them."""
    made = []
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        old = getattr(sys, f"__{name}__", None) or getattr(sys, name)
        buffered = open(fd, mode + "b", closefd=False)  # noqa: SIM115 - lives as sys.std*
        stream = io.TextIOWrapper(
            buffered,
            encoding=getattr(old, "encoding", "utf-8"),
            errors=getattr(old, "errors", "strict"),
            newline="\n",
            line_buffering=fd == 2 or os.isatty(fd),
        )
        stream.mode = mode  # type: ignore[misc]
        made.append((name, stream))
    for name, stream in made:
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _program(
    request: dict[str, object],
    head: dict[str, object],
    workdir: str,
    stdio: tuple[int, int, int],
    start_w: int,
    code: types.CodeType | None,
) -> None:
    try:
        os.setsid()
        stdin_fd, out_fd, err_fd = stdio
        if stdin_fd < 0:
            stdin_fd = os.open(os.devnull, os.O_RDONLY)
        for src, target in ((stdin_fd, 0), (out_fd, 1), (err_fd, 2)):
            if src != target:
                os.dup2(src, target)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        for sig in _CHANGED_SIGNALS:
            signal.signal(sig, _STARTUP_SIGNALS.get(sig, signal.SIG_DFL))
        env = {str(k): str(v) for k, v in head["env"].items()}  # type: ignore[attr-defined]
        for key in set(os.environ) - set(env):  # the server's own environment, mostly shared
            del os.environ[key]
        for key, value in env.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        path = os.path.join(workdir, "main.py")
        _apply_rlimits(request["rlimits"])  # type: ignore[arg-type]
        _drop_all_capabilities()
    except BaseException as exc:
        with contextlib.suppress(OSError):
            _write(start_w, f"could not start the program: {type(exc).__name__}: {exc}".encode())
        os._exit(127)
    _close_all_but({0, 1, 2})
    _run_main(path, workdir, code)


def _reset_interpreter(path: str, workdir: str) -> types.ModuleType:
    """What a fresh ``python -s main.py`` would have: argv, path, a new ``__main__``, stdio."""
    sys.argv = ["main.py"]
    if hasattr(sys, "orig_argv"):
        sys.orig_argv = [sys.executable, "-s", "main.py"]
    sys.path_importer_cache.pop("", None)
    sys.path[0] = workdir
    importlib.invalidate_caches()
    for name, attr, value in (("tempfile", "tempdir", None), ("linecache", "cache", {})):
        module = sys.modules.get(name)
        if module is not None:
            setattr(module, attr, value)
    import atexit

    atexit._clear()
    _std_streams()
    from importlib.machinery import SourceFileLoader

    main = types.ModuleType("__main__")
    main.__dict__.update(
        __file__=path,
        __cached__=None,
        __builtins__=sys.modules["builtins"],
        __loader__=SourceFileLoader("__main__", path),
        __annotations__={},
    )
    sys.modules["__main__"] = main
    return main


def _run_main(path: str, workdir: str, code: types.CodeType | None) -> None:
    status = 0
    interrupted = False
    try:
        main = _reset_interpreter(path, workdir)
        if code is None:
            with open(path, "rb") as fh:
                source = fh.read()
            code = compile(source, path, "exec", dont_inherit=True)
        exec(code, main.__dict__)
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException as exc:
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        exc.__traceback__ = tb  # from the program's own frames on, as python main.py shows it
        with contextlib.suppress(BaseException):
            sys.excepthook(type(exc), exc, tb)
        status = 1
        interrupted = isinstance(exc, KeyboardInterrupt)
    os._exit(_finalize(status, interrupted))


def _exit_status(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(BaseException):
        print(code, file=sys.stderr)
    return 1


def _finalize(status: int, interrupted: bool) -> int:
    """Interpreter shutdown: join non-daemon threads, run atexit handlers, flush stdio."""
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()  # type: ignore[attr-defined]
        except SystemExit as exc:
            status = _exit_status(exc)
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                sys.excepthook(type(exc), exc, exc.__traceback__)
    import atexit

    atexit._run_exitfuncs()
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name, None)
        try:
            if stream is not None:
                stream.flush()
        except BaseException:
            if name == "stdout" and status == 0:
                status = 120  # what CPython exits with when stdout cannot be flushed
    if interrupted:  # CPython ends an uncaught KeyboardInterrupt by SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return status


def main() -> None:
    config = json.loads(sys.argv[1])
    sock = socket.socket(fileno=int(config["fd"]))
    try:
        info = _prepare_server(config)
        info["ready"] = True
    except BaseException as exc:
        info = {"ready": False, "error": f"{type(exc).__name__}: {exc}"}
    sock.send(json.dumps(info).encode())
    if info["ready"]:
        serve(sock)


if __name__ == "__main__":
    main()
