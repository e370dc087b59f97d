"""Eval metrics: unbiased pass@k against the binomial formula, maj@k, status counts and
breakdowns on a hand-computed set of samples, JSON round trips, and the bootstrap."""

from __future__ import annotations

import json
from math import comb

import numpy as np
import pytest

from agents.errors import AgentError, EvalDataError
from agents.metrics import (
    Breakdown,
    EnvMetrics,
    SampleRecord,
    Timing,
    bootstrap_ci,
    bootstrap_means,
    compute_metrics,
    maj_at_k,
    majority_vote,
    paired_bootstrap_diff,
    pass_at_k,
    problem_scores,
)
from verifiers.base import Status, Verdict

C, W, U, T, E = (Status.CORRECT, Status.INCORRECT, Status.UNPARSABLE, Status.TIMEOUT, Status.ERROR)


def rec(
    pid: str,
    idx: int,
    status: Status,
    extracted: str | None,
    *,
    score: float | None = None,
    env: str = "toy",
    tokens: int | None = None,
    completion: str = "",
    subject: str | None = None,
    level: str | None = None,
) -> SampleRecord:
    value = (1.0 if status is C else 0.0) if score is None else score
    verdict = Verdict(value, status, extracted, status.value)
    return SampleRecord(
        env,
        pid,
        idx,
        f"question {pid}",
        completion,
        verdict,
        completion_tokens=tokens,
        subject=subject,
        level=level,
    )


def toy_records() -> list[SampleRecord]:
    """Four problems; p4 has only 3 samples and comes out of sample_index order.

    p1 (algebra, Level 1):  "5" C, "3" W, "3" W, None U          -> c=1 of 4
    p2 (algebra, Level 1):  "8" W, " 7" C, "7 " C, None T        -> c=2 of 4
    p3 (geometry, Level 2): "1" W (score 0.5), "" U, None E, "1" W -> c=0 of 4
    p4 (algebra, Level 10): "4" W, "2" C, "2" C                  -> c=2 of 3
    (C correct, W incorrect, U unparsable, T timeout, E error)
    """
    a1 = {"subject": "algebra", "level": "Level 1"}
    g2 = {"subject": "geometry", "level": "Level 2"}
    a10 = {"subject": "algebra", "level": "Level 10"}
    return [
        rec("p1", 0, C, "5", tokens=10, completion="aaaa", **a1),
        rec("p1", 1, W, "3", tokens=20, completion="aa", **a1),
        rec("p1", 2, W, "3", tokens=30, completion="", **a1),
        rec("p1", 3, U, None, tokens=None, completion="aaaaaa", **a1),
        rec("p2", 0, W, "8", **a1),
        rec("p2", 1, C, " 7", **a1),
        rec("p2", 2, C, "7 ", **a1),
        rec("p2", 3, T, None, **a1),
        rec("p3", 0, W, "1", score=0.5, **g2),
        rec("p3", 1, U, "", **g2),
        rec("p3", 2, E, None, **g2),
        rec("p3", 3, W, "1", **g2),
        rec("p4", 2, C, "2", **a10),
        rec("p4", 0, W, "4", **a10),
        rec("p4", 1, C, "2", **a10),
    ]


# -- pass@k ----------------------------------------------------------------------------------------
def test_pass_at_k_matches_the_binomial_formula_for_every_small_case() -> None:
    for n in range(1, 11):
        for c in range(n + 1):
            for k in range(1, n + 1):
                expected = 1 - comb(n - c, k) / comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12), (n, c, k)


def test_pass_at_k_edge_values_and_large_n_stay_finite() -> None:
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is c/n
    # The factorial form overflows a float here; the product form does not.
    value = pass_at_k(2000, 7, 100)
    assert 0.0 < value < 1.0 and np.isfinite(value)


@pytest.mark.parametrize(("n", "c", "k"), [(0, 0, 1), (4, 5, 1), (4, -1, 1), (4, 1, 0), (4, 1, 5)])
def test_pass_at_k_rejects_impossible_arguments(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError, match="pass_at_k"):
        pass_at_k(n, c, k)


# -- majority vote ---------------------------------------------------------------------------------
def test_majority_vote_strips_ignores_empty_and_breaks_ties_by_first_seen() -> None:
    assert majority_vote(["3", " 5", "5 ", "3", "5"]) == 1  # "5" x3 beats "3" x2
    assert majority_vote(["a", "b", "b", "a"]) == 0  # tie: "a" was seen first
    assert majority_vote([None, "", "  ", "x"]) == 3  # None and blank answers do not vote
    assert majority_vote([None, ""]) is None
    assert majority_vote([]) is None


def test_maj_at_k_votes_over_the_lowest_sample_indices() -> None:
    p4 = [r for r in toy_records() if r.problem_id == "p4"]  # stored as indices 2, 0, 1
    assert maj_at_k(p4, 1) == 0.0  # ["4"] -> "4", incorrect
    assert maj_at_k(p4, 2) == 0.0  # ["4", "2"] tie -> "4" (seen first)
    assert maj_at_k(p4, 3) == 1.0  # ["4", "2", "2"] -> "2", correct
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 3\]"):
        maj_at_k(p4, 4)
    with pytest.raises(ValueError, match="more than one problem"):
        maj_at_k(toy_records()[:5], 1)


# -- compute_metrics on the hand-computed set ------------------------------------------------------
def test_compute_metrics_hand_computed() -> None:
    m = compute_metrics(toy_records(), Timing(generation_s=3.0, verification_s=0.5))
    assert (m.env, m.problems, m.samples, m.n) == ("toy", 4, 15, 3)  # n = min(4, 4, 4, 3)
    # accuracy: 5 correct samples scoring 1 plus p3's 0.5, over 15 samples = 5.5/15 = 11/30
    assert m.accuracy == pytest.approx(11 / 30)
    # Per problem pass@k = 1 - C(n-c,k)/C(n,k):
    #   p1 (n=4,c=1): k=1: 1/4  k=2: 1-3/6=1/2   k=3: 1-1/4=3/4
    #   p2 (n=4,c=2): k=1: 1/2  k=2: 1-1/6=5/6   k=3: 1
    #   p3 (n=4,c=0): 0, 0, 0
    #   p4 (n=3,c=2): k=1: 2/3  k=2: 1           k=3: 1
    # pass@1 = (1/4 + 1/2 + 0 + 2/3)/4 = (17/12)/4 = 17/48
    # pass@2 = (1/2 + 5/6 + 0 + 1)/4 = (14/6)/4 = 7/12
    # pass@3 = (3/4 + 1 + 0 + 1)/4 = (11/4)/4 = 11/16
    assert m.pass_at_k == pytest.approx({1: 17 / 48, 2: 7 / 12, 3: 11 / 16})
    # maj@k per problem (votes after strip; "", None do not vote; ties -> first seen):
    #   p1: k=1 ["5"] -> C=1;  k=2 ["5","3"] tie -> "5" C=1;  k=3 ["5","3","3"] -> "3" W=0
    #   p2: k=1 ["8"] -> 0;    k=2 ["8","7"] tie -> "8" 0;    k=3 ["8","7","7"] -> "7" C=1
    #   p3: "1" wins whenever it votes, always incorrect -> 0, 0, 0
    #   p4: k=1 ["4"] -> 0;    k=2 tie -> "4" 0;              k=3 -> "2" C=1
    # maj@1 = (1+0+0+0)/4 = 1/4, maj@2 = 1/4, maj@3 = (0+1+0+1)/4 = 1/2
    assert m.maj_at_k == pytest.approx({1: 1 / 4, 2: 1 / 4, 3: 1 / 2})
    assert m.status_counts == {
        "correct": 5,  # p1 1, p2 2, p4 2
        "incorrect": 6,  # p1 2, p2 1, p3 2, p4 1
        "unparsable": 2,  # p1, p3
        "timeout": 1,  # p2
        "error": 1,  # p3
    }
    # algebra: p1, p2, p4 = 11 samples, 5 correct; pass@1 = (1/4 + 1/2 + 2/3)/3 = 17/36
    # geometry: p3 = 4 samples, scores 0.5 + 0 + 0 + 0
    assert m.by_subject == {
        "algebra": Breakdown(3, 11, pytest.approx(5 / 11), pytest.approx(17 / 36)),
        "geometry": Breakdown(1, 4, pytest.approx(0.5 / 4), 0.0),
    }
    # Natural order: Level 1, Level 2, Level 10. Level 1 = p1, p2: 3 of 8 correct,
    # pass@1 = (1/4 + 1/2)/2 = 3/8.
    assert list(m.by_level) == ["Level 1", "Level 2", "Level 10"]
    assert m.by_level["Level 1"] == Breakdown(2, 8, pytest.approx(3 / 8), pytest.approx(3 / 8))
    assert m.by_level["Level 10"] == Breakdown(1, 3, pytest.approx(2 / 3), pytest.approx(2 / 3))
    # tokens known for 3 samples only: (10 + 20 + 30)/3; chars: (4 + 2 + 0 + 6)/15
    assert m.mean_completion_tokens == pytest.approx(20.0)
    assert m.mean_completion_chars == pytest.approx(12 / 15)
    assert m.timing == Timing(3.0, 0.5)


def test_a_problem_without_subject_is_grouped_not_dropped() -> None:
    records = [rec("a", 0, C, "1", subject="x"), rec("b", 0, W, "2")]
    m = compute_metrics(records)
    assert m.by_subject == {"(none)": Breakdown(1, 1, 0.0, 0.0), "x": Breakdown(1, 1, 1.0, 1.0)}
    assert m.by_level == {}
    assert m.mean_completion_tokens is None


def test_compute_metrics_rejects_empty_mixed_and_duplicate_records() -> None:
    with pytest.raises(EvalDataError, match="no samples"):
        compute_metrics([])
    with pytest.raises(EvalDataError, match=r"envs \['a', 'b'\]"):
        compute_metrics([rec("p", 0, C, "1", env="a"), rec("p", 0, C, "1", env="b")])
    with pytest.raises(EvalDataError, match="problem 'p' sample_index 0 appears twice"):
        compute_metrics([rec("p", 0, C, "1"), rec("p", 0, W, "2")])


def test_problem_scores_is_the_mean_score_per_problem() -> None:
    scores = problem_scores(toy_records())
    # p1 1/4, p2 2/4, p3 (0.5+0+0+0)/4, p4 2/3
    assert scores == pytest.approx({"p1": 0.25, "p2": 0.5, "p3": 0.125, "p4": 2 / 3})


def test_env_metrics_round_trip_through_json() -> None:
    m = compute_metrics(toy_records(), Timing(1.5, 0.25))
    data = json.loads(json.dumps(m.to_dict()))
    assert data["pass_at_k"]["1"] == pytest.approx(17 / 48)
    assert EnvMetrics.from_dict(data) == m
    del data["timing"]
    with pytest.raises(EvalDataError, match=r"metrics\.json: missing key 'timing'"):
        EnvMetrics.from_dict(data, where="metrics.json")


# -- records and verdicts as JSON ------------------------------------------------------------------
def test_verdict_from_dict_inverts_to_dict_and_names_bad_keys() -> None:
    v = Verdict(0.5, Status.TIMEOUT, None, "sandbox timed out", elapsed_s=2.5)
    back = Verdict.from_dict(json.loads(json.dumps(v.to_dict())))
    assert back == v and back.elapsed_s == 2.5 and back.status is Status.TIMEOUT
    good = v.to_dict()
    assert Verdict.from_dict({k: x for k, x in good.items() if k != "elapsed_s"}).elapsed_s == 0.0
    for key, bad, pattern in [
        ("score", 1.5, "'score' must be a number in"),
        ("score", True, "'score' must be a number in"),
        ("status", "wrong", "'status' must be one of"),
        ("extracted", 3, "'extracted' must be a str or null"),
        ("reason", None, "'reason' must be a str"),
        ("elapsed_s", -1, "'elapsed_s' must be a number >= 0"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            Verdict.from_dict({**good, key: bad})
    with pytest.raises(ValueError, match=r"missing key\(s\) \['reason'\]"):
        Verdict.from_dict({k: x for k, x in good.items() if k != "reason"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['grade'\]"):
        Verdict.from_dict({**good, "grade": 1})


def test_sample_record_round_trips_and_errors_name_where_and_field() -> None:
    r = SampleRecord(
        "gsm8k",
        "gsm8k/7",
        2,
        "Q?",
        "so \\boxed{3}",
        Verdict(1.0, C, "3", "match"),
        prompt_tokens=12,
        completion_tokens=5,
        finished=True,
        subject="s",
        level="L1",
    )
    row = json.loads(json.dumps(r.to_json()))
    assert row["verdict"]["status"] == "correct"
    assert SampleRecord.from_json(row, where="f.jsonl:1") == r
    cases = [
        (
            {k: v for k, v in row.items() if k != "completion"},
            r"missing field\(s\) \['completion'\]",
        ),
        ({**row, "sample_index": -1}, "sample_index must be an int >= 0"),
        ({**row, "sample_index": "2"}, "sample_index must be an int >= 0"),
        ({**row, "completion_tokens": 1.5}, "completion_tokens must be an int >= 0 or None"),
        ({**row, "finished": "yes"}, "finished must be a bool or None"),
        ({**row, "problem_id": ""}, "problem_id must be a non-empty str"),
        ({**row, "verdict": {"score": 1.0}}, "bad field 'verdict': verdict is missing key"),
        ({**row, "complete": "x"}, r"unknown field\(s\) \['complete'\]"),
    ]
    for bad, pattern in cases:
        with pytest.raises(EvalDataError, match=r"^f\.jsonl:9: .*" + pattern):
            SampleRecord.from_json(bad, where="f.jsonl:9")
    with pytest.raises(EvalDataError, match="must be a JSON object"):
        SampleRecord.from_json([1, 2], where="f.jsonl:3")  # type: ignore[arg-type]
    assert issubclass(EvalDataError, AgentError)


# -- bootstrap -------------------------------------------------------------------------------------
def test_bootstrap_is_deterministic_brackets_the_mean_and_shrinks_with_more_problems() -> None:
    small = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0] * 2  # 20 problems, mean 0.5
    large = small * 50  # 1000 problems, same mean
    lo, hi = bootstrap_ci(small, seed=3)
    assert (lo, hi) == bootstrap_ci(small, seed=3)
    assert not np.array_equal(bootstrap_means(small, seed=3), bootstrap_means(small, seed=4))
    assert lo < 0.5 < hi
    big_lo, big_hi = bootstrap_ci(large, seed=3)
    assert big_lo < 0.5 < big_hi
    assert (big_hi - big_lo) < (hi - lo) / 4  # the width falls like 1/sqrt(problems)
    # The 95% interval of a mean of 20 fair coin flips is about 0.5 +- 1.96*sqrt(.25/20) = +-0.22
    assert hi - lo == pytest.approx(0.44, abs=0.08)
    assert bootstrap_ci([0.25, 0.25, 0.25]) == pytest.approx((0.25, 0.25))
    assert bootstrap_ci(small, level=0.5)[1] - bootstrap_ci(small, level=0.5)[0] < hi - lo


def test_bootstrap_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ci([0.5, float("nan")])
    with pytest.raises(ValueError, match="n_boot must be an int >= 1"):
        bootstrap_ci([0.5], n_boot=0)
    with pytest.raises(ValueError, match="level must lie strictly between 0 and 1"):
        bootstrap_ci([0.5], level=95)


def test_paired_bootstrap_diff_uses_common_problems_only() -> None:
    a = {"p1": 1.0, "p2": 0.0, "p3": 1.0, "only_a": 1.0}
    b = {"p1": 0.0, "p2": 0.0, "p3": 1.0, "only_b": 0.0}
    diff, lo, hi = paired_bootstrap_diff(a, b, seed=1)
    assert diff == pytest.approx(1 / 3)  # differences over p1, p2, p3: 1, 0, 0
    assert 0.0 <= lo <= diff <= hi <= 1.0
    assert paired_bootstrap_diff(a, b, seed=1) == (diff, lo, hi)
    # Pairing: b is a shifted by a constant, so every resample has the same difference.
    shifted = {k: v * 0.5 for k, v in a.items()}
    constant = {k: v * 0.5 + 0.25 for k, v in a.items()}
    assert paired_bootstrap_diff(constant, shifted) == pytest.approx((0.25, 0.25, 0.25))
    with pytest.raises(EvalDataError, match="no problem id in common"):
        paired_bootstrap_diff({"x": 1.0}, {"y": 1.0})
