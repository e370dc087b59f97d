"""The code verifier and the HumanEval / HumanEval+ / BigCodeBench tasks.

Default tests use a slice of each benchmark; ``-m slow`` runs the full acceptance sets
(canonical 164/164 and ``return None`` 0/164 on HumanEval and HumanEval+, BigCodeBench-Hard's
canonical pass rate over the tasks whose libraries are installed).
"""

from __future__ import annotations

import collections
import json
import platform
import time
from pathlib import Path

import pytest

import sandbox
import verifiers
from brite_envs.data import DataSource
from brite_envs.errors import DataNotAvailableError, EnvConfigError
from brite_envs.tasks.code_tasks import BigCodeBench, BigCodeBenchHard, HumanEval, HumanEvalPlus
from brite_envs.types import Problem
from tests.helpers import plus_reference
from verifiers import Status, VerifierConfigError
from verifiers.code import (
    CodeVerifier,
    CodeVerifierConfig,
    build_program,
    clear_oracle_cache,
    extract_code,
)

PROMPT = 'def add(a: int, b: int) -> int:\n    """Add two numbers."""\n'
TEST = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n"
REF = json.dumps({"kind": "humaneval", "prompt": PROMPT, "entry_point": "add", "test": TEST})


@pytest.fixture(scope="module")
def verifier() -> CodeVerifier:
    return CodeVerifier(timeout_s=2)


def _summary(verdicts: list[verifiers.Verdict]) -> collections.Counter[str]:
    return collections.Counter(v.status.value for v in verdicts)


# -- extraction -----------------------------------------------------------------------------


def test_extract_takes_the_last_block_defining_the_entry_point() -> None:
    text = (
        "First try:\n```python\ndef add(a, b):\n    return a - b\n```\nFixed:\n"
        "```python\ndef add(a, b):\n    return a + b\n```\nUsage:\n```python\nprint(add(1, 2))\n```"
    )
    assert extract_code(text, "add") == "def add(a, b):\n    return a + b\n"
    assert extract_code("```\ndef add(a, b):\n    return a + b", "add") is not None  # unclosed
    assert extract_code("", "add") is None
    assert extract_code("   \n", "add") is None


def test_build_program_handles_full_functions_bodies_and_prose() -> None:
    full, cand = build_program("def add(a, b):\n    return a + b\n", PROMPT, "add")
    assert full.startswith(PROMPT) and cand.startswith("def add")
    body, cand = build_program("    return a + b\n", PROMPT, "add")
    assert body == PROMPT + "    return a + b\n"
    unindented, _ = build_program("return a + b", PROMPT, "add")
    assert unindented == PROMPT + "    return a + b\n"
    prose = "Sure!\n\ndef add(a, b):\n    return a + b\n\nThis adds the numbers."
    program, cand = build_program(prose, PROMPT, "add")
    assert "Sure" not in cand and "This adds" not in cand
    compile(program, "x", "exec")
    continuation, _ = build_program("    return a + b\n\nThe body above adds them.", PROMPT, "add")
    compile(continuation, "x", "exec")


# -- verdicts ---------------------------------------------------------------------------------


def test_verdict_statuses(verifier: CodeVerifier) -> None:
    cases = {
        "```python\ndef add(a, b):\n    return a + b\n```": Status.CORRECT,
        "    return a + b\n": Status.CORRECT,
        "```python\ndef add(a, b):\n    return a * b\n```": Status.INCORRECT,
        "```python\ndef add(a, b):\n    while True:\n        pass\n```": Status.TIMEOUT,
        "I cannot solve this.": Status.UNPARSABLE,
        "```python\n```": Status.UNPARSABLE,
        "```python\ndef add(a, b)\n    return a + b\n```": Status.INCORRECT,
        "```python\ndef add(a, b):\n    return a + b\ndel add\n```": Status.INCORRECT,
        "```python\nimport nonexistent_module_xyz\ndef add(a, b):\n    return a + b\n```": (
            Status.INCORRECT
        ),
    }
    verdicts = verifier.verify_many(list(cases), [REF] * len(cases))
    for (completion, expected), v in zip(cases.items(), verdicts, strict=True):
        assert v.status is expected, (completion, v)
        assert v.score == (1.0 if expected is Status.CORRECT else 0.0)
    wrong = verdicts[2]
    assert "assert candidate(1, 2) == 3" in wrong.reason  # the first failing test is named
    assert "SyntaxError" in verdicts[6].reason
    assert "does not define `add`" in verdicts[7].reason
    assert "nonexistent_module_xyz" in verdicts[8].reason
    assert verdicts[0].extracted and "return a + b" in verdicts[0].extracted


def test_reward_hacks_do_not_pass(verifier: CodeVerifier) -> None:
    hacks = [
        "import sys\nsys.exit(0)",
        "import os\nos._exit(0)",
        'print(\'BRITE-RESULT x {"outcome": "passed"}\')\nimport os\nos._exit(0)',
        "class Eq:\n    def __eq__(self, other):\n        return True\n"
        "def add(a, b):\n    return Eq()",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
        "raise SystemExit(0)",
    ]
    completions = [f"```python\n{code}\n```" for code in hacks]
    verdicts = verifier.verify_many(completions, [REF] * len(hacks))
    for code, v in zip(hacks, verdicts, strict=True):
        assert v.status is Status.INCORRECT, (code, v)


def test_humaneval_program_cannot_report_a_pass(verifier: CodeVerifier) -> None:
    """check() runs in the judge, on a proxy of the program: the program's process can report
    what it likes, rewrite the tests in its own copy, or read them; none of it passes."""
    harness = "sys.modules['__main__']"
    hacks = {
        "pass from add": f"import sys\ndef add(a, b):\n    {harness}.report('passed')",
        "pass at import": f"import sys\n{harness}.report('passed')",
        "harness error": f"import sys\ndef add(a, b):\n    {harness}.report('harness_error')",
        "own check": "def check(candidate):\n    pass\ndef add(a, b):\n    return 0",
        "read the tests": "def add(a, b):\n    return open('tests.py').read()",
    }
    completions = [f"```python\n{code}\n```" for code in hacks.values()]
    verdicts = dict(zip(hacks, verifier.verify_many(completions, [REF] * len(hacks)), strict=True))
    for name, v in verdicts.items():
        assert v.status is Status.INCORRECT, (name, v)
    assert "reported 'passed' itself" in verdicts["pass from add"].reason
    assert "reported 'passed' itself" in verdicts["pass at import"].reason
    right = verifier.verify("```python\ndef add(a, b):\n    return a + b\n```", REF)
    assert right.status is Status.CORRECT, right
    # what the program raised is reported as its own failure
    raised = verifier.verify("```python\ndef add(a, b):\n    raise KeyError('k')\n```", REF)
    assert raised.status is Status.INCORRECT and "KeyError" in raised.reason, raised


def test_humaneval_prompt_that_is_a_bare_header_still_grades(verifier: CodeVerifier) -> None:
    """The judge runs the prompt for its helpers; a prompt with no docstring is a bare header
    (a syntax error on its own), which must not turn every answer into a test error."""
    ref = json.dumps(
        {"kind": "humaneval", "prompt": "def add(a, b):\n", "entry_point": "add", "test": TEST}
    )
    right, wrong = verifier.verify_many(["    return a + b\n", "    return a - b\n"], [ref, ref])
    assert right.status is Status.CORRECT, right
    assert wrong.status is Status.INCORRECT, wrong


def test_grading_failures_are_errors_not_incorrect(verifier: CodeVerifier) -> None:
    bcb = json.dumps(
        {
            "kind": "bigcodebench",
            "prompt": "def task_func():\n",
            "entry_point": "task_func",
            "test": "import unittest\nclass TestCases(unittest.TestCase):\n    pass\n",
            "libs": ["os", "library_that_is_not_installed_xyz"],
        }
    )
    v = verifier.verify("    return 1\n", bcb)
    assert v.status is Status.ERROR and "library_that_is_not_installed_xyz" in v.reason
    for bad in ("not json", json.dumps({"kind": "cobol"}), json.dumps({"kind": "humaneval"})):
        v = verifier.verify("    return 1\n", bad)
        assert v.status is Status.ERROR and "malformed" in v.reason
    # A module the tests need but this machine lacks is a grading failure too.
    needs = json.dumps(
        {
            "kind": "bigcodebench",
            "prompt": "def task_func():\n",
            "entry_point": "task_func",
            "test": "import unittest\nimport absent_test_dep_xyz\n"
            "class TestCases(unittest.TestCase):\n    def test_a(self):\n        pass\n",
            "libs": [],
        }
    )
    v = verifier.verify("    return 1\n", needs)
    assert v.status is Status.ERROR and "absent_test_dep_xyz" in v.reason, v


def test_config_is_validated() -> None:
    with pytest.raises(VerifierConfigError, match="timeout_s must be a number > 0 or None, got -1"):
        CodeVerifier(timeout_s=-1)
    with pytest.raises(VerifierConfigError, match="unknown code verifier option"):
        CodeVerifier(timeuot_s=3)
    with pytest.raises(VerifierConfigError, match="backend must be one of"):
        CodeVerifier(backend="quantum")
    assert isinstance(verifiers.get("code", timeout_s=3), CodeVerifier)


# -- HumanEval --------------------------------------------------------------------------------


def _check_slice(task: HumanEval, problems: list[Problem]) -> None:
    start = time.perf_counter()
    ref = task.grade_many(problems, [task.reference_completion(p) for p in problems])
    wrong = task.grade_many(problems, [task.wrong_completion(p) for p in problems])
    took = time.perf_counter() - start
    failed_ref = [(p.id, v.reason) for p, v in zip(problems, ref, strict=True) if not v.correct]
    passed_wrong = [p.id for p, v in zip(problems, wrong, strict=True) if v.correct]
    print(
        f"{task.name}: canonical {sum(v.correct for v in ref)}/{len(problems)}, return-None "
        f"{sum(v.correct for v in wrong)}/{len(problems)} ({_summary(wrong)}) in {took:.1f}s"
    )
    assert not failed_ref, failed_ref
    assert not passed_wrong, passed_wrong
    assert all(v.status is Status.INCORRECT for v in wrong), _summary(wrong)


def test_humaneval_loads_and_prompts(data_dir: Path) -> None:
    task = HumanEval()
    assert task.data_location().startswith("local:")
    assert len(task) == 164
    p = task[0]
    assert p.id == "HumanEval/0" and p.meta.extra["entry_point"] == "has_close_elements"
    assert p.reference.startswith(p.question)
    prompt = task.render_prompt(p)
    assert p.question.strip() in prompt and "```python" in prompt
    hinted = task.render_prompt(p, hinted=True)
    assert p.reference.strip() in hinted
    assert task.unavailable_reason(p) is None


def test_humaneval_slice(data_dir: Path) -> None:
    task = HumanEval()
    _check_slice(task, list(task.problems)[:40])


@pytest.mark.slow
def test_humaneval_all_164(data_dir: Path) -> None:
    task = HumanEval()
    _check_slice(task, list(task.problems))


def test_missing_data_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataNotAvailableError, match=r"HumanEval\.jsonl\.gz"):
        HumanEval(path=tmp_path).problems  # noqa: B018


def test_code_benchmarks_have_one_split_and_say_so() -> None:
    assert HumanEval(split="test").name == "humaneval"  # what the agents pass (env.eval_split)
    for task in (HumanEval, HumanEvalPlus):
        with pytest.raises(
            EnvConfigError, match=r"split must be 'test' \(its only split\), got 'train'"
        ):
            task(split="train")
    with pytest.raises(EnvConfigError, match="split must be 'complete' or 'instruct', got 'test'"):
        BigCodeBench(split="test")  # type: ignore[arg-type]


# -- HumanEval+ -------------------------------------------------------------------------------

# Float outputs with atol, the find_zero oracle, huge exact outputs (digests), plain cases.
PLUS_SLICE = ("HumanEval/0", "HumanEval/2", "HumanEval/4", "HumanEval/15", "HumanEval/32")


def test_humanevalplus_slice_and_oracle_cache(data_dir: Path, tmp_path: Path) -> None:
    clear_oracle_cache()
    task = HumanEvalPlus(verifier_config={"cache_dir": str(tmp_path)})
    assert len(task) == 164
    problems = [task[task.index_of(i)] for i in PLUS_SLICE]
    ref = json.loads(problems[0].verifier_reference)
    assert ref["kind"] == "humanevalplus" and ref["plus_input"] and ref["base_input"]
    _check_slice(task, problems)
    cached = list((tmp_path / "humanevalplus").glob("*.pkl"))
    assert len(cached) == len(PLUS_SLICE)
    verdict = task.grade(problems[0], task.reference_completion(problems[0]))
    assert "base" in verdict.reason and "plus" in verdict.reason
    # A fresh process (empty memory cache) reads the disk cache instead of recomputing.
    clear_oracle_cache()
    start = time.perf_counter()
    again = task.grade_many(problems, [task.reference_completion(p) for p in problems])
    assert all(v.correct for v in again)
    print(f"graded {len(problems)} from the disk cache in {time.perf_counter() - start:.1f}s")


def test_humanevalplus_catches_what_base_tests_miss(data_dir: Path, tmp_path: Path) -> None:
    task = HumanEvalPlus(verifier_config={"cache_dir": str(tmp_path)})
    p = task[task.index_of("HumanEval/0")]
    # Correct on the original tests, wrong for the plus inputs' negative thresholds.
    sloppy = (
        "```python\nfrom typing import List\n\n"
        "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
        "    if len(numbers) > 10:\n        return False\n"
        "    return any(abs(a - b) < threshold for i, a in enumerate(numbers)"
        " for b in numbers[i + 1:])\n```"
    )
    base_task = HumanEvalPlus(base_only=True, verifier_config={"cache_dir": str(tmp_path)})
    assert base_task.grade(base_task[0], sloppy).correct
    v = task.grade(p, sloppy)
    assert v.status is Status.INCORRECT and "plus input" in v.reason, v
    with pytest.raises(EnvConfigError):
        HumanEvalPlus(base_only="yes")  # type: ignore[arg-type]


def test_humanevalplus_reports_the_input_as_given(tmp_path: Path) -> None:
    """The harness no longer copies every input before the call (that cost more than most
    programs); a failure report still shows the input as it was before the program changed it."""
    ref = json.dumps(
        {
            "kind": "humanevalplus",
            "prompt": "def f(xs):\n",
            "entry_point": "f",
            "canonical": "def f(xs):\n    return sorted(xs)\n",
            "base_input": [[[3, 1, 2]], [[5, 4]]],
            "plus_input": [],
            "atol": 0,
        }
    )
    v = CodeVerifier(cache_dir=str(tmp_path))
    mutating = "```python\ndef f(xs):\n    xs.clear()\n    return [0]\n```"
    in_place = "```python\ndef f(xs):\n    xs.sort()\n    return xs\n```"
    wrong, right = v.verify_many([mutating, in_place], [ref, ref])
    assert wrong.status is Status.INCORRECT and "[[3, 1, 2]]" in wrong.reason, wrong
    assert right.status is Status.CORRECT, right


def test_humanevalplus_inputs_as_json_text_grade_as_lists(tmp_path: Path) -> None:
    """The tasks give a reference's inputs as JSON text, which the host passes on without
    decoding; they grade as the same inputs given as lists. Text that is not lists of
    argument lists is the reference's fault, named with the fix (ERROR, never INCORRECT);
    inputs of another type are a malformed reference."""
    canonical = "def f(xs):\n    return sorted(xs)\n"
    base, plus = [[[3, 1, 2]], [[5, 4]]], [[["b", "a"]], [[2.5, -1]]]
    as_lists = plus_reference(canonical, base, plus, prompt="def f(xs):\n")
    as_text = plus_reference(canonical, json.dumps(base), json.dumps(plus), prompt="def f(xs):\n")  # type: ignore[arg-type]
    assert json.loads(as_text)["plus_input"] == json.dumps(plus)
    v = CodeVerifier(cache_dir=str(tmp_path))
    right = "```python\ndef f(xs):\n    return sorted(xs)\n```"
    strs_wrong = (
        "```python\ndef f(xs):\n    return xs if isinstance(xs[0], str) else sorted(xs)\n```"
    )
    broken = plus_reference(canonical, "[[1], 2]", "[]", prompt="def f(xs):\n")  # type: ignore[arg-type]
    neither = plus_reference(canonical, 7, [], prompt="def f(xs):\n")  # type: ignore[arg-type]
    verdicts = v.verify_many(
        [right, right, strs_wrong, strs_wrong, right, right],
        [as_lists, as_text, as_lists, as_text, broken, neither],
    )
    assert [x.status for x in verdicts] == [
        Status.CORRECT,
        Status.CORRECT,
        Status.INCORRECT,
        Status.INCORRECT,
        Status.ERROR,
        Status.ERROR,
    ], verdicts
    assert verdicts[2].reason == verdicts[3].reason and "plus input #0" in verdicts[3].reason
    assert "must be lists of argument lists; base_input[1] is not a list: 2" in verdicts[4].reason
    assert "malformed" in verdicts[5].reason and "'base_input' must be a list" in verdicts[5].reason


def _fenced_f(body: str) -> str:
    return f"```python\ndef f(n):\n{body}\n```"


def test_humanevalplus_large_outputs_are_matched_exactly(tmp_path: Path) -> None:
    """Outputs over 64 KB travel as hashes: a large string is decided by its pickle's hash;
    a large list of floats (compared with a tolerance) is kept whole, so [1, 2] matches
    [1.0, 2.0], as == does."""

    def ref(canonical: str) -> str:
        return plus_reference(canonical, [[100_000], [5]], prompt="def f(n):\n")

    v = CodeVerifier(cache_dir=str(tmp_path))
    text = ref("def f(n):\n    return 'ab' * n\n")
    numbers = ref("def f(n):\n    return [float(i) for i in range(n)]\n")
    reduced = (
        "    import base64, pickle\n"
        "    exp = pickle.loads(base64.b64decode(open('expected.b64').read()))\n"
        "    return exp[0][0] if n > 10 else 'ab' * n"
    )
    cases = [
        (text, "    return 'ab' * n", Status.CORRECT),
        (text, "    return 'ab' * n if n < 10 else 'ab' * (n - 1) + 'aX'", Status.INCORRECT),
        (text, reduced, Status.INCORRECT),  # handing back the hash is not the output
        (numbers, "    return list(range(n))", Status.CORRECT),  # equal ints for floats
        (numbers, "    return [float(i) for i in range(n - 1)] + [0.5]", Status.INCORRECT),
    ]
    verdicts = v.verify_many([_fenced_f(b) for _, b, _ in cases], [r for r, _, _ in cases])
    for (_, body, expected), verdict in zip(cases, verdicts, strict=True):
        assert verdict.status is expected, (body, verdict)
    assert "<large output>" in verdicts[1].reason


def test_humanevalplus_large_outputs_of_other_bytes_are_recomputed(tmp_path: Path) -> None:
    """A large expected output is kept as its pickle's hash; a program whose large output
    pickles otherwise is judged against the output computed again by the reference, with
    evalplus's ``==``. The reference imports only from the standard library then (not what
    the program wrote into the working directory), and a reference that cannot compute it
    again is the grader's error, not the program's."""

    def ref(canonical: str) -> str:
        return plus_reference(canonical, [[5], [100_000]], prompt="def f(n):\n")

    ints = ref("def f(n):\n    return list(range(1, n))\n")
    mixed = ref("def f(n):\n    return [1, 3] + [i / 2 for i in range(4, 2 * n, 2)]\n")
    nan = ref("def f(n):\n    return [float('nan')] * (n > 10) + list(range(n))\n")
    hijack = ref("def f(n):\n    import colorsys\n    return list(range(1, n))\n")
    broken = ref("def f(n):\n    __file__\n    return list(range(1, n))\n")  # only in its file
    stalls = ref(
        "def f(n):\n    import time\n    if '__file__' not in globals():\n"
        "        time.sleep(60)\n    return list(range(1, n))\n"
    )
    planted = (
        "    import builtins, os, pathlib\n"
        "    pathlib.Path(os.getcwd(), 'colorsys.py').write_text(\n"
        "        'import builtins\\nbuiltins.range = lambda *a: [0.5] * 3\\n')\n"
        "    return [0.5] * 3 if n > 10 else list(range(1, n))"
    )
    cases = [
        (ints, "    return [float(i) for i in range(1, n)]", Status.CORRECT),  # equal, other bytes
        (
            ints,
            "    return list(range(1, n - 1 if n > 10 else n)) + [0.5] * (n > 10)",
            Status.INCORRECT,
        ),
        (ints, "    return tuple(range(1, n))", Status.INCORRECT),  # a tuple is not a list
        (mixed, "    return [1.0, 3.0] + [float(i) for i in range(2, n)]", Status.CORRECT),
        (mixed, "    return [1, 3] + [i / 2 for i in range(4, 2 * n, 2)]", Status.CORRECT),
        (
            nan,
            "    return [float('nan')] * (n > 10) + list(range(n))",
            Status.INCORRECT,
        ),  # nan != nan
        (hijack, planted, Status.INCORRECT),
        (broken, "    return [float(i) for i in range(1, n)]", Status.ERROR),
        (stalls, "    return [float(i) for i in range(1, n)]", Status.ERROR),
    ]
    v = CodeVerifier(cache_dir=str(tmp_path))
    verdicts = v.verify_many([_fenced_f(b) for _, b, _ in cases], [r for r, _, _ in cases])
    for (_, body, expected), verdict in zip(cases, verdicts, strict=True):
        assert verdict.status is expected, (body, verdict)
    for n in (1, 5, 6):  # each on the large input (base #1), against the output as a whole
        assert "base input #1" in verdicts[n].reason, verdicts[n]
        assert "<large output>" in verdicts[n].reason, verdicts[n]
    assert "again failed" in verdicts[7].reason, verdicts[7]
    assert "again took longer than" in verdicts[8].reason, verdicts[8]


def _sharing(pairs: list[tuple[str, Status]]) -> list[verifiers.Verdict]:
    """Grade ``sum(range(n))`` against eight references whose outputs two share a job
    (4 jobs, one worker), each reference given as the body of ``f(n)``."""
    assert len(pairs) == 8
    refs = [
        plus_reference(
            "import builtins, collections, decimal, math, os, sys\ndef f(n):\n" + body,
            [[3], [4]],
            prompt="def f(n):\n",
        )
        for body, _ in pairs
    ]
    v = CodeVerifier(CodeVerifierConfig(concurrency=1, oracle_timeout_s=1.0, disk_cache=False))
    clear_oracle_cache()
    verdicts = v.verify_many([_fenced_f("    return sum(range(n))")] * 8, refs)
    for n, ((_, expected), verdict) in enumerate(zip(pairs, verdicts, strict=True)):
        assert verdict.status is expected, (n, verdict)
    return verdicts


def _partner(n: int) -> str:
    """A reference whose outputs (``sum(range(n))``) anything the one before it in its job
    left behind would change or fail."""
    return (
        f"    # partner {n}\n    from fractions import Fraction\n"
        "    def down(k):\n        return 0 if k == 0 else down(k - 1)\n"
        "    bent = (os.getcwd() == '/') + (sys.getrecursionlimit() < 100)\n"
        "    bent += sys.get_int_max_str_digits() != 4300\n"
        "    bent += math.pi != 3.141592653589793\n"
        "    bent += collections.Counter('aab').most_common(1) != [('a', 2)]\n"
        "    bent += os.environ.get('BRITE_PROBE') is not None\n"
        "    bent += len(str(decimal.Decimal(1) / decimal.Decimal(7))) != 30\n"
        "    return down(30) + bent + abs(-n) + int(Fraction(n * (n - 1), 2)) - n"
    )


def test_references_sharing_a_job_cannot_fail_one_another(tmp_path: Path) -> None:
    """Expected outputs are computed for several references in one process (the harness's
    ``io_oracle_many``). A reference that ends the process, runs past its limit or raises
    fails only its own problem; one that leaves what would make the next fail (a module
    changed, another working directory) does not fail it; the recursion and digit limits
    it changed are undone before the next (a job that failed as a whole, and a reference
    that failed in it, run again alone)."""
    verdicts = _sharing(
        [
            ("    os._exit(3)", Status.ERROR),  # ends the shared process
            (_partner(1), Status.CORRECT),
            ("    while True:\n        pass", Status.ERROR),  # past its limit
            (_partner(2), Status.CORRECT),
            (
                "    sys.setrecursionlimit(80)\n    sys.set_int_max_str_digits(1000)\n"
                "    return sum(range(n))",
                Status.CORRECT,
            ),
            (_partner(3), Status.CORRECT),
            (
                "    import fractions\n    fractions.Fraction = None\n    os.chdir('/')\n"
                "    raise ValueError(n)",
                Status.ERROR,
            ),
            (_partner(4), Status.CORRECT),
        ]
    )
    assert "ran past its 1.0 s limit" in verdicts[2].reason, verdicts[2]
    assert "ValueError" in verdicts[6].reason, verdicts[6]


def test_a_reference_cannot_change_the_next_ones_outputs(tmp_path: Path) -> None:
    """A reference that changes ``builtins``, a module's attribute, a class's attribute,
    the environment or ``decimal``'s context (which a fork per reference would have thrown
    away) makes the references after it in its job run alone: their outputs are what they
    would be on their own."""
    _sharing(
        [
            ("    builtins.abs = lambda x: 0\n    return sum(range(n))", Status.CORRECT),
            (_partner(1), Status.CORRECT),
            ("    math.pi = 3\n    return sum(range(n))", Status.CORRECT),
            (_partner(2), Status.CORRECT),
            (
                "    collections.Counter.most_common = lambda self, k=None: []\n"
                "    return sum(range(n))",
                Status.CORRECT,
            ),
            (_partner(3), Status.CORRECT),
            ("    os.environ['BRITE_PROBE'] = '1'\n    return sum(range(n))", Status.CORRECT),
            (_partner(4), Status.CORRECT),
        ]
    )
    _sharing(
        [
            ("    decimal.getcontext().prec = 3\n    return sum(range(n))", Status.CORRECT),
            (_partner(5), Status.CORRECT),
            ("    return sum(range(n))  # 1", Status.CORRECT),
            (_partner(6), Status.CORRECT),
            ("    return sum(range(n))  # 2", Status.CORRECT),
            (_partner(7), Status.CORRECT),
            ("    return sum(range(n))  # 3", Status.CORRECT),
            (_partner(8), Status.CORRECT),
        ]
    )


@pytest.mark.slow
def test_humanevalplus_all_164(data_dir: Path, tmp_path: Path) -> None:
    clear_oracle_cache()
    task = HumanEvalPlus(verifier_config={"cache_dir": str(tmp_path)})
    _check_slice(task, list(task.problems))


# -- BigCodeBench -----------------------------------------------------------------------------

BCB_SLICE = ("BigCodeBench/928", "BigCodeBench/765", "BigCodeBench/509", "BigCodeBench/579")


def test_bigcodebench_loads_both_versions_and_splits(data_dir: Path) -> None:
    full = BigCodeBench()
    assert len(full) == 1140
    assert "BigCodeBench-v0.1.4" in full.data_location()
    assert len(BigCodeBench(version="v0.1.0")) == 1140
    instruct = BigCodeBench(split="instruct")
    p, q = full[0], instruct[0]
    assert p.id == q.id and p.question != q.question and p.reference == q.reference
    assert "```python" in instruct.render_prompt(q)
    with pytest.raises(EnvConfigError, match="split"):
        BigCodeBench(split="chat")  # type: ignore[arg-type]
    with pytest.raises(EnvConfigError, match="version"):
        BigCodeBench(version="v9")


def test_bigcodebench_hard_slice(data_dir: Path) -> None:
    task = BigCodeBenchHard()
    assert len(task) == 148
    missing = [p for p in task.problems if task.unavailable_reason(p)]
    for p in missing[:3]:
        reason = task.unavailable_reason(p)
        v = task.grade(p, task.reference_completion(p))
        assert v.status is Status.ERROR, v
        first = reason.split(": ", 1)[1].split(", ")[0] if reason else ""
        assert first and first in v.reason
    problems = [task[task.index_of(i)] for i in BCB_SLICE]
    skip = {p.id: task.unavailable_reason(p) for p in problems if task.unavailable_reason(p)}
    if skip:
        pytest.skip(f"libraries missing here: {skip}")
    ref = task.grade_many(problems, [task.reference_completion(p) for p in problems])
    failed = [(p.id, v.reason) for p, v in zip(problems, ref, strict=True) if not v.correct]
    assert not failed, failed
    wrong = task.grade_many(problems, [task.wrong_completion(p) for p in problems])
    assert all(v.status is Status.INCORRECT for v in wrong), [v.reason for v in wrong]
    assert "tests failed; first:" in wrong[0].reason


@pytest.mark.slow
def test_bigcodebench_hard_canonical_pass_rate(data_dir: Path) -> None:
    task = BigCodeBenchHard()
    problems = list(task.problems)
    missing = collections.Counter()
    runnable = []
    for p in problems:
        reason = task.unavailable_reason(p)
        if reason:
            missing.update(reason.split(": ", 1)[1].split(", "))
        else:
            runnable.append(p)
    start = time.perf_counter()
    verdicts = task.grade_many(runnable, [task.reference_completion(p) for p in runnable])
    took = time.perf_counter() - start
    # "cannot grade here" (an undeclared library, no network in the sandbox, missing NLTK
    # data) is this machine's limit, not the code's: those tasks are not runnable here either.
    blocked = collections.Counter(
        v.reason.split(": ", 1)[1].split(" (first")[0].split(";")[0]
        for v in verdicts
        if v.status is Status.ERROR and v.reason.startswith("cannot grade here")
    )
    gradable = len(runnable) - sum(blocked.values())
    passed = sum(v.correct for v in verdicts)
    print(
        f"\nBigCodeBench-Hard: {len(problems)} tasks; {len(problems) - len(runnable)} not "
        f"runnable (declared libraries missing: {dict(missing.most_common())}); "
        f"{sum(blocked.values())} more cannot be graded here ({dict(blocked)}); canonical "
        f"passes {passed}/{gradable} = {passed / max(gradable, 1):.1%} of the runnable "
        f"({_summary(verdicts)}) in {took:.0f}s"
    )
    for p, v in zip(runnable, verdicts, strict=True):
        if not v.correct:
            print(f"  {p.id}: {v.status} {v.reason[:200]}")
    # The remaining failures come from library versions newer than the benchmark's pins
    # (pandas 3 removed DataFrame.applymap), not from the sandbox.
    assert passed >= 0.95 * gradable
    assert not any(v.status is Status.UNPARSABLE for v in verdicts)


def test_local_source_layout_is_the_shared_one() -> None:
    assert HumanEval.source == DataSource(
        "humaneval", "HumanEval.jsonl.gz", hub=HumanEval.source.hub
    )
    assert HumanEvalPlus.source.hub is not None
    assert HumanEvalPlus.source.hub.dataset == "evalplus/humanevalplus"


def test_humanevalplus_hub_rows_without_input_lists_use_their_check(
    data_dir: Path, tmp_path: Path
) -> None:
    # Hub exports of HumanEval+ may carry the inputs inside `test` instead of input lists.
    row = HumanEval()[2]
    grading = json.loads(row.verifier_reference)
    record = {
        "task_id": row.id,
        "prompt": grading["prompt"],
        "entry_point": grading["entry_point"],
        "canonical_solution": row.reference[len(grading["prompt"]) :],
        "test": grading["test"],
        "atol": 0,
    }
    path = tmp_path / "HumanEvalPlus.jsonl"
    path.write_text(json.dumps(record) + "\n")
    task = HumanEvalPlus(path=path)
    (p,) = task.problems
    assert json.loads(p.verifier_reference)["kind"] == "humaneval"
    assert task.grade(p, task.reference_completion(p)).correct
    assert task.grade(p, task.wrong_completion(p)).status is Status.INCORRECT


# -- the expected outputs stay out of the candidate's reach (HumanEval+) ------------------------

_SECRET_REF = {
    "kind": "humanevalplus",
    "prompt": "def f(x):\n",
    "entry_point": "f",
    # Not computable by the candidate: it never sees this reference program, only its outputs.
    "canonical": "import hashlib\ndef f(x):\n"
    "    return hashlib.sha256(b'brite-secret-salt' + str(x).encode()).hexdigest()\n",
    "atol": 0,
}

# A candidate that looks for 64-hex-digit strings (the answer's form) everywhere it can reach:
# the files around it, every object in its process, every frame on its stack, and the judge's
# memory, file descriptors and environment through /proc. It returns the first it finds, or a
# report of what it tried, which the verdict's reason shows.
_SCAVENGER = r"""
import gc, os, re, sys, time

HEX = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")

def _strings(obj, depth=0):
    if isinstance(obj, str) and re.fullmatch("[0-9a-f]{64}", obj):
        yield obj
    elif isinstance(obj, (bytes, bytearray)):
        for m in HEX.finditer(bytes(obj)):
            yield m.group().decode()
    elif isinstance(obj, dict) and depth < 6:
        for v in list(obj.values()):
            yield from _strings(v, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)) and depth < 6:
        for v in list(obj):
            yield from _strings(v, depth + 1)

def f(x):
    tried = []
    mine = str(x)  # the input itself is fair game (a control for the scanner)
    found = [s for s in _strings(mine)]
    for name in os.listdir("."):
        try:
            with open(name, "rb") as fh:
                found += list(_strings(fh.read()))
        except IsADirectoryError:
            continue
        except OSError as exc:
            tried.append(f"file {name}: {type(exc).__name__}")
        try:
            import base64, pickle
            with open(name, "rb") as fh:
                found += list(_strings(pickle.loads(base64.b64decode(fh.read()))))
        except Exception:
            pass
    for obj in gc.get_objects():
        found += list(_strings(obj))
    frame = sys._getframe()
    while frame is not None:
        found += list(_strings(frame.f_locals))
        found += list(_strings(frame.f_globals))
        frame = frame.f_back
    parent = os.getppid()
    time.sleep(0.5)  # let the judge load what it grades with
    for what in ("environ", "cmdline"):
        try:
            with open(f"/proc/{parent}/{what}", "rb") as fh:
                found += list(_strings(fh.read()))
        except OSError as exc:
            tried.append(f"{what}: {type(exc).__name__}")
    denied = set()
    try:
        for fd in os.listdir(f"/proc/{parent}/fd"):
            try:
                with open(f"/proc/{parent}/fd/{fd}", "rb") as fh:
                    found += list(_strings(fh.read(1 << 22)))
            except OSError as exc:
                denied.add(type(exc).__name__)
    except OSError as exc:
        denied.add(type(exc).__name__)
    tried.append(f"fd: {'/'.join(sorted(denied)) or 'read'}")
    try:
        with open(f"/proc/{parent}/maps") as maps, open(f"/proc/{parent}/mem", "rb") as mem:
            for line in maps:
                span, perms, *rest = line.split()
                if not perms.startswith("rw") or len(rest) > 3:  # the heap and anonymous maps
                    continue
                lo, hi = (int(v, 16) for v in span.split("-"))
                try:
                    mem.seek(lo)
                    found += list(_strings(mem.read(min(hi - lo, 1 << 26))))
                except (OSError, ValueError, OverflowError):
                    pass
    except OSError as exc:
        tried.append(f"mem: {type(exc).__name__}")
    found = [s for s in found if s != mine]
    tried.sort(key=lambda t: not t.startswith("mem"))
    return found[0] if found else "found nothing; " + "; ".join(tried)
"""


@pytest.mark.parametrize("variant", ["bwrap-forkserver", "bwrap", "unshare", "none"])
def test_humanevalplus_candidate_cannot_reach_the_expected_outputs(
    variant: str, tmp_path: Path
) -> None:
    from tests.test_sandbox import backend_for

    backend = backend_for(variant)  # skips, saying why, where this machine lacks the variant
    name = f"process-{variant}-for-code"
    if name not in sandbox.available_backends():
        sandbox.register_backend(name, lambda: backend)
    # Time enough to read the judge's whole memory, were it readable.
    config = CodeVerifierConfig(cache_dir=str(tmp_path), backend=name, min_time_limit_s=30)
    v = CodeVerifier(config)
    secret = json.dumps({**_SECRET_REF, "base_input": [[7]], "plus_input": []})
    # Control: the scanner does find a 64-hex answer it can reach (here, in its own input).
    visible_answer = "ab" * 32
    visible = json.dumps(
        {
            **_SECRET_REF,
            "canonical": "def f(x):\n    return x[::-1][::-1]\n",
            "base_input": [[visible_answer]],
            "plus_input": [],
        }
    )
    scavenger = f"```python\n{_SCAVENGER}\n```"
    control = scavenger.replace("found = [s for s in found if s != mine]", "")
    hidden, shown = v.verify_many([scavenger, control], [secret, visible])
    assert shown.status is Status.CORRECT, shown
    assert hidden.status is Status.INCORRECT, hidden
    # It looked, and the judge's memory and descriptors were closed to it.
    assert "found nothing; mem: PermissionError" in hidden.reason, hidden.reason
    assert "fd: PermissionError" in hidden.reason, hidden.reason


def test_humanevalplus_outputs_are_judged_in_order_across_batches(tmp_path: Path) -> None:
    """The candidate's outputs travel to the judge in batches of pickles: each is a snapshot
    taken when it was returned, each stands alone (a repeated string inside one output is a
    back-reference into that output's own pickle), and the first wrong one is reported
    wherever it falls."""
    ref = json.dumps(
        {
            "kind": "humanevalplus",
            "prompt": "def f(x):\n",
            "entry_point": "f",
            "canonical": "def f(x):\n    return [x, x * 2, str(x), str(x)]\n",
            "base_input": [[i] for i in range(1200)],
            "plus_input": [],
            "atol": 0,
        }
    )
    bodies = {
        # One list object, returned and then overwritten by the next call: right at return time.
        "reused": "_out = [0, 0, 0, 0]\ndef f(x):\n"
        "    _out[:] = [x, x * 2, str(x), str(x)]\n    return _out",
        "late": "def f(x):\n    return [x, x * 2 if x != 1100 else -1, str(x), str(x)]",
        "object": "class C:\n    pass\ndef f(x):\n"
        "    return C() if x == 700 else [x, x * 2, str(x), str(x)]",
        # The same string object twice: its pickle refers back to it (the memo).
        "right": "def f(x):\n    s = str(x)\n    return [x, 2 * x, s, s]",
    }
    v = CodeVerifier(cache_dir=str(tmp_path))
    graded = v.verify_many([f"```python\n{b}\n```" for b in bodies.values()], [ref] * 4)
    verdicts = dict(zip(bodies, graded, strict=True))
    assert verdicts["reused"].status is Status.CORRECT, verdicts["reused"]
    assert verdicts["right"].status is Status.CORRECT, verdicts["right"]
    late = verdicts["late"]
    assert late.status is Status.INCORRECT and "#1100" in late.reason, late
    assert "[1100, -1, '1100', '1100']" in late.reason, late
    assert "[1100, 2200, '1100', '1100']" in late.reason, late
    obj = verdicts["object"]
    assert obj.status is Status.INCORRECT and "#700" in obj.reason, obj
    assert "not a built-in value" in obj.reason, obj


def test_humanevalplus_program_cannot_report_a_pass_or_an_excuse(tmp_path: Path) -> None:
    """The program's process can write anything to its judge (it runs in the harness's own
    interpreter): a pass, a harness error, an instant timeout, a network or library excuse, a
    malformed frame. Only failures are taken from it; a pass comes from the judge alone."""
    ref = plus_reference("def f(x):\n    return x + 1\n", [[1], [2]], [[3]])
    harness = "sys.modules['__main__']"
    bodies = {
        "right": "def f(x):\n    return x + 1",
        "pass from f": f"import sys\ndef f(x):\n    {harness}.report('passed')",
        "pass at import": f"import sys\n{harness}.report('passed')\ndef f(x):\n    return x",
        "harness error": f"import sys\ndef f(x):\n    {harness}.report('harness_error')",
        "instant timeout": f"import sys\ndef f(x):\n"
        f"    {harness}.report('timeout', set=0, index=0, limit_s=1.0)",
        "network excuse": "def f(x):\n    raise OSError('Temporary failure in name resolution')",
        "missing library": "def f(x):\n    import not_a_module_anywhere",
        "garbage frame": "import os\ndef f(x):\n    for fd in range(3, 64):\n"
        "        try:\n            os.write(fd, b'Q\\0\\0\\0\\0')\n"
        "        except OSError:\n            pass\n    return x + 1",
    }
    v = CodeVerifier(cache_dir=str(tmp_path))
    graded = v.verify_many([f"```python\n{b}\n```" for b in bodies.values()], [ref] * len(bodies))
    verdicts = dict(zip(bodies, graded, strict=True))
    assert verdicts.pop("right").status is Status.CORRECT
    for name, verdict in verdicts.items():
        assert verdict.status is Status.INCORRECT, (name, verdict)
    assert "reported 'passed' itself" in verdicts["pass from f"].reason
    assert "reported 'harness_error' itself" in verdicts["harness error"].reason
    assert "protocol" in verdicts["garbage frame"].reason


_JUDGE_ATTACKS = r"""
import ctypes, fcntl, os, resource, signal

def f(x):
    judge, group = os.getppid(), os.getpgid(os.getppid())
    libc = ctypes.CDLL(None, use_errno=True)
    r, w = os.pipe()
    attacks = [
        lambda: os.kill(judge, signal.SIGSTOP),
        lambda: os.kill(-group, signal.SIGSTOP),
        lambda: os.kill(-1, signal.SIGSTOP),
        lambda: os.killpg(group, signal.SIGSTOP),
        lambda: libc.syscall(200, judge, signal.SIGSTOP),  # tkill
        lambda: libc.syscall(234, judge, judge, signal.SIGSTOP),  # tgkill
        lambda: os.pidfd_open(judge),
        lambda: signal.pidfd_send_signal(os.open(f"/proc/{judge}", os.O_RDONLY), signal.SIGSTOP),
        lambda: os.sched_setscheduler(judge, os.SCHED_IDLE, os.sched_param(0)),
        lambda: os.sched_setaffinity(judge, {0}),
        lambda: os.setpriority(os.PRIO_PROCESS, judge, 19),
        lambda: os.setpriority(os.PRIO_USER, os.getuid(), 19),
        lambda: os.setpriority(os.PRIO_PGRP, group, 19),
        lambda: resource.prlimit(judge, resource.RLIMIT_CPU, (1, 1)),
        lambda: fcntl.fcntl(r, fcntl.F_SETOWN, judge),
        lambda: fcntl.fcntl(r, fcntl.F_SETOWN, -group),
    ]
    out = []
    for attack in attacks:
        try:
            ret = attack()
            err = ctypes.get_errno() if ret == -1 else 0
            out.append("refused" if err == 1 else f"allowed {ret}")
        except PermissionError:
            out.append("refused")
        except OSError as exc:
            out.append(f"{type(exc).__name__} {exc.errno}")
    # Its own processes stay its own to signal and schedule.
    child = os.fork()
    if child == 0:
        signal.pause()
        os._exit(0)
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    os.kill(os.getpid(), 0)
    os.setpriority(os.PRIO_PROCESS, 0, 1)
    return out
"""


def test_the_programs_process_cannot_stop_kill_or_starve_its_judge(tmp_path: Path) -> None:
    """Same uid, so without a filter the program could SIGSTOP its judge (the job then sat
    until the sandbox's wall-clock limit, 65 s for a small problem, and ended as `timeout`),
    kill it, or make it SCHED_IDLE. Every such call aimed at the judge now fails with EPERM;
    the program's own processes are still its to signal. The verdict is `correct` only if the
    program saw every attack refused (the reference returns that list)."""
    if platform.machine() != "x86_64":
        pytest.skip(f"the judge's seccomp filter is x86_64 only; this is {platform.machine()}")
    caps = sandbox.get_backend("process").capabilities()
    if not caps.pid_namespace:  # kill(-1, SIGSTOP), were it let through, would reach the host
        pytest.skip(f"no PID namespace at isolation {caps.isolation!r}: not safe to try here")
    n = _JUDGE_ATTACKS.count("lambda:")
    ref = json.dumps(
        {
            "kind": "humanevalplus",
            "prompt": "def f(x):\n",
            "entry_point": "f",
            "canonical": f"def f(x):\n    return ['refused'] * {n}\n",
            "base_input": [[1]],
            "plus_input": [],
            "atol": 0,
        }
    )
    v = CodeVerifier(cache_dir=str(tmp_path))
    start = time.monotonic()
    verdict = v.verify(f"```python\n{_JUDGE_ATTACKS}\n```", ref)
    assert verdict.status is Status.CORRECT, verdict.reason
    assert time.monotonic() - start < 30
