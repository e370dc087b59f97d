"""RayVerifier: verify_many sharded across Ray actors on a local Ray instance.

Tests that start Ray are marked slow; the configuration checks and the "Ray is missing"
error need no Ray instance and run in the default suite.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from verifiers import Status, Verdict, VerifierConfigError
from verifiers.distributed import RayConfig, RayVerifier, ray_verifier
from verifiers.math import MathVerifier

try:
    import ray
except ImportError:  # the "ray" extra is optional
    ray = None

NO_RAY = "ray is not installed; install it with: pip install 'brite[ray]'"
needs_ray = pytest.mark.skipif(ray is None, reason=NO_RAY)

WRAP = "Working through the problem step by step, the final answer is \\boxed{{{}}}."
POWER_TOWER = "\\boxed{10^{10^{10^{10}}}}"


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    """A local Ray instance with two CPUs for the whole module."""
    if ray is None:
        pytest.skip(NO_RAY)
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _math500(data_dir: Path, n: int) -> list[dict[str, Any]]:
    path = data_dir / "math500" / "test.jsonl"
    if not path.is_file():
        pytest.skip(f"MATH-500 not found at {path}")
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for _, line in zip(range(n), fh, strict=False)]


# ------------------------------------------------------------------ no Ray instance needed


@pytest.mark.parametrize(
    ("options", "bad"),
    [
        ({"verifier": ""}, "''"),
        ({"verifier": "ray"}, "'ray'"),
        ({"verifier": "math", "num_actors": 0}, "0"),
        ({"verifier": "math", "num_actors": True}, "True"),
        ({"verifier": "math", "num_actors": 1.5}, "1.5"),
        ({"verifier": "math", "address": ""}, "''"),
        ({"verifier": "math", "num_cpus_per_actor": -1}, "-1"),
        ({"verifier": "math", "local_num_cpus": 0}, "0"),
        ({"verifier": "math", "call_timeout_s": 0}, "0"),
        ({"verifier": "math", "call_timeout_s": float("nan")}, "nan"),
        ({"verifier": "math", "start_timeout_s": -3}, "-3"),
        ({"verifier": "math", "verifier_config": {1: 2}}, "{1: 2}"),
    ],
)
def test_config_rejects_bad_values_naming_them(options: dict[str, Any], bad: str) -> None:
    with pytest.raises(VerifierConfigError) as info:
        RayConfig(**options)
    assert bad in str(info.value)
    assert isinstance(info.value, ValueError)


def test_config_is_frozen_and_copies_the_verifier_options() -> None:
    options = {"timeout_s": 2.0}
    cfg = RayConfig(verifier="math", verifier_config=options)
    options["timeout_s"] = 99.0
    assert cfg.verifier_config == {"timeout_s": 2.0}
    with pytest.raises(AttributeError):
        cfg.num_actors = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.verifier_config["timeout_s"] = 1.0  # type: ignore[index]


def test_missing_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail here
    with pytest.raises(VerifierConfigError, match=r'pip install "brite\[ray\]"'):
        RayVerifier("math")


# ------------------------------------------------------------------ local Ray instance


@needs_ray
@pytest.mark.slow
def test_matches_local_math_verifier_on_math500(ray_local: Any, data_dir: Path) -> None:
    """Same verdicts, same order, as the in-process MathVerifier on real MATH-500 items:
    solutions, wrapped references, other items' answers, and answerless text."""
    recs = _math500(data_dir, 40)
    refs = [str(r["answer"]) for r in recs]
    comps = []
    for i, r in enumerate(recs):
        kind = i % 4
        if kind == 0:
            comps.append(str(r["solution"]))
        elif kind == 1:
            comps.append(WRAP.format(refs[i]))
        elif kind == 2:
            comps.append(WRAP.format(refs[(i + 7) % len(refs)]))
        else:
            comps.append("I could not work this one out.")
    options = {"timeout_s": 20.0, "workers": 1}
    with MathVerifier(**options) as local:
        expected = local.verify_many(comps, refs)
    with RayVerifier("math", num_actors=2, **options) as rv:
        got = rv.verify_many(comps, refs)
        assert len(rv.actors) == 2
    assert got == expected
    statuses = {v.status for v in got}
    assert {Status.CORRECT, Status.INCORRECT, Status.UNPARSABLE} <= statuses, statuses
    assert Status.TIMEOUT not in statuses and Status.ERROR not in statuses


@needs_ray
@pytest.mark.slow
def test_pathological_input_times_out_through_ray(ray_local: Any) -> None:
    # 3 s, not 1: on a loaded 2-CPU machine (CI beside a training run) a plain fraction's
    # first check has taken over 1 s of its worker's run time.
    with RayVerifier("math", num_actors=2, timeout_s=3.0, workers=1, cache_size=0) as rv:
        assert rv.verify("\\boxed{\\frac{6}{2}}", "3").status is Status.CORRECT  # warm
        t0 = time.perf_counter()
        verdict = rv.verify(POWER_TOWER, "3")
        assert verdict.status is Status.TIMEOUT, verdict
        assert time.perf_counter() - t0 < 10.0
        out = rv.verify_many(
            [POWER_TOWER, "\\boxed{\\sqrt{9}}", "\\boxed{4}", POWER_TOWER], ["3"] * 4
        )
        assert [v.status for v in out] == [
            Status.TIMEOUT,
            Status.CORRECT,
            Status.INCORRECT,
            Status.TIMEOUT,
        ]


@needs_ray
@pytest.mark.slow
def test_killed_actor_gives_error_verdicts_and_is_replaced(ray_local: Any) -> None:
    with RayVerifier("math", num_actors=2, timeout_s=4.0, workers=1, cache_size=0) as rv:
        rv.verify_many(["\\boxed{3}", "\\boxed{3}"], ["3", "3"])  # both actors warm
        victim = rv.actors[0]
        result: list[list[Verdict]] = []
        worker = threading.Thread(
            target=lambda: result.append(rv.verify_many([POWER_TOWER] * 2, ["3"] * 2))
        )
        worker.start()
        time.sleep(1.5)  # each actor is now inside its 4 s equivalence check
        ray_local.kill(victim)
        worker.join(timeout=60)
        assert not worker.is_alive()
        (out,) = result
        statuses = sorted(v.status.value for v in out)
        assert statuses == ["error", "timeout"], out
        (err,) = [v for v in out if v.status is Status.ERROR]
        assert "Ray actor died" in err.reason and "ray.kill" in err.reason, err.reason
        assert err.score == 0.0
        assert rv.replaced == 1
        assert victim not in rv.actors and len(rv.actors) == 2
        # it keeps working, on both actors, the new one included
        after = rv.verify_many(["\\boxed{3}", "\\boxed{5}", "\\boxed{\\frac{6}{2}}"], ["3"] * 3)
        assert [v.status for v in after] == [Status.CORRECT, Status.INCORRECT, Status.CORRECT]


@needs_ray
@pytest.mark.slow
def test_hung_actor_gives_error_verdicts_and_is_replaced(ray_local: Any) -> None:
    """call_timeout_s bounds a whole batch even when the verifier's own limit is longer."""
    with RayVerifier(
        "math", num_actors=2, call_timeout_s=1.5, timeout_s=6.0, workers=1, cache_size=0
    ) as rv:
        before = rv.actors
        t0 = time.perf_counter()
        out = rv.verify_many([POWER_TOWER, POWER_TOWER], ["3", "3"])
        assert time.perf_counter() - t0 < 5.0
        assert [v.status for v in out] == [Status.ERROR, Status.ERROR]
        assert all("did not answer in 1.5s" in v.reason for v in out), out
        assert rv.replaced == 2 and not set(before) & set(rv.actors)
        assert rv.verify("\\boxed{3}", "3").status is Status.CORRECT


@needs_ray
@pytest.mark.slow
def test_bad_inner_config_fails_at_construction(ray_local: Any) -> None:
    with pytest.raises(VerifierConfigError, match=r"timeout_s.*-1"):
        RayVerifier("math", num_actors=1, timeout_s=-1)
    with pytest.raises(VerifierConfigError, match="no-such-verifier"):
        RayVerifier("no-such-verifier", num_actors=1)


@needs_ray
@pytest.mark.slow
def test_close_kills_actors_and_a_later_call_starts_fresh_ones(ray_local: Any) -> None:
    rv = ray_verifier(verifier="exact", num_actors=2)  # as the registry would call it
    try:
        first = rv.actors
        assert rv.verify("the answer is 12", "12").status is Status.CORRECT
        rv.close()
        assert rv.actors == []
        out = rv.verify_many(["\\boxed{1}", "\\boxed{2}", "\\boxed{3}"], ["1", "2", "4"])
        assert [v.status for v in out] == [Status.CORRECT, Status.CORRECT, Status.INCORRECT]
        assert len(rv.actors) == 2 and not set(first) & set(rv.actors)
        assert rv.verify_many([], []) == []
        with pytest.raises(ValueError, match="2 completions but 1 references"):
            rv.verify_many(["a", "b"], ["a"])
    finally:
        rv.close()
