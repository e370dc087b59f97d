"""The performance suite (``benchmarks.perf``): records, extractors, failure reporting, and
the generated report. No timing is asserted: speed targets belong to the benchmarks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
import pytest

from benchmarks import perf
from benchmarks.generation_throughput import count_new_tokens
from benchmarks.perf import (
    Benchmark,
    BenchmarkRun,
    Comparison,
    Extracted,
    Machine,
    PerfError,
    SuiteReport,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def _machine() -> Machine:
    return Machine(
        cpu="Test CPU 3000",
        logical_cpus=4,
        available_cpus=2,
        cpu_quota="none",
        memory_gib=16.0,
        os="Debian GNU/Linux 12",
        kernel="Linux 6.1 (x86_64)",
        python="3.11.7 (CPython)",
        packages=(("torch", "2.13.0"), ("evalplus", "not installed")),
        load_average_start=(1.0, 0.5, 0.25),
        load_average_end=(2.0, 1.0, 0.5),
    )


def _report(*runs: BenchmarkRun, quick: bool = False) -> SuiteReport:
    return SuiteReport(
        generated="2025-01-01T00:00:00+00:00",
        commit="abc123",
        command="python -m benchmarks.perf",
        quick=quick,
        machine=_machine(),
        runs=runs,
        seconds=75.0,
    )


def _fake_module(folder: Path, name: str, body: str) -> str:
    """A module the suite can run with ``python -m`` once ``folder`` is on PYTHONPATH."""
    (folder / f"{name}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    return name


def _no_extract(res: Mapping[str, Any]) -> Extracted:
    raise AssertionError("a failed benchmark's results are never read")


# ------------------------------------------------------------------------------ records
def test_comparison_ratio_direction_and_round_trip() -> None:
    faster = Comparison("b", "grading", "s", ours=2.0, anchor="x", anchor_value=8.0, better="lower")
    assert faster.ratio == 0.25 and faster.speedup == 4.0
    slower = Comparison("b", "rate", "1/s", ours=2.0, anchor="x", anchor_value=8.0, better="higher")
    assert slower.ratio == 0.25 and slower.speedup == 0.25
    assert faster.to_dict()["ratio"] == 0.25
    assert Comparison.from_dict(faster.to_dict()) == faster


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("better", "sideways", "'sideways'"),
        ("ours", 0.0, "ours must be a finite number > 0"),
        (
            "anchor_value",
            float("nan"),
            "b: m: anchor_value must be a finite number > 0 to form a ratio, got nan",
        ),
    ],
)
def test_comparison_rejects_bad_values(field: str, value: Any, message: str) -> None:
    kwargs: dict[str, Any] = {
        "benchmark": "b",
        "measure": "m",
        "unit": "u",
        "ours": 1.0,
        "anchor": "a",
        "anchor_value": 1.0,
        "better": "higher",
        field: value,
    }
    with pytest.raises(ValueError, match=message):
        Comparison(**kwargs)


def test_benchmark_run_needs_a_reason_or_comparisons() -> None:
    with pytest.raises(ValueError, match="'x' is failed without a reason"):
        BenchmarkRun("x", "failed", "cmd", "")
    with pytest.raises(ValueError, match="'x' is ok but has no comparisons"):
        BenchmarkRun("x", "ok", "cmd", "")
    with pytest.raises(ValueError, match="'done'"):
        BenchmarkRun("x", "done", "cmd", "")  # type: ignore[arg-type]


def test_suite_report_round_trips_through_json(tmp_path: Path) -> None:
    c = Comparison("b", "m", "u", 3.0, "a", 2.0, "higher", "n")
    report = _report(
        BenchmarkRun("b", "ok", "cmd", "d", 1.5, comparisons=(c,), settings=(("k", "v"),)),
        BenchmarkRun("e", "unavailable", "cmd2", "", reason="no evalplus"),
    )
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(report.to_dict()))
    assert perf.load_report(path) == report
    assert not report.ok


def test_load_report_names_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "suite.json"
    bad.write_text('{\n  "generated": 1,\n  oops\n}')
    with pytest.raises(PerfError, match=r"suite\.json, line 3: not valid JSON"):
        perf.load_report(bad)
    bad.write_text("{}")
    with pytest.raises(PerfError, match=r"suite\.json: not a suite report .*'generated'"):
        perf.load_report(bad)
    with pytest.raises(PerfError, match="no such file"):
        perf.load_report(tmp_path / "missing.json")


# ------------------------------------------------------------------------------ extractors
def test_ppo_extractor_compares_both_variants_with_trl() -> None:
    res = {
        "args": {"prompts": 2, "group": 4, "max_new_tokens": 24, "warmup": 1, "steps": 3},
        "results": [
            {
                "model": "tiny",
                "ours_tokens_per_s": 300.0,
                "trl_tokens_per_s": 200.0,
                "ours_unshared_tokens_per_s": 250.0,
                "ours_seconds_per_update": 0.5,
                "trl_seconds_per_update": 0.75,
                "ours_mean_completion": 24.0,
                "trl_mean_completion": 24.0,
            }
        ],
    }
    res["args"]["lr"] = 1e-6
    out = perf._ppo_throughput(res)
    assert [(c.measure, c.ratio, c.better) for c in out.comparisons] == [
        ("PPO update throughput, tiny", 1.5, "higher"),
        ("PPO update throughput, tiny, without prompt sharing", 1.25, "higher"),
    ]
    assert ("batch", "2 prompts x 4 completions") in out.settings


def test_sandbox_extractor_times_are_lower_is_better() -> None:
    phase = {
        "brite_s": 3.0,
        "evalplus_s": 12.0,
        "agreement": {"tasks": 164, "base_agree": 164, "plus_agree": 163},
        "brite_pass": [164, 164],
        "evalplus_pass": [164, 163],
    }
    res = {
        "tasks": 164,
        "concurrency": 2,
        "rounds": 3,
        "phases": {"cold": phase},
        "cli_defaults": {"brite_s": 3.0, "evalplus_s": 30.0, "evalplus_parallel": 1},
    }
    out = perf._sandbox_humanevalplus(res)
    assert [(c.ratio, c.speedup, c.better) for c in out.comparisons] == [
        (0.25, 4.0, "lower"),
        (0.1, 10.0, "lower"),
    ]
    assert "plus 163/164" in out.comparisons[0].notes
    # With batches and a floor run, both are named: the floor as its ratio to evalplus.
    res.update(machine={"brite_batch_size": 16}, floor={"serial_s": 11.0, "parallel_s": 5.4})
    res.pop("cli_defaults")
    (cold,) = perf._sandbox_humanevalplus(res).comparisons
    assert cold.measure.endswith("cold caches, batches of 16"), cold.measure
    assert "floor (the solutions alone, bare) 10.80 s = 0.900x evalplus" in cold.notes, cold.notes
    # ... and both tools against it (the overhead over the bare functions, which does not
    # swing with evalplus's own speed)
    assert "brite 0.28x the floor, evalplus 1.11x" in cold.notes, cold.notes


def test_token_step_extractor_reports_overhead_per_step() -> None:
    res: dict[str, Any] = {"envs": 8, "tokens_per_env": 512, "raw_loop_steps_per_s": 1e6}
    for path in ("token_vector_env", "reasoning_env", "sync_vector_env"):
        res[f"{path}_long_steps_per_s"] = 2.5e5  # 4 µs per step, 1 µs of it the raw loop's
        res[f"{path}_short_steps_per_s"] = 2.5e5
        res[f"{path}_short_ratio_to_raw"] = 0.25
    out = perf._token_step(res)
    assert len(out.comparisons) == 3
    assert all(c.ratio == 0.25 for c in out.comparisons)
    assert out.comparisons[0].notes.startswith("3 µs per step over the raw loop")


def test_extractors_name_a_missing_key() -> None:
    with pytest.raises(KeyError, match="results"):
        perf._generation_throughput({"args": {}})


def test_count_new_tokens_stops_at_the_first_eos_and_ignores_padding() -> None:
    eos = frozenset({2})
    rows = [
        [5, 6, 7, 8],  # no EOS: all 4 generated
        [5, 2, 2, 2],  # EOS second, then padding that is the EOS id itself
        [2, 0, 0, 0],  # EOS first
    ]
    assert count_new_tokens(rows, eos) == 4 + 2 + 1
    assert count_new_tokens([], eos) == 0


# ------------------------------------------------------------------------------ running
def test_select_rejects_unknown_names() -> None:
    assert [b.name for b in perf.select("ppo_throughput,token_step")] == [
        "token_step",
        "ppo_throughput",
    ]
    with pytest.raises(ValueError, match=r"unknown benchmark\(s\) \['nope'\]; choose from"):
        perf.select("token_step,nope")


@pytest.mark.parametrize(
    ("lines", "code", "expected"),
    [
        (
            ["Traceback (most recent call last):", '  File "x.py"', "RuntimeError: no GPU"],
            1,
            "exit status 1: RuntimeError: no GPU",
        ),
        (["usage: x", "x.py: error: --envs must be >= 1"], 2, "x.py: error: --envs must be"),
        (["starting", "MATH-500 data not found at /d"], 1, "exit status 1: MATH-500 data not"),
        ([], -9, "killed by signal 9, with no output"),
    ],
)
def test_failure_reason_picks_the_telling_line(lines: list[str], code: int, expected: str) -> None:
    assert expected in perf.failure_reason(lines, code)


def test_failing_benchmark_is_reported_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    crash = _fake_module(
        tmp_path,
        "brite_perf_test_crash",
        """
        print("loading the model")
        raise RuntimeError("CUDA out of memory while loading the model")
        """,
    )
    garbled = _fake_module(
        tmp_path,
        "brite_perf_test_garbled",
        """
        import sys
        with open(sys.argv[sys.argv.index("--json") + 1], "w") as fh:
            fh.write('{"results": [')
        """,
    )
    report = perf.run_suite(
        [
            Benchmark("crash", _no_extract, module=crash),
            Benchmark("garbled", perf._generation_throughput, module=garbled),
        ],
        quick=True,
        command="test",
    )
    crashed, unreadable = report.runs
    assert crashed.status == "failed"
    assert (
        crashed.reason == "exit status 1: RuntimeError: CUDA out of memory while loading the model"
    )
    assert "loading the model" in crashed.output_tail
    assert unreadable.status == "failed"
    assert unreadable.reason.startswith("cannot read its results (JSONDecodeError")
    text = perf.render_markdown(report)
    assert (
        "| crash | **failed** | | | | | | | exit status 1: RuntimeError: CUDA out of memory "
        "while loading the model |"
    ) in text
    assert "| garbled | **failed** |" in text


def test_a_hung_benchmark_is_stopped_with_all_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    hang = _fake_module(
        tmp_path,
        "brite_perf_test_hang",
        """
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "brite-perf-hang"])
        print("started", flush=True)
        time.sleep(120)
        """,
    )
    run = perf.run_benchmark(Benchmark("hang", _no_extract, module=hang), quick=True, timeout=6)
    assert run.status == "failed" and run.reason == "timed out after 6 s (raise --timeout)"
    assert run.output_tail == "started"
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if "brite_perf_test_hang" in cmdline or "brite-perf-hang" in cmdline:
            left.append(cmdline)
    assert left == []


def test_missing_data_is_unavailable_and_strict_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BRITE_DATA_DIR", str(tmp_path / "empty"))
    out = tmp_path / "PERF.md"
    argv = ["--quick", "--only", "verifier_throughput", "--out", str(out)]
    assert perf.main(argv) == 0
    assert perf.main([*argv, "--strict"]) == 1
    text = out.read_text()
    expected = (
        f"| verifier_throughput | **unavailable** | | | | | | | data file "
        f"{tmp_path / 'empty' / 'math500' / 'test.jsonl'} not found (fix: set BRITE_DATA_DIR to "
        "the folder holding math500/test.jsonl) |"
    )
    assert expected in text
    assert "verifier_throughput: unavailable: data file" in capsys.readouterr().err


def test_a_quick_run_does_not_overwrite_the_report_unless_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BRITE_DATA_DIR", str(tmp_path))  # no data: nothing runs
    monkeypatch.setattr(perf, "DEFAULT_OUT", tmp_path / "PERFORMANCE.md")
    assert perf.main(["--quick", "--only", "verifier_throughput"]) == 0
    assert not (tmp_path / "PERFORMANCE.md").exists()
    assert "not writing" in capsys.readouterr().out


def test_markdown_report_states_provenance_machine_and_sections() -> None:
    c = Comparison(
        benchmark="gen",
        measure="generation, tiny",
        unit="new tokens/s",
        ours=300.0,
        anchor="model.generate",
        anchor_value=200.0,
        better="higher",
        notes="wall per batch 1 s vs 1.5 s",
    )
    run = BenchmarkRun(
        name="gen",
        status="ok",
        command="python -m benchmarks.gen",
        description="What it does.",
        seconds=12.0,
        comparisons=(c,),
        settings=(("batch", "8"),),
    )
    report = _report(run, quick=True)
    text = perf.render_markdown(report)
    for line in (
        "# Performance",
        "| generated | 2025-01-01T00:00:00+00:00 |",
        "| commit | `abc123` |",
        "| command | `python -m benchmarks.perf` |",
        "| suite wall time | 1 min 15 s |",
        "## Machine",
        "| CPU | Test CPU 3000 |",
        "| cores | 2 available to the process (4 logical CPUs; cgroup CPU limit: none) |",
        "| memory | 16 GiB |",
        "| packages | torch 2.13.0, evalplus not installed |",
        "| load average (1 min) | 1 at the start, 2 at the end |",
        "| gen | generation, tiny | new tokens/s | 300 | model.generate | 200 | 1.5 | "
        "higher is better | 1.50x faster |",
        "### gen",
        "What it does.",
        "- batch: 8",
        "- generation, tiny: wall per batch 1 s vs 1.5 s",
    ):
        assert line in text.splitlines(), line
    assert "one run on the machine described" in text and "**Quick run**" in text


# ------------------------------------------------------------------------------ end to end
def _run_perf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.perf", *args],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def _check_report(md: Path, js: Path, names: list[str]) -> SuiteReport:
    report = perf.load_report(js)
    assert [r.name for r in report.runs] == names
    text = md.read_text()
    assert "## Machine" in text and f"| CPU | {report.machine.cpu} |" in text
    assert f"| commit | `{report.commit}` |" in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and "is better |" in ln]
    for run in report.runs:
        assert run.status == "ok", run.reason
        assert run.comparisons
        for c in run.comparisons:
            assert c.ratio == c.ours / c.anchor_value
            ratio_cell = f" | {c.ratio:.3g} | {c.better} is better | "
            assert any(r.startswith(f"| {run.name} | ") and ratio_cell in r for r in rows)
    return report


def test_quick_suite_writes_the_report(tmp_path: Path, data_dir: Path) -> None:
    md, js = tmp_path / "PERF.md", tmp_path / "suite.json"
    only = "token_step,verifier_throughput"
    proc = _run_perf("--quick", "--only", only, "--out", str(md), "--json", str(js), "--strict")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = _check_report(md, js, ["token_step", "verifier_throughput"])
    assert report.quick and report.command.endswith("--strict")
    assert [r.command for r in report.runs] == [
        "python -m benchmarks.token_step --quick",
        "python -m benchmarks.verifier_throughput --quick",
    ]


def test_brite_agent_bench_runs_the_suite(tmp_path: Path, data_dir: Path) -> None:
    """``brite-agent bench`` is the suite under the project's CLI, with the same flags."""
    from agents.cli import main

    md = tmp_path / "PERF.md"
    assert main(["bench", "--quick", "--only", "token_step", "--out", str(md), "--strict"]) == 0
    text = md.read_text()
    assert "token_step" in text and "## Machine" in text, text[:2000]


@pytest.mark.slow
def test_quick_generation_throughput_on_tiny(tmp_path: Path) -> None:
    md, js, raw = tmp_path / "PERF.md", tmp_path / "suite.json", tmp_path / "raw"
    only = "generation_throughput"
    proc = _run_perf(
        "--quick", "--only", only, "--out", str(md), "--json", str(js), "--keep-raw", str(raw)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = _check_report(md, js, ["generation_throughput"])
    (c,) = report.runs[0].comparisons
    assert c.measure == "generation, tiny, batch 4" and c.unit == "new tokens/s"
    res = json.loads((raw / "generation_throughput.json").read_text())
    (r,) = res["results"]
    assert (r["batch"], r["max_new_tokens"], r["repeats"]) == (4, 16, 2)
    for side in ("ours_runs", "generate_runs"):
        assert len(r[side]) == 2
        assert all(1 <= t["new_tokens"] <= 4 * 16 for t in r[side])
    assert r["ours_mean_new_tokens"] == sum(t["new_tokens"] for t in r["ours_runs"]) / 8
    assert c.ours == r["ours_tokens_per_s"] and c.anchor_value == r["generate_tokens_per_s"]
