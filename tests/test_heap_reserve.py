"""A program's process keeps the small-object memory it churns mapped (the harness's
``_Heap``): CPython unmaps an emptied arena at once, so a function that builds and drops
millions of small objects per call has their pages faulted in again on every call. Each case
runs in a fresh interpreter, whose heap is what a sandboxed program's process starts from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PROBE = """
import json, resource, sys
sys.path.insert(0, {root!r})
from sandbox.code_harness import _Heap

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def churn(calls):
    before = faults()
    for _ in range(calls):
        strings = [str(i) for i in range(400_000)]  # ~26 MB of small objects, then dropped
        del strings
    return faults() - before

if {as_limit_mb}:
    limit = {as_limit_mb} << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
heap = _Heap()
quiet = _Heap()
quiet.check()  # nothing churned since it was made: no reserve
before = churn({calls})
heap.check()
after = churn({calls})
print(json.dumps({{"before": before, "after": after, "pins": len(heap.pins),
                  "quiet_pins": len(quiet.pins), "looks_again": heap.next_check < 1e300}}))
"""


def _probe(calls: int = 3, as_limit_mb: int = 0) -> dict[str, object]:
    code = _PROBE.format(root=str(ROOT), calls=calls, as_limit_mb=as_limit_mb)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_churned_arenas_stay_mapped_after_a_reserve() -> None:
    got = _probe()
    # Without the reserve every call maps and faults in its ~26 MB again (~6k pages a call).
    assert got["before"] >= 3 * 4096, got
    # With it the arenas of the reserve (64 MiB, one pinned block per 512 KiB) are reused.
    assert got["pins"] >= 60, got
    assert got["after"] < got["before"] / 5, got
    assert not got["looks_again"], got  # once
    assert got["quiet_pins"] == 0, got  # a process that did not churn reserves nothing


def test_no_reserve_beyond_a_sixteenth_of_the_address_space_limit() -> None:
    # 768 MiB of address space: 48 MiB may be reserved, less than the reserve.
    got = _probe(as_limit_mb=768)
    assert got["before"] >= 3 * 4096, got
    assert got["pins"] == 0 and not got["looks_again"], got
