"""The Table 1 reproduction script (``benchmarks.repro_table1``): budget arithmetic, the
seed-and-problem bootstrap, the commands it runs, the results document, and (slow) the
``--smoke`` run end to end with ``model=tiny``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import repro_table1 as rt
from benchmarks.repro_table1 import (
    PRESETS,
    Estimate,
    JobRecord,
    Layout,
    MethodResult,
    Plan,
    ReproError,
    Summary,
    apply_sets,
    hierarchical_bootstrap,
    method_results,
    method_spec,
    score_matrix,
)

CPU = PRESETS["cpu"]


def _overrides(plan: Plan, method: str) -> dict[str, str]:
    return dict(o.split("=", 1) for o in method_spec(plan, method).overrides)


# -- budgets ------------------------------------------------------------------------------------
def test_cpu_preset_gives_every_sampling_method_the_same_nominal_budget() -> None:
    # 32 problems, 256 samples, 2 iterations: RS draws 2 x 32 x 4; BRiTE T=1 spends 8 PPO
    # updates x 8 episodes = 64 on ψ and 32 x 6 = 192 on θ; T=2 spends 4 x 8 + 32 x 3 per
    # iteration; STaR keeps one sample per problem for rationalization (3 + 1).
    expected = {
        "rs": ("4", None),
        "star": ("3", None),
        "dpo": ("4", None),
        "brite-t1": ("6", "8"),
        "brite-t2": ("3", "4"),
        "brite-dpo": ("3", "4"),
    }
    for method, (k, updates) in expected.items():
        spec = method_spec(CPU, method)
        assert spec.nominal_samples == 256, method
        o = _overrides(CPU, method)
        assert o["agent.k"] == k, method
        assert o.get("agent.psi.updates") == updates, method
        assert o["agent.max_new_tokens"] == "64" and o["agent.temperature"] == "0.7"
    assert _overrides(CPU, "brite-t1")["agent.iterations"] == "1"
    assert _overrides(CPU, "brite-t2")["agent.iterations"] == "2"
    assert _overrides(CPU, "brite-dpo")["agent.theta.method"] == "dpo"
    assert _overrides(CPU, "star")["agent.hint_k"] == "1"
    assert method_spec(CPU, "sft").nominal_samples == 0
    # base is the shared format warm-up: SFT on rationales, no sampling
    assert method_spec(CPU, "base").agent == "sft"
    assert method_spec(CPU, "base").nominal_samples == 0
    assert method_spec(dataclasses.replace(CPU, warmup_size=0), "base").agent is None
    assert CPU.token_cap == 256 * 64


def test_gpu_and_smoke_presets_match_budgets_too() -> None:
    for name, total in (("gpu", 2048), ("smoke", 24)):
        plan = PRESETS[name]
        for method in ("rs", "star", "dpo", "brite-t1", "brite-t2", "brite-dpo"):
            assert method_spec(plan, method).nominal_samples == total, (name, method)


def test_a_budget_that_cannot_be_split_exactly_names_the_fields_to_change() -> None:
    with pytest.raises(
        ValueError,
        match=r"rs: samples per iteration over train_size: 100 is not divisible by 32; change",
    ):
        dataclasses.replace(CPU, budget_samples=200)
    with pytest.raises(ValueError, match=r"brite-t1: ψ uses 256 of the 256 samples"):
        dataclasses.replace(CPU, psi_updates=32)
    # k = 1 per iteration leaves DPO no pair to build, and STaR no direct sample
    with pytest.raises(ValueError, match=r"dpo: k=1 < 2 gives no \(correct, incorrect\) pairs"):
        dataclasses.replace(CPU, methods=("base", "dpo"), budget_samples=64)
    with pytest.raises(ValueError, match=r"star: RS's k=1 leaves no direct sample after hint_k=1"):
        dataclasses.replace(CPU, methods=("base", "star"), budget_samples=64)
    with pytest.raises(ValueError, match=r"Plan.methods must be drawn from"):
        dataclasses.replace(CPU, methods=("rs", "grpo"))
    with pytest.raises(ValueError, match=r"Plan.temperature must be a number > 0, got 0"):
        dataclasses.replace(CPU, temperature=0)
    with pytest.raises(ValueError, match=r"Plan.seeds must be distinct"):
        dataclasses.replace(CPU, seeds=(1, 1))


def test_a_plan_restricted_to_methods_only_checks_those() -> None:
    # 96 samples over 2 iterations and 32 problems: RS k = 1.5 is impossible, but SFT and the
    # base model sample nothing.
    plan = dataclasses.replace(CPU, methods=("base", "sft"), budget_samples=96, warmup_size=0)
    assert [j.key for j in rt.plan_jobs(plan)][:2] == ["arith/base", "arith/sft-s0"]


def test_set_changes_scalar_fields_with_their_types() -> None:
    plan = apply_sets(CPU, ["eval_size=64", "psi_beta=0.1", "psi_reward=verifier"])
    assert (plan.eval_size, plan.psi_beta, plan.psi_reward) == (64, 0.1, "verifier")
    assert apply_sets(CPU, ["eval_size=null"]).eval_size is None
    assert apply_sets(CPU, ["progress=false"]).progress is False
    with pytest.raises(ReproError, match=r"--set 'seeds=1': expected key=value with key one of"):
        apply_sets(CPU, ["seeds=1"])
    with pytest.raises(ReproError, match=r"'many' is not a int"):
        apply_sets(CPU, ["train_size=many"])
    with pytest.raises(ReproError, match=r"Plan.psi_reward must be"):
        apply_sets(CPU, ["psi_reward=kl"])


def test_a_hint_template_reaches_star_and_brite_runs_exactly() -> None:
    """``--set hint=...`` becomes one Hydra override on the runs that use the hinted prompt,
    quoted so that the task receives the very string (braces, backslashes, quotes)."""
    from agents.cli import compose

    hint = '{question}\n\nThe answer is {reference}. Say "why" briefly, then \\boxed{} it. \\'
    plan = apply_sets(CPU, ["hint=" + hint])
    for method in ("star", "brite-t1", "brite-t2", "brite-dpo"):
        hinted = [o for o in method_spec(plan, method).overrides if "template.hint" in o]
        assert len(hinted) == 1, (method, hinted)
        cfg = compose(["agent=brite", "env=arith", hinted[0]])
        assert cfg.env.task_kwargs.template.hint == hint
    for method in ("base", "sft", "rs", "dpo"):
        assert not any("template" in o for o in method_spec(plan, method).overrides)
    assert not any("template" in o for o in method_spec(CPU, "brite-t1").overrides)
    with pytest.raises(ReproError, match=r"Plan.hint must contain \{question\} and \{reference\}"):
        apply_sets(CPU, ["hint={question} only"])
    with pytest.raises(ReproError, match=r"must not contain '\$\{'"):
        apply_sets(CPU, ["hint={question} {reference} ${x}"])


def test_a_track_override_replaces_the_tracks_own_for_that_key() -> None:
    plan = rt.apply_track_overrides(CPU, ["env.task_kwargs.levels=[2]", "+env.x=1"])
    (track,) = plan.tracks
    assert track.overrides == ("env.task_kwargs.levels=[2]", "+env.x=1")
    assert CPU.tracks[0].overrides == ("env.task_kwargs.levels=[1]",)  # the preset is untouched
    with pytest.raises(ReproError, match=r"--track-override 'levels': expected key=value"):
        rt.apply_track_overrides(CPU, ["levels"])
    argv = ["--track-override", "env.task_kwargs.levels=[3]", "--dry-run"]
    assert rt.build_plan(rt.parse_args(argv)).tracks[0].overrides[-1].endswith("[3]")


def test_plan_round_trips_through_json() -> None:
    for plan in PRESETS.values():
        assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['colour'\]"):
        Plan.from_dict({**CPU.to_dict(), "colour": "red"})


# -- commands -----------------------------------------------------------------------------------
def test_jobs_and_commands(tmp_path: Path) -> None:
    plan = dataclasses.replace(CPU, seeds=(0, 5), methods=("base", "rs", "brite-t1"), warmup_size=0)
    layout = Layout(tmp_path)
    jobs = rt.plan_jobs(plan)
    assert [j.key for j in jobs] == [
        "arith/base",
        "arith/rs-s0",
        "arith/brite-t1-s0",
        "arith/rs-s5",
        "arith/brite-t1-s5",
    ]
    train, evaluate = rt.job_commands(plan, layout, jobs[3])
    assert train is not None
    assert train[:6] == [
        "run",
        "agent=rs",
        "env=arith",
        "model=smollm2-135m",
        "seed=5",
        f"out={tmp_path / 'runs' / 'arith' / 'rs-s5'}",
    ]
    assert "agent.eval.before=false" in train and "env.task_kwargs.levels=[1]" in train
    final = tmp_path / "runs" / "arith" / "rs-s5" / "final"
    for item in (
        "eval",
        "env=[arith]",
        "model.source=path",
        f"model.name_or_path={final}",
        "model.gguf_file=null",
        "label=rs-s5",
        "env.eval_size=128",
        "temperature=0",
        "n=1",
        "seed=5",
        "env.task_kwargs.levels=[1]",
    ):
        assert item in evaluate, item
    base_train, base_eval = rt.job_commands(plan, layout, jobs[0])
    assert base_train is None
    assert "model.source=path" not in base_eval and "label=base" in base_eval


def test_with_a_warm_up_every_method_of_a_seed_starts_from_that_seeds_warm_up_model(
    tmp_path: Path,
) -> None:
    plan = dataclasses.replace(CPU, seeds=(0, 5), methods=("base", "rs"), warmup_size=16)
    layout = Layout(tmp_path)
    jobs = rt.plan_jobs(plan)
    # base is the warm-up, trained and evaluated per seed, before that seed's methods
    assert [j.key for j in jobs] == ["arith/base-s0", "arith/rs-s0", "arith/base-s5", "arith/rs-s5"]
    warm_train, warm_eval = rt.job_commands(plan, layout, jobs[2])
    assert warm_train is not None
    for item in ("agent=sft", "model=smollm2-135m", "seed=1005", "env.train_size=16"):
        assert item in warm_train, item  # other problems than seed 5's training ones
    assert "model.source=path" not in warm_train
    warm_final = tmp_path / "runs" / "arith" / "base-s5" / "final"
    assert f"model.name_or_path={warm_final}" in warm_eval
    rs_train, _ = rt.job_commands(plan, layout, jobs[3])
    assert rs_train is not None
    for item in ("seed=5", "env.train_size=32", "model.source=path"):
        assert item in rs_train, item
    assert f"model.name_or_path={warm_final}" in rs_train
    assert rt.method_spec(plan, "base").nominal_samples == 0
    assert plan.base_seeds == (0, 5)
    with pytest.raises(ValueError, match=r"warmup_size > 0 needs the 'base' method"):
        dataclasses.replace(plan, methods=("rs",))
    with pytest.raises(ValueError, match=r"Plan.warmup_size must be an int >= 0"):
        dataclasses.replace(plan, warmup_size=-1)


@pytest.mark.parametrize("subprocess", [False, True])
def test_a_failing_brite_agent_command_names_itself_and_the_fix(subprocess: bool) -> None:
    with pytest.raises(ReproError, match=r"`brite-agent run agent=nope` exited with 2.*--resume"):
        rt.brite_agent(["run", "agent=nope"], subprocess=subprocess)


def test_out_must_be_new_or_resumed_with_the_same_plan(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "out")
    assert rt._check_out(layout, CPU, resume=False, command="python -m x --seeds 0") == (
        "python -m x --seeds 0"
    )
    assert json.loads(layout.plan_json.read_text()) == CPU.to_dict()
    with pytest.raises(ReproError, match=r"holds a reproduction already; pass --resume"):
        rt._check_out(layout, CPU, resume=False)
    # a resumed run reports the command that started it
    assert rt._check_out(layout, CPU, resume=True, command="python -m x --resume") == (
        "python -m x --seeds 0"
    )
    with pytest.raises(ReproError, match=r"another plan \(differs in eval_size\)"):
        rt._check_out(layout, dataclasses.replace(CPU, eval_size=64), resume=True)
    # finishing early on a subset of the planned seeds is allowed; other seeds are not
    assert rt._check_out(layout, dataclasses.replace(CPU, seeds=(0, 1)), resume=True)
    with pytest.raises(ReproError, match=r"differs in seeds"):
        rt._check_out(layout, dataclasses.replace(CPU, seeds=(0, 7)), resume=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ReproError, match=r"not empty and holds no reproduction"):
        rt._check_out(Layout(other), CPU, resume=False)


# -- statistics ---------------------------------------------------------------------------------
def test_bootstrap_of_a_constant_and_of_a_constant_shift_is_exact() -> None:
    a = np.full((3, 5), 0.4)
    assert np.allclose(hierarchical_bootstrap(a, n_boot=50), 0.4)
    b = np.array([[1, 0, 1, 0, 0], [0, 0, 1, 1, 0], [1, 1, 1, 0, 0]], dtype=float)
    # the same seeds and problems are drawn for both, so a constant shift has no spread
    assert np.allclose(hierarchical_bootstrap(b + 0.25, b, n_boot=50), 0.25)


def test_bootstrap_resamples_seeds_as_well_as_problems() -> None:
    # Two seeds that disagree completely on one problem: resampling problems alone would give
    # a point mass at 0.5; resampling seeds gives means 0, 0.5 and 1 in proportions 1:2:1.
    m = np.array([[1.0], [0.0]])
    reps = hierarchical_bootstrap(m, n_boot=4000, seed=1)
    assert set(np.round(reps, 6)) == {0.0, 0.5, 1.0}
    assert abs(np.mean(reps == 0.5) - 0.5) < 0.05


def test_a_single_row_baseline_is_broadcast_over_seeds() -> None:
    base = np.array([[0.0, 1.0, 0.0, 0.0]])
    method = np.array([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    reps = hierarchical_bootstrap(method, base, n_boot=200)
    # per problem the difference is (1, 0, 0, 0): a problem bootstrap of a 0/1 variable
    assert reps.min() >= 0 and reps.max() <= 1 and abs(reps.mean() - 0.25) < 0.05
    with pytest.raises(ValueError, match=r"same seeds \(or one row\), got \[2, 3\]"):
        hierarchical_bootstrap(method, np.zeros((3, 4)))


def test_score_matrix_needs_the_same_problems_for_every_seed() -> None:
    ids, m = score_matrix({1: {"b": 0.0, "a": 1.0}, 0: {"a": 0.5, "b": 1.0}})
    assert ids == ["a", "b"] and m.tolist() == [[0.5, 1.0], [1.0, 0.0]]
    with pytest.raises(ReproError, match=r"seed 1 was evaluated on other problems"):
        score_matrix({0: {"a": 1.0}, 1: {"b": 1.0}})


def test_method_results_report_means_per_seed_and_paired_differences() -> None:
    scores = {
        ("base", "arith"): {-1: {"p1": 0.0, "p2": 0.0, "p3": 1.0, "p4": 0.0}},
        ("rs", "arith"): {0: {"p1": 1.0, "p2": 0.0, "p3": 1.0, "p4": 0.0}, 1: dict.fromkeys(
            ("p1", "p2", "p3", "p4"), 0.0
        )},
        ("brite-t1", "arith"): {0: dict.fromkeys(("p1", "p2", "p3", "p4"), 1.0), 1: {
            "p1": 1.0, "p2": 1.0, "p3": 1.0, "p4": 0.0
        }},
    }  # fmt: skip
    results = method_results(scores, ["base", "rs", "brite-t1"], ["arith"], n_boot=500)
    by = {r.method: r for r in results}
    assert by["base"].per_seed == (0.25,) and by["base"].seeds == 1
    assert by["rs"].per_seed == (0.5, 0.0) and by["rs"].accuracy.mean == 0.25
    assert by["brite-t1"].accuracy.mean == 0.875
    assert by["brite-t1"].vs["rs"].mean == pytest.approx(0.625)
    assert by["brite-t1"].vs["base"].mean == pytest.approx(0.625)
    assert by["rs"].vs["base"].mean == pytest.approx(0.0)
    assert "brite-t1" in by["rs"].vs  # brite-t1 is a reference too (T=2 vs T=1)
    for r in results:
        assert r.accuracy.lo <= r.accuracy.mean <= r.accuracy.hi


# -- regrading ----------------------------------------------------------------------------------
def test_stated_accuracy_regrades_without_the_last_number_guess(tmp_path: Path) -> None:
    from agents.metrics import SampleRecord
    from verifiers import Status, Verdict

    config = {
        "envs": [{"name": "arith", "split": "test", "size": 3, "task_kwargs": {"levels": [1]}}]
    }
    (tmp_path / "run.json").write_text(
        json.dumps({"label": "x", "envs": ["arith"], "config": config})
    )
    pid = "arith/test/s0/L1/0"  # "Chloe has 14 books. Then she gives 5 books to Ava. ..." -> 9
    completions = [
        "14 - 5 = 9. So the answer is \\boxed{9}.",  # stated and right
        "Chloe gives away 5 books, 14 - 5 = 9",  # right only as the last number
        "So the answer is \\boxed{19}.",  # wrong
    ]
    verdict = Verdict(score=0.0, status=Status.INCORRECT, extracted=None, reason="from a file")
    records = [
        SampleRecord("arith", pid, i, "", text, verdict) for i, text in enumerate(completions)
    ]
    assert rt.stated_accuracy(tmp_path, {"arith": records}) == {"arith": pytest.approx(1 / 3)}


# -- the results document -----------------------------------------------------------------------
def _summary(tag: str, accuracy: float) -> Summary:
    plan = dataclasses.replace(PRESETS["smoke"], methods=("base", "rs"))
    job = JobRecord(
        track="arith",
        method="rs",
        seed=0,
        train_command="brite-agent run agent=rs",
        eval_command="brite-agent eval label=rs-s0",
        samples=24,
        generated_tokens=150,
        trained_completion_tokens=40,
        trained_total_tokens=400,
        train_s=3.0,
        eval_s=1.0,
        accuracy={"arith": accuracy},
        finished={"arith": 0.25},
        stated={"arith": 0.125},
        sample_accuracy=(0.1, 0.2),
        psi_reward=(),
        psi_verifier=(),
    )
    result = MethodResult(
        method="rs",
        env="arith",
        seeds=1,
        problems=4,
        accuracy=Estimate(accuracy, 0.0, 1.0),
        per_seed=(accuracy,),
        vs={"base": Estimate(0.25, -0.25, 0.75)},
    )
    return Summary(
        tag=tag,
        plan=plan,
        specs=tuple(method_spec(plan, m) for m in plan.methods),
        jobs=(job,),
        results=(result,),
        compare_pooled="# Comparison\n\n| run | arith (4) |\n",
        compare_per_seed="# Comparison\n",
        plots=(),
        command="python -m benchmarks.repro_table1 --smoke",
        out="/tmp/x",
        machine={"cores": "2", "gpu": "none"},
        created="2025-01-01T00:00:00+00:00",
        wall_s=12.0,
        compute_s=4.0,
    )


def test_summary_round_trips_through_json() -> None:
    s = _summary("smoke", 0.5)
    assert Summary.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_results_document_keeps_hand_written_text_and_replaces_its_block(tmp_path: Path) -> None:
    doc = tmp_path / "docs" / "RESULTS.md"
    layout = Layout(tmp_path / "out")
    rt.write_results(_summary("smoke", 0.5), layout, doc)
    text = doc.read_text()
    assert "| rs | 50.0 [0.0, 100.0] | 50.0 | 12.5 | 25.0 | +25.0 [-25.0, +75.0] | — |" in text
    assert "| rs | 2 iterations x 4 problems x k=3 | 24 | 24 | 150 | 78% | 40 | 3 | 1 |" in text
    assert "#### Comparison" in text  # compare's own headings sit under the section's
    doc.write_text(text.replace("(Hand-written:", "BRiTE lost, because ... (Hand-written:"))
    rt.write_results(_summary("smoke", 0.75), layout, doc)
    rt.write_results(_summary("gpu-run", 0.25), layout, doc)
    text = doc.read_text()
    assert "BRiTE lost, because" in text
    assert "| rs | 75.0 [0.0, 100.0]" in text and "50.0 [0.0, 100.0]" not in text
    assert text.count("repro_table1:smoke:start") == 1 and "repro_table1:gpu-run:start" in text
    assert text.index("repro_table1:gpu-run:end") < text.index("## Reading")
    doc.write_text(text.replace(rt.BLOCK_END.format(tag="smoke"), ""))
    with pytest.raises(ReproError, match=r"only one of its markers"):
        rt.write_results(_summary("smoke", 0.5), layout, doc)


def test_verdicts_say_whether_the_interval_excludes_zero() -> None:
    s = _summary("smoke", 0.5)
    plan = dataclasses.replace(s.plan, methods=("base", "rs", "brite-t1"))
    win = MethodResult(
        "brite-t1", "arith", 3, 100, Estimate(0.5, 0.4, 0.6), (0.5,) * 3,
        {"rs": Estimate(0.1, 0.04, 0.16)},
    )  # fmt: skip
    tie = dataclasses.replace(win, method="brite-t2", vs={"rs": Estimate(0.05, -0.05, 0.15)})
    lines = rt.verdicts(dataclasses.replace(s, plan=plan, results=(win, tie)))
    assert lines == [
        "- arith: brite-t1 **beats** rs: +10.0 [+4.0, +16.0] points "
        "(difference / CI half-width = +1.7)",
        "- arith: brite-t2 is **not distinguishable** from rs: +5.0 [-5.0, +15.0] points "
        "(difference / CI half-width = +0.5)",
    ]


# -- end to end ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_smoke_run_end_to_end(tmp_path: Path, one_thread: Any) -> None:
    out = tmp_path / "repro"
    assert rt.main(["--smoke", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    jobs = {(j["method"], j["seed"]): j for j in summary["jobs"]}
    assert set(jobs) == {(m, 0) for m in rt.METHODS}  # base: the seed's warm-up model
    for method in ("rs", "star", "dpo", "brite-t1", "brite-t2", "brite-dpo"):
        job = jobs[(method, 0)]
        # tiny solves nothing, so STaR rationalizes every problem and reaches its bound too
        assert job["samples"] == 24, method
        assert 0 < job["generated_tokens"] <= 24 * 8, method
    assert jobs[("base", 0)]["stated"] == {"arith": 0.0}  # tiny states no right answer
    assert jobs[("base", 0)]["samples"] == 0 and jobs[("base", 0)]["trained_completion_tokens"] > 0
    assert jobs[("sft", 0)]["samples"] == 0 and jobs[("sft", 0)]["trained_completion_tokens"] > 0
    assert len(jobs[("brite-t1", 0)]["psi_reward"]) == 2
    assert len(jobs[("brite-t2", 0)]["psi_reward"]) == 2  # one update in each of 2 iterations
    assert len(jobs[("rs", 0)]["sample_accuracy"]) == 2
    results = {r["method"]: r for r in summary["results"]}
    assert set(results) == set(rt.METHODS)
    assert results["rs"]["problems"] == 4 and results["rs"]["seeds"] == 1
    for sub in ("pooled", "per-seed"):
        assert (out / "compare" / sub / "compare.md").is_file()
        assert (out / "compare" / sub / "compare.html").is_file()
    pooled = json.loads((out / "pooled" / "rs" / "run.json").read_text())
    assert pooled["label"] == "rs" and pooled["envs"] == ["arith"]
    doc = (out / "RESULTS.md").read_text()
    assert "repro_table1:smoke:start" in doc and "## Reading" in doc
    for name in ("accuracy.png", "psi_reward.png", "sample_accuracy.png"):
        assert (out / "results" / "smoke" / name).is_file(), name
        assert f"(results/smoke/{name})" in doc

    # stage checkpoints' weights are pruned once a run is complete; final/ stays
    assert not list((out / "runs").rglob("stages/**/model"))
    assert (out / "runs" / "arith" / "brite-t2-s0" / "stages" / "iter2" / "psi" / "DONE").is_file()

    # a resumed run finds everything done and trains nothing again
    finals = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/*/final/config.json")}
    assert len(finals) == 8  # the warm-up and the 7 trained methods
    assert rt.main(["--smoke", "--out", str(out), "--resume"]) == 0
    assert {p: p.stat().st_mtime_ns for p in finals} == finals
    resumed = json.loads((out / "summary.json").read_text())
    assert resumed["command"] == f"python -m benchmarks.repro_table1 --smoke --out {out}"

    # --report-only re-renders from summary.json and keeps the hand-written reading
    (out / "RESULTS.md").write_text(doc.replace("(Hand-written:", "Tiny learns nothing. (Hand-"))
    assert rt.main(["--smoke", "--out", str(out), "--report-only"]) == 0
    assert "Tiny learns nothing." in (out / "RESULTS.md").read_text()
    # and a fresh run into the same folder is refused
    assert rt.main(["--smoke", "--out", str(out)]) == 2
