"""`compare`: eval directories written with SampleRecord.to_json become a Table-1 style table
with bootstrap intervals and paired differences to a baseline; bad directories stop with an
error naming the file and line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agents.compare import compare, format_cell, load_eval_dir, write_comparison
from agents.errors import EvalDataError
from agents.metrics import SampleRecord
from tests.test_report import Page
from verifiers.base import Status, Verdict

# Per env: problem id -> correctness of its samples (sample_index 0, 1, ...).
BASE = {
    # problem means 1, .5, 0, 0, .5 -> 2/5 = 0.4
    "gsm8k": {"g0": [1, 1], "g1": [1, 0], "g2": [0, 0], "g3": [0, 0], "g4": [1, 0]},
    # 1/4 = 0.25
    "math500": {"m0": [1], "m1": [0], "m2": [0], "m3": [0]},
}
BRITE = {
    # problem means 1, 1, .5, 0, 1 -> 3.5/5 = 0.7; differences to BASE 0, .5, .5, 0, .5 -> 0.3
    "gsm8k": {"g0": [1, 1], "g1": [1, 1], "g2": [1, 0], "g3": [0, 0], "g4": [1, 1]},
    # 2/4 = 0.5; differences 0, 1, 0, 0 -> 0.25
    "math500": {"m0": [1], "m1": [1], "m2": [0], "m3": [0]},
}


def record(env: str, pid: str, idx: int, ok: int) -> SampleRecord:
    verdict = Verdict(float(ok), Status.CORRECT if ok else Status.INCORRECT, str(ok), "graded")
    return SampleRecord(env, pid, idx, f"Q {pid}", f"answer {ok}", verdict)


def write_eval_dir(path: Path, label: str | None, envs: dict[str, dict[str, list[int]]]) -> Path:
    """An eval directory laid out as `brite-agent eval` writes it (run.json + samples)."""
    path.mkdir(parents=True)
    run: dict[str, object] = {"model": "tiny", "envs": list(envs), "n": 2, "config": {}}
    if label is not None:
        run["label"] = label
    (path / "run.json").write_text(json.dumps(run))
    for env, problems in envs.items():
        (path / env).mkdir()
        lines = [
            json.dumps(record(env, pid, i, ok).to_json())
            for pid, oks in problems.items()
            for i, ok in enumerate(oks)
        ]
        (path / env / "samples.jsonl").write_text("".join(line + "\n" for line in lines))
    return path


@pytest.fixture
def two_runs(tmp_path: Path) -> list[Path]:
    return [
        write_eval_dir(tmp_path / "base", "base", BASE),
        write_eval_dir(tmp_path / "b", "brite", BRITE),
    ]


def test_compare_cells_hold_means_intervals_and_paired_differences(two_runs: list[Path]) -> None:
    c = compare(two_runs, n_boot=1000, seed=0)
    assert (c.rows, c.envs, c.baseline) == (["base", "brite"], ["gsm8k", "math500"], "base")
    base_g, brite_g = c.cells[("base", "gsm8k")], c.cells[("brite", "gsm8k")]
    assert (base_g.mean, base_g.problems, base_g.diff) == (pytest.approx(0.4), 5, None)
    assert brite_g.mean == pytest.approx(0.7)
    assert brite_g.diff == pytest.approx(0.3) and brite_g.common == 5
    assert c.cells[("brite", "math500")].diff == pytest.approx(0.25)
    for cell in c.cells.values():
        assert 0.0 <= cell.lo <= cell.mean <= cell.hi <= 1.0
        if cell.diff is not None:
            assert cell.diff_lo is not None and cell.diff_hi is not None
            assert -1.0 <= cell.diff_lo <= cell.diff <= cell.diff_hi <= 1.0
    # Per-problem differences are all >= 0, so no resample of them has a negative mean.
    assert brite_g.diff_lo is not None and brite_g.diff_lo >= 0.0
    # avg: base (0.4 + 0.25)/2, brite (0.7 + 0.5)/2, diff (0.3 + 0.25)/2
    assert c.averages["base"].mean == pytest.approx(0.325)
    assert c.averages["brite"].mean == pytest.approx(0.6)
    assert c.averages["brite"].diff == pytest.approx(0.275)
    assert compare(two_runs, n_boot=1000, seed=0) == c  # deterministic for a seed
    assert re.fullmatch(
        r"70\.0 \[\d+\.\d, \d+\.\d\]  \+30\.0 \[\d+\.\d, \d+\.\d\]", format_cell(brite_g)
    )
    assert format_cell(None) == "—"
    flipped = compare(two_runs, baseline="brite", n_boot=1000)
    assert flipped.cells[("base", "gsm8k")].diff == pytest.approx(-0.3)
    assert flipped.cells[("brite", "gsm8k")].diff is None


def test_write_comparison_markdown_and_html(two_runs: list[Path], tmp_path: Path) -> None:
    c = compare(two_runs, n_boot=500)
    md, page_path = write_comparison(c, tmp_path / "out")
    assert (md.name, page_path.name) == ("compare.md", "compare.html")
    text = md.read_text(encoding="utf-8")
    assert "| run | gsm8k (5) | math500 (4) | avg |" in text
    base_row = next(line for line in text.splitlines() if line.startswith("| base"))
    brite_row = next(line for line in text.splitlines() if line.startswith("| brite"))
    assert base_row.startswith("| base *(baseline)* | 40.0 [")
    assert "| 25.0 [" in base_row and "| 32.5 [" in base_row and "**" not in base_row
    # brite is best in every column: bold mean, then its CI and its difference to base.
    g = c.cells[("brite", "gsm8k")]
    assert f"| **70.0** [{100 * g.lo:.1f}, {100 * g.hi:.1f}] +30.0 [" in brite_row
    assert "**50.0**" in brite_row and "+25.0 [" in brite_row
    assert "**60.0**" in brite_row and "+27.5 [" in brite_row
    page = Page()
    page.feed(page_path.read_text(encoding="utf-8"))
    page.close()
    assert page.stack == []
    assert "base (baseline)" in page.cells
    assert any(cell.startswith("70.0 [") and "+30.0 [" in cell for cell in page.cells)


def test_missing_envs_and_partial_overlap_are_shown_not_hidden(tmp_path: Path) -> None:
    base = write_eval_dir(tmp_path / "base", None, {"gsm8k": BASE["gsm8k"]})
    other = {"g0": [1, 1], "g1": [1, 1], "g2": [0, 0], "g9": [1, 1]}  # 3 of 4 shared
    rs = write_eval_dir(tmp_path / "rs", "rs", {"gsm8k": other, "aime24": {"a0": [1]}})
    c = compare([base, rs], n_boot=200)
    assert c.rows == ["base", "rs"]  # label defaults to the directory name
    assert c.envs == ["gsm8k", "aime24"]
    cell = c.cells[("rs", "gsm8k")]
    # mean over rs's 4 problems: (1 + 1 + 0 + 1)/4; diff over g0..g2: (0 + .5 + 0)/3
    assert cell.mean == pytest.approx(0.75) and cell.problems == 4 and cell.common == 3
    assert cell.diff == pytest.approx(0.5 / 3)
    assert c.cells[("rs", "aime24")].diff is None  # the baseline has no aime24
    assert ("base", "aime24") not in c.cells
    # Only a row with every env has an average: rs (0.75 + 1)/2, with no diff (base lacks one).
    assert list(c.averages) == ["rs"] and c.averages["rs"].mean == pytest.approx(0.875)
    assert c.averages["rs"].diff is None
    md, _ = write_comparison(c, tmp_path / "out")
    text = md.read_text(encoding="utf-8")
    assert text.splitlines()[4] == "| run | gsm8k | aime24 (1) | avg |"  # problem counts differ
    assert next(x for x in text.splitlines() if x.startswith("| base")).endswith("| — | — |")
    assert "rs on gsm8k: 3 of 4" in text


# -- bad input -------------------------------------------------------------------------------------
def test_load_eval_dir_reads_what_was_written(two_runs: list[Path]) -> None:
    run = load_eval_dir(two_runs[1])
    assert run.label == "brite" and list(run.envs) == ["gsm8k", "math500"]
    assert run.envs["gsm8k"][2] == record("gsm8k", "g1", 0, 1)


def test_missing_files_name_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match=r"eval directory .*nope not found"):
        load_eval_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvalDataError, match=r"empty/run\.json not found.*brite-agent eval"):
        load_eval_dir(tmp_path / "empty")
    d = write_eval_dir(tmp_path / "d", "d", {"gsm8k": BASE["gsm8k"]})
    (d / "run.json").write_text(json.dumps({"label": "d", "envs": ["gsm8k", "math500"]}))
    with pytest.raises(EvalDataError, match=r"math500/samples\.jsonl not found.*lists env"):
        load_eval_dir(d)
    (d / "math500").mkdir()
    (d / "math500" / "samples.jsonl").write_text("")
    with pytest.raises(EvalDataError, match=r"math500/samples\.jsonl has no samples"):
        load_eval_dir(d)
    (d / "run.json").write_text('{\n  "label": "d",\n  "envs": [gsm8k]\n}')
    with pytest.raises(EvalDataError, match=r"run\.json:3: malformed JSON"):
        load_eval_dir(d)
    (d / "run.json").write_text(json.dumps({"envs": []}))
    with pytest.raises(EvalDataError, match="'envs' must be a non-empty list"):
        load_eval_dir(d)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda lines: [lines[0], lines[1][:-5], *lines[2:]], r":2: malformed JSON"),
        (
            lambda lines: [lines[0], lines[1], lines[0], *lines[2:]],
            r":3: duplicate sample \(problem 'g0', sample_index 0\), first on line 1",
        ),
        (lambda lines: [lines[0], "", lines[0], *lines[1:]], r":3: duplicate sample"),
        (
            lambda lines: [lines[0], lines[1].replace('"verdict"', '"verdikt"'), *lines[2:]],
            r":2: sample is missing field\(s\) \['verdict'\]",
        ),
        (
            lambda lines: [lines[0].replace('"env": "gsm8k"', '"env": "math"'), *lines[1:]],
            r":1: sample of env 'math' in the samples of env 'gsm8k'",
        ),
    ],
)
def test_bad_sample_lines_name_file_and_line(tmp_path: Path, edit: object, pattern: str) -> None:
    d = write_eval_dir(tmp_path / "d", "d", {"gsm8k": BASE["gsm8k"]})
    file = d / "gsm8k" / "samples.jsonl"
    lines = file.read_text().splitlines()
    file.write_text("\n".join(edit(lines)) + "\n")  # type: ignore[operator]
    with pytest.raises(EvalDataError, match=re.escape(str(file)) + pattern):
        load_eval_dir(d)


def test_compare_rejects_bad_combinations(tmp_path: Path, two_runs: list[Path]) -> None:
    with pytest.raises(
        EvalDataError, match=r"baseline 'sft' is not one of the runs \['base', 'brite'\]"
    ):
        compare(two_runs, baseline="sft")
    twin = write_eval_dir(tmp_path / "twin", "base", BASE)
    with pytest.raises(EvalDataError, match="two eval directories have the label 'base'"):
        compare([two_runs[0], twin])
    disjoint = write_eval_dir(tmp_path / "other", "other", {"gsm8k": {"x1": [1]}})
    with pytest.raises(EvalDataError, match="env 'gsm8k': no problem id in common"):
        compare([two_runs[0], disjoint])
    with pytest.raises(EvalDataError, match="at least one eval directory"):
        compare([])
