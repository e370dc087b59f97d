"""HumanEval+ per-input time limits (the harness's ``_InputClock``): the timer is armed only
when no earlier deadline is, so most inputs cost no system call, yet each input still times
out exactly at its own limit, and an input never times out for an earlier input's."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.code_harness import TimeLimit, _InputClock
from verifiers import Status
from verifiers.code import CodeVerifier


@pytest.fixture
def clock() -> Iterator[_InputClock]:
    clock = _InputClock()
    previous = signal.signal(signal.SIGALRM, clock.on_alarm)
    try:
        yield clock
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _run(clock: _InputClock, limit: float, seconds: float) -> float:
    """One input that spins ``seconds`` under ``limit``; how long it ran."""
    start = time.perf_counter()
    clock.start(limit)
    try:
        _spin(seconds)
    finally:
        clock.running = False
    return time.perf_counter() - start


def test_a_short_limit_after_a_long_one_still_times_out_at_its_own(clock: _InputClock) -> None:
    _run(clock, 5.0, 0.0)  # armed for 5 s
    start = time.perf_counter()
    with pytest.raises(TimeLimit):
        _run(clock, 0.2, 3.0)  # earlier than the armed deadline: armed again
    assert 0.2 <= time.perf_counter() - start < 1.0


def test_inputs_within_their_limits_never_time_out_for_an_earlier_deadline(
    clock: _InputClock,
) -> None:
    """Eight inputs of 0.06 s under 0.15 s limits: the first deadline passes during the
    third input, which has time left, so the alarm re-arms instead of raising."""
    for _ in range(8):
        assert _run(clock, 0.15, 0.06) < 0.15
    with pytest.raises(TimeLimit):  # and the clock still works afterwards
        _run(clock, 0.15, 2.0)


def test_an_alarm_between_inputs_is_ignored_and_the_next_input_arms_again(
    clock: _InputClock,
) -> None:
    _run(clock, 0.05, 0.0)
    _spin(0.15)  # the 0.05 s deadline passes here, between inputs: nothing raised
    assert clock.armed == float("inf")
    start = time.perf_counter()
    with pytest.raises(TimeLimit):
        _run(clock, 0.1, 3.0)
    assert time.perf_counter() - start < 1.0


def test_a_program_of_many_inputs_each_within_its_limit_passes(tmp_path: Path) -> None:
    """End to end: six inputs of 0.12 s each under a 0.5 s limit (0.72 s in all, past the
    first input's deadline) pass; the same program slower on one input times out there."""
    body = "import time\ndef f(x):\n    time.sleep(0.12)\n    return x\n"
    ref = json.dumps(
        {
            "kind": "humanevalplus",
            "prompt": "def f(x):\n",
            "entry_point": "f",
            "canonical": body,
            "base_input": [[i] for i in range(6)],
            "plus_input": [],
            "atol": 0,
        }
    )
    v = CodeVerifier(cache_dir=str(tmp_path), min_time_limit_s=0.5, time_limit_factor=1.0)
    assert v.verify(f"```python\n{body}```", ref).status is Status.CORRECT
    slow = body.replace("time.sleep(0.12)", "time.sleep(0.12 if x != 4 else 5)")
    verdict = v.verify(f"```python\n{slow}```", ref)
    assert verdict.status is Status.TIMEOUT, verdict.reason
    assert "input #4" in verdict.reason, verdict.reason


TRICKS = {
    "cancels the timer": "import signal\ndef f(x):\n    signal.setitimer(signal.ITIMER_REAL, 0)\n"
    "    while x == 2:\n        pass\n    return x\n",
    "catches the alarm": "def f(x):\n    while x == 2:\n        try:\n            while True:\n"
    "                pass\n        except BaseException:\n            pass\n    return x\n",
    "runs one long call in C": "def f(x):\n    if x == 2:\n        return sum(range(10**12))\n"
    "    return x\n",  # signal handlers run between bytecodes: the alarm waits for it
}


THREE = json.dumps(
    {
        "kind": "humanevalplus",
        "prompt": "def f(x):\n",
        "entry_point": "f",
        "canonical": "def f(x):\n    return x\n",
        "base_input": [[0], [1], [2]],
        "plus_input": [],
        "atol": 0,
    }
)


@pytest.mark.parametrize("trick", list(TRICKS))
def test_a_program_that_escapes_its_alarm_is_ended_once_silent_too_long(
    tmp_path: Path, trick: str
) -> None:
    """The alarm is the program's own process's: one that cancels the timer, catches the
    alarm or never returns to the interpreter is ended by its judge once it has sent nothing
    for longer than it could within the limits (SEND_EVERY_S + the longest limit +
    STALL_MARGIN_S = 1.3 s here), not at the sandbox's limit, and the reason says so."""
    v = CodeVerifier(cache_dir=str(tmp_path), min_time_limit_s=0.2)
    start = time.monotonic()
    verdict = v.verify(f"```python\n{TRICKS[trick]}```", THREE)
    assert verdict.status is Status.TIMEOUT, verdict.reason
    silent = re.search(r"sent nothing for ([0-9.]+) s from base input #0 \[0\] on", verdict.reason)
    assert silent and 1.3 <= float(silent.group(1)) < 5, verdict.reason
    assert "longer than its longest input limit (0.2 s) allows" in verdict.reason
    assert "the per-input alarm did not end it" in verdict.reason
    assert time.monotonic() - start < 10


def test_a_program_that_keeps_escaping_its_alarm_is_ended_at_its_whole_budget(
    tmp_path: Path,
) -> None:
    """One that catches every alarm but still answers each input within the silence bound
    (1 s an input against 0.2 s limits) is ended when its whole budget, 1.5 x the limits' sum
    + 2 s = 2.9 s, has passed."""
    body = (
        "import time\ndef f(x):\n    end = time.perf_counter() + 1.0\n"
        "    while time.perf_counter() < end:\n        try:\n"
        "            while time.perf_counter() < end:\n                pass\n"
        "        except BaseException:\n            pass\n    return x\n"
    )
    v = CodeVerifier(cache_dir=str(tmp_path), min_time_limit_s=0.2)
    verdict = v.verify(f"```python\n{body}```", THREE)
    assert verdict.status is Status.TIMEOUT, verdict.reason
    assert "ran past its whole budget of 2.9 s from base input #" in verdict.reason, verdict.reason
