"""MathVerifier: equivalence tables, false-positive classes, timeouts, threads, asyncio, fuzz."""

from __future__ import annotations

import asyncio
import pathlib
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import verifiers
from verifiers import Status
from verifiers.math import MathConfig, MathVerifier, grade_math

C, I, U = Status.CORRECT, Status.INCORRECT, Status.UNPARSABLE  # noqa: E741
E, T = Status.ERROR, Status.TIMEOUT
TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def mv() -> Iterator[MathVerifier]:
    v = MathVerifier(timeout_s=TIMEOUT_S)
    v.pool.warm_up()
    yield v
    v.close()


def boxed(x: str) -> str:
    return f"Working through it step by step, the final answer is $\\boxed{{{x}}}$."


EQUIVALENT = [
    # (prediction, reference)
    ("0.5", "\\frac{1}{2}"),
    ("\\frac12", "0.5"),
    ("\\dfrac{1}{2}", "\\frac{1}{2}"),
    ("\\tfrac{3}{4}", "0.75"),
    ("1/2", "\\frac{1}{2}"),
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}"),
    ("\\frac{\\pi}{2}", "\\dfrac{\\pi}{2}"),
    ("2\\pi", "2 \\pi"),
    ("\\pi", "\\pi"),
    ("(1,2]", "(1, 2]"),
    ("[0,\\infty)", "[0, \\infty)"),
    ("\\{2,1\\}", "\\{1,2\\}"),
    ("(3, -4)", "(3,-4)"),
    ("50\\%", "50"),
    ("50", "50\\%"),
    ("30^\\circ", "30"),
    ("30", "30^{\\circ}"),
    ("C", "\\text{(C)}"),
    ("\\text{(C)}", "\\text{(C)}"),
    ("1,234", "1234"),
    ("1234", "1{,}234"),
    ("1.5\\times10^{3}", "1500"),
    ("1.5e3", "1500"),
    ("x^2+1", "1+x^2"),
    ("x=5", "5"),
    ("5 \\text{ cm}", "5"),
    ("10 \\text{ inches}", "10"),
    ("\\$18.00", "18"),
    ("-3", "-3"),
    ("\\left( 1, 2 \\right)", "(1,2)"),
    ("52", "52_8"),
    ("52_8", "52_8"),
    ("5:00", "05\\!:\\!00"),
    ("\\frac{1}{2004!}", "\\frac{1}{2004!}"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    ("2^{10}", "1024"),
    ("\\sqrt{3}+1", "1+\\sqrt{3}"),
    ("0.333333", "\\frac{1}{3}"),
    ("\\text{Evelyn}", "\\text{Evelyn}"),
    # fractions and decimals
    ("0.25", "\\frac{1}{4}"),
    ("\\frac{3}{2}", "1.5"),
    ("-0.75", "-\\frac{3}{4}"),
    ("\\frac{-3}{4}", "-\\frac{3}{4}"),
    ("-\\frac{1}{2}", "-0.5"),
    ("\\frac{7}{1}", "7"),
    ("2^{-1}", "\\frac{1}{2}"),
    ("8", "8.0"),
    # \dfrac / \tfrac / brace-less \frac
    ("\\dfrac{5}{6}", "\\frac56"),
    ("\\tfrac{2}{3}", "\\dfrac{2}{3}"),
    # roots
    ("\\sqrt{12}", "2\\sqrt{3}"),
    ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}"),
    ("\\sqrt[3]{8}", "2"),
    ("3\\sqrt{2}", "\\sqrt{18}"),
    # pi
    ("\\pi/3", "\\frac{\\pi}{3}"),
    ("\\frac{3\\pi}{4}", "\\frac{3}{4}\\pi"),
    # intervals and unions
    ("(-\\infty, 3]", "(-\\infty,3]"),
    ("[-2, 5)", "[-2,5)"),
    ("(-\\infty,0)\\cup(1,\\infty)", "(-\\infty, 0) \\cup (1, \\infty)"),
    ("x \\in [2, 5]", "[2,5]"),
    # sets and lists (order does not matter) and tuples
    ("\\{3, 1, 2\\}", "\\{1,2,3\\}"),
    ("1, 2, 3", "3, 2, 1"),
    ("-2, 5", "5, -2"),
    ("(1, -2, 3)", "(1,-2,3)"),
    # percentages and degrees
    ("25\\%", "25"),
    ("12.5\\%", "12.5"),
    ("45^{\\circ}", "45"),
    ("90°", "90"),
    ("45", "45^\\circ"),
    # text answers
    ("(C)", "\\text{(C)}"),
    ("\\textbf{(C)}", "\\text{(C)}"),
    ("\\text{B}", "\\text{(B)}"),
    ("Monday", "\\text{Monday}"),
    # thousands separators
    ("10,000", "10000"),
    ("1\\,000\\,000", "1000000"),
    ("12{,}345", "12345"),
    # scientific notation (a decimal mantissa is not exact: 6.02 x 10^23 in floats)
    ("3.2\\times 10^{-4}", "0.00032"),
    ("2.5 \\cdot 10^{2}", "250"),
    ("6.02e23", "6.02\\times10^{23}"),
    ("6.67\\times10^{-11}", "6.67e-11"),
    ("1.2E3", "1200"),
    # equations, money, units
    ("y=2x+3", "y = 2x + 3"),
    ("\\frac{x+1}{2}", "\\frac{1}{2}x+\\frac{1}{2}"),
    ("\\$5.50", "5.50"),
    ("5 \\text{ meters}", "5"),
    ("10\\text{ dollars}", "\\$10"),
]

NOT_EQUIVALENT = [
    ("0.6", "\\frac{1}{2}"),
    ("\\frac{1}{3}", "0.3"),
    ("3.14", "\\pi"),
    ("\\sqrt{3}", "\\sqrt{2}"),
    ("(1,2)", "(1,2]"),
    ("\\{1,2,3\\}", "\\{1,2\\}"),
    ("(3,4)", "(4,3)"),
    ("51\\%", "50\\%"),
    ("31^\\circ", "30^\\circ"),
    ("\\text{(B)}", "\\text{(C)}"),
    ("1235", "1,234"),
    ("x^2-1", "x^2+1"),
    ("52_9", "52_8"),
    ("42", "52_8"),
    ("\\frac{1}{2005!}", "\\frac{1}{2004!}"),
    ("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}"),
    ("\\frac{1}{3} E_{1}+\\frac{2}{3} E_{3}", "\\frac{1}{3} E_{1}+\\frac{2}{3} E_{2}"),
    ("864 \\mbox{ inches}^3", "864 \\mbox{ inches}^2"),
    ("6", "05\\!:\\!00"),
    ("0.56 = 57\\%", "0.56 = 56\\%"),
    ("12", "1"),
    ("1", "12"),
    ("-2", "2"),
    ("\\infty", "100"),
    ("\\text{none}", "5"),
    ("5+1", "5"),
    ("\\text{Eve}", "\\text{Evelyn}"),
    ("2x", "x"),
    # fractions and decimals (rounding is to 6 places, not 2)
    ("0.33", "\\frac{1}{3}"),
    ("\\frac{2}{3}", "0.67"),
    ("\\dfrac{1}{3}", "\\frac{1}{4}"),
    ("\\tfrac{1}{2}", "2"),
    # tiny decimals: 6-place rounding must not make them equal
    ("0.0000001", "0.0000002"),
    ("0", "0.0000001"),
    ("1.5\\times 10^{-7}", "2.5\\times 10^{-7}"),
    # roots and pi
    ("\\sqrt{8}", "2\\sqrt{3}"),
    ("\\sqrt[3]{9}", "3"),
    ("\\sqrt{2}", "2"),
    ("\\pi/4", "\\frac{\\pi}{3}"),
    ("2\\pi", "\\pi"),
    ("3.14159", "\\pi"),
    # intervals: open and closed ends differ
    ("[1,2]", "(1,2)"),
    ("(-\\infty, 3)", "(-\\infty, 3]"),
    ("[2,5)", "[2,5]"),
    ("(0,\\infty)", "[0,\\infty)"),
    # sets and tuples: missing elements; order matters for tuples
    ("\\{1,2\\}", "\\{1,2,4\\}"),
    ("1, 2", "1, 2, 3"),
    ("(2,1)", "(1,2)"),
    ("(1,2,3)", "(1,3,2)"),
    # percentages and degrees
    ("5\\%", "50\\%"),
    ("0.5\\%", "50\\%"),
    ("60^\\circ", "30^\\circ"),
    # text answers
    ("\\text{(A)}", "\\text{(C)}"),
    ("(B)", "\\text{(C)}"),
    ("\\text{Tuesday}", "\\text{Monday}"),
    ("12", "\\text{(C)}"),
    # thousands separators and scientific notation
    ("1,000", "10000"),
    ("1{,}001", "1000"),
    ("3.2\\times 10^{-5}", "0.00032"),
    ("1.5e4", "1500"),
    ("4.6e33", "4.5e33"),
    ("6.03\\times10^{23}", "6.02e23"),
    # expressions, signs, units, money
    ("x+1", "x-1"),
    ("\\frac{1}{x}", "x"),
    ("-5", "5"),
    ("0", "1"),
    ("y=2x+3", "y=3x+2"),
    ("5 \\text{ cm}", "6"),
    ("\\$5.50", "5.05"),
]


@pytest.mark.parametrize(("pred", "ref"), EQUIVALENT)
def test_equivalent(mv: MathVerifier, pred: str, ref: str) -> None:
    verdict = mv.verify(boxed(pred), ref)
    assert verdict.status is C, verdict
    assert verdict.score == 1.0


@pytest.mark.parametrize(("pred", "ref"), NOT_EQUIVALENT)
def test_not_equivalent(mv: MathVerifier, pred: str, ref: str) -> None:
    verdict = mv.verify(boxed(pred), ref)
    assert verdict.status is I, verdict
    assert verdict.score == 0.0


FALSE_POSITIVES = [
    # hedges
    ("The answer is \\boxed{3} or \\boxed{4}.", "3", I, "hedged"),
    ("The answer is \\boxed{3 \\text{ or } 4}.", "4", I, "hedged"),
    ("\\boxed{3 or 4}", "3", I, "hedged"),
    ("It is either 2 or 3, so the answer is 2 or 3", "2", I, "hedged"),
    # echo of the question (no answer, last number is from the question)
    ("What is 12 times 3?", "36", I, "last-number"),
    # empty and missing answers
    ("", "3", U, "no answer"),
    ("\\boxed{}", "3", I, "empty"),
    ("I don't know.", "3", U, "no answer"),
    # substrings are not partial credit
    ("\\boxed{12}", "123", I, ""),
    ("\\boxed{\\frac{1}{2}x}", "\\frac{1}{2}", I, ""),
    ("\\boxed{23}", "123", I, ""),
    ("\\boxed{(1,2)}", "(1,2,3)", I, ""),
    ("\\boxed{\\sqrt{2}}", "3\\sqrt{2}", I, ""),
    # more hedges: two different boxed answers, "or" inside one, an explicit \lor
    ("\\boxed{2} \\boxed{3}", "3", I, "hedged"),
    ("First \\boxed{\\frac{1}{2}}, finally \\boxed{0.6}", "\\frac{1}{2}", I, "hedged"),
    ("\\boxed{x = 2 \\text{ or } x = 3}", "2", I, "hedged"),
    ("\\boxed{2 \\lor 3}", "3", I, "hedged"),
    # the same answer boxed twice is not a hedge
    ("\\boxed{\\frac{1}{2}} so again \\boxed{0.5}", "\\frac{1}{2}", C, "boxed"),
    # empty answers: an answer phrase with nothing after it, or only math delimiters
    ("\\boxed{ }", "3", I, "empty"),
    ("We get x = 3. The final answer is", "3", I, "empty"),
    ("So 3 apples. The answer is $$.", "3", I, "empty"),
    ("   ", "3", U, "no answer"),
]


@pytest.mark.parametrize(("completion", "ref", "status", "why"), FALSE_POSITIVES)
def test_false_positive_classes(
    mv: MathVerifier, completion: str, ref: str, status: Status, why: str
) -> None:
    verdict = mv.verify(completion, ref)
    assert verdict.status is status, verdict
    assert why in verdict.reason


@pytest.mark.parametrize(
    ("completion", "rule"),
    [
        ("\\boxed{7}", "boxed"),
        ("The final answer is 7.", "answer-is"),
        ("The answer is $7$", "answer-is"),
        ("Answer: 7", "answer-is"),
        ("so we get 7", "last-number"),
        ("<think>The answer is 3</think>\\boxed{7}", "boxed"),
    ],
)
def test_reason_names_the_rule(mv: MathVerifier, completion: str, rule: str) -> None:
    verdict = mv.verify(completion, "7")
    assert verdict.status is C and verdict.reason.startswith(rule), verdict


def test_strict_mode_needs_an_explicit_answer() -> None:
    with MathVerifier(strict=True) as v:
        assert v.verify("so we get 7", "7").status is U
        assert v.verify("so we get \\boxed{7}", "7").status is C


def test_math_config_validation_shows_bad_value() -> None:
    for kwargs, needle in [
        ({"timeout_s": 0}, "0"),
        ({"timeout_s": -2.5}, "-2.5"),
        ({"workers": 0}, "0"),
        ({"cache_size": -1}, "-1"),
        ({"strict": "no"}, "'no'"),
        ({"memory_limit_mb": 10}, "10"),
    ]:
        with pytest.raises(ValueError, match=needle):
            MathConfig(**kwargs)  # type: ignore[arg-type]
    assert isinstance(verifiers.get("math", timeout_s=1.0), MathVerifier)


def test_grade_is_a_separate_step_and_gold_goes_first() -> None:
    assert grade_math((("0.5",), "\\frac{1}{2}", 6, 15)) == ("correct", "math-verify")
    assert grade_math((("3", "4"), "3", 6, 15))[0] == "incorrect"


def test_bad_inputs_are_verdicts_not_exceptions(mv: MathVerifier) -> None:
    assert mv.verify(None, "1").status is E  # type: ignore[arg-type]
    assert mv.verify("\\boxed{1}", "").status is E


def test_cache_hits_on_same_answer(mv: MathVerifier) -> None:
    first = mv.verify("\\boxed{\\frac{14}{28}}", "0.5")
    again = mv.verify("The answer is $\\frac{14}{28}$", "0.5")
    assert first.status is again.status is C
    assert again.reason.endswith("cached") and again.reason.startswith("answer-is")


def test_verify_many_keeps_order(mv: MathVerifier) -> None:
    refs = [str(i) for i in range(40)]
    comps = [boxed(f"\\frac{{{2 * i}}}{{2}}") if i % 3 else boxed(str(i + 1)) for i in range(40)]
    out = mv.verify_many(comps, refs)
    assert [v.status for v in out] == [C if i % 3 else I for i in range(40)]


PATHOLOGICAL = [
    "\\boxed{10^{10^{10^{10}}}}",
    "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
    "\\boxed{" + "1+" * 25_000 + "1}",
]


@pytest.mark.parametrize("completion", PATHOLOGICAL, ids=["power-tower", "deep-braces", "50k"])
def test_pathological_input_times_out_and_pool_recovers(completion: str) -> None:
    with MathVerifier(timeout_s=1.0, workers=1, cache_size=0) as v:
        v.pool.warm_up()
        t0 = time.perf_counter()
        verdict = v.verify(completion, "3")
        wall = time.perf_counter() - t0
        assert verdict.status is T, verdict
        assert wall <= 1.0 + 0.5, wall
        assert v.verify("\\boxed{\\frac{6}{2}}", "3").status is C  # pool still works


def test_timeout_does_not_count_queue_time() -> None:
    """Two slow-but-legal jobs on one worker: each gets its own full timeout."""
    with MathVerifier(timeout_s=1.0, workers=1, cache_size=0) as v:
        v.pool.warm_up()
        comps = ["\\boxed{10^{10^{10^{10}}}}", "\\boxed{\\frac{6}{2}}", "\\boxed{\\sqrt{9}}"]
        out = v.verify_many(comps, ["3", "3", "3"])
        assert [x.status for x in out] == [T, C, C]


def test_eight_threads_at_once(mv: MathVerifier) -> None:
    results: dict[int, list[Status]] = {}

    def work(k: int) -> None:
        refs = [str(k + j) for j in range(5)]
        comps = [boxed(f"{k + j}.0") for j in range(5)]
        results[k] = [mv.verify(c, r).status for c, r in zip(comps, refs, strict=True)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {k: [C] * 5 for k in range(8)}


def test_inside_asyncio_with_timeouts_active() -> None:
    async def main(v: MathVerifier) -> list[Status]:
        direct = v.verify("\\boxed{\\frac{1}{2}}", "0.5")  # blocking call inside the loop
        threaded = await asyncio.gather(
            asyncio.to_thread(v.verify, "\\boxed{10^{10^{10^{10}}}}", "3"),
            asyncio.to_thread(v.verify, "\\boxed{\\sqrt{4}}", "2"),
            asyncio.to_thread(v.verify, "\\boxed{5}", "6"),
        )
        return [direct.status, *(x.status for x in threaded)]

    with MathVerifier(timeout_s=1.0, cache_size=0) as v:
        assert asyncio.run(main(v)) == [C, T, C, I]


_latexish = st.lists(
    st.sampled_from([*"0123456789+-*/^_{}()[]\\$.,= xabc", "\\frac", "\\boxed{", "\\sqrt"]),
    max_size=60,
).map("".join)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    completion=st.one_of(st.text(max_size=200), _latexish.map(lambda s: f"\\boxed{{{s}}}")),
    reference=st.one_of(st.sampled_from(["3", "\\frac{1}{2}", "(1,2)", "x+1"]), _latexish),
)
def test_fuzz_never_raises_and_returns_in_time(
    mv: MathVerifier, completion: str, reference: str
) -> None:
    restarts = mv.pool.restarts
    t0 = time.perf_counter()
    verdict = mv.verify(completion, reference)
    wall = time.perf_counter() - t0
    assert verdict.status in set(Status)
    assert 0.0 <= verdict.score <= 1.0
    # a killed worker's successor may still be starting: allow for that one start-up
    slack = 0.5 if mv.pool.restarts == restarts else 10.0
    assert wall <= TIMEOUT_S + slack


# --------------------------------------------------------------------------- the benchmark


def test_throughput_benchmark_needs_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    from benchmarks import verifier_throughput as bench

    monkeypatch.setenv("BRITE_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit, match="BRITE_DATA_DIR"):
        bench.load_inputs()


@pytest.mark.slow
def test_throughput_benchmark_smoke(data_dir: pathlib.Path) -> None:
    from benchmarks import verifier_throughput as bench

    res = bench.run([1, 2], repeats=1, limit=12)
    assert res["inputs"] == 12 and res["raw"]["correct"] == 12
    assert all(r["correct"] == 12 for r in res["raw_processes"])
    for mode in ("symbolic", "default"):
        assert [r["workers"] for r in res[mode]] == [1, 2]
        assert all(r["correct"] == 12 and r["verdicts_per_s"] > 0 for r in res[mode])
    assert res["symbolic"][0]["statuses"] == {"correct": 12}
    assert "meets_target" in res and res["machine"]["cpu_count"]
