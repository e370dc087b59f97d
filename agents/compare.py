"""Compare eval runs side by side, in the style of the BRiTE paper's Table 1: rows are runs
(base, RS, SFT, BRiTE, ...), columns are benchmarks, and each cell is the accuracy with a
bootstrap 95% confidence interval over problems and its difference to a baseline run with a
paired bootstrap interval over the problems both runs share.

Why paired: two runs graded on the same problems differ far less than their separate intervals
suggest; resampling the per-problem differences gives the interval of the difference itself.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.errors import EvalDataError
from agents.metrics import (
    SampleRecord,
    bootstrap_means,
    paired_differences,
    percentile_interval,
    problem_scores,
)
from agents.report import Block, Heading, Markup, Paragraph, Table, pct, write_document
from agents.report import Cell as TextCell

log = logging.getLogger(__name__)

RUN_JSON = "run.json"
SAMPLES = "samples.jsonl"
AVG = "avg"
LEVEL = 0.95


# -- reading eval directories ----------------------------------------------------------------------
@dataclass(frozen=True)
class EvalRun:
    """One eval directory: its label and the graded samples of each env."""

    label: str
    path: Path
    envs: dict[str, list[SampleRecord]]


def read_samples(path: Path, *, env: str | None = None) -> list[SampleRecord]:
    """Every record of a ``samples.jsonl``; an error naming the file and line for a malformed
    line, a record of another env, or a duplicate (problem_id, sample_index). Blank lines
    hold no sample and are passed over."""
    if not path.is_file():
        raise EvalDataError(f"{path} not found; run `brite-agent eval ... out=DIR` to write it")
    records: list[SampleRecord] = []
    first_line: dict[tuple[str, int], int] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            if not line.strip():  # holds no sample (as for the eval's own resume reader)
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise EvalDataError(
                    f"{where}: malformed JSON ({e.msg} at column {e.colno}); fix or delete the "
                    "line (a resumed eval regenerates a deleted sample)"
                ) from e
            record = SampleRecord.from_json(row, where=where)
            if env is not None and record.env != env:
                raise EvalDataError(
                    f"{where}: sample of env {record.env!r} in the samples of env {env!r}; "
                    f"move it to {path.parent.parent / record.env / SAMPLES}"
                )
            key = (record.problem_id, record.sample_index)
            if key in first_line:
                raise EvalDataError(
                    f"{where}: duplicate sample (problem {record.problem_id!r}, sample_index "
                    f"{record.sample_index}), first on line {first_line[key]}; delete one of them"
                )
            first_line[key] = lineno
            records.append(record)
    return records


def _read_run_json(path: Path) -> dict[str, Any]:
    file = path / RUN_JSON
    if not file.is_file():
        raise EvalDataError(
            f"{file} not found: {path} is not an eval directory; "
            f"write one with `brite-agent eval ... out={path}`"
        )
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise EvalDataError(
            f"{file}:{e.lineno}: malformed JSON ({e.msg} at column {e.colno}); fix the file"
        ) from e
    if not isinstance(data, dict):
        raise EvalDataError(f"{file}: must hold a JSON object, got {type(data).__name__}")
    envs = data.get("envs")
    if (
        not isinstance(envs, list)
        or not envs
        or not all(isinstance(e, str) and e and "/" not in e and e not in (".", "..") for e in envs)
    ):
        raise EvalDataError(
            f"{file}: 'envs' must be a non-empty list of env names, got {envs!r}; fix the file"
        )
    label = data.get("label", path.name)
    if not isinstance(label, str) or not label:
        raise EvalDataError(f"{file}: 'label' must be a non-empty string, got {label!r}")
    return data


def load_eval_dir(path: Path) -> EvalRun:
    """Read ``DIR/run.json`` and ``DIR/<env>/samples.jsonl`` for every env it lists."""
    path = Path(path)
    if not path.is_dir():
        raise EvalDataError(f"eval directory {path} not found; pass the out= of a finished eval")
    data = _read_run_json(path)
    envs: dict[str, list[SampleRecord]] = {}
    for env in data["envs"]:
        file = path / env / SAMPLES
        if not file.is_file():
            raise EvalDataError(
                f"{file} not found, but {path / RUN_JSON} lists env {env!r}; finish the eval "
                f"(rerun `brite-agent eval ... out={path}`, it resumes) or remove {env!r} from "
                "'envs'"
            )
        records = read_samples(file, env=env)
        if not records:
            raise EvalDataError(
                f"{file} has no samples; finish the eval (rerun `brite-agent eval ... "
                f"out={path}`, it resumes) or remove {env!r} from 'envs' in {path / RUN_JSON}"
            )
        envs[env] = records
    unlisted = sorted(p.parent.name for p in path.glob(f"*/{SAMPLES}") if p.parent.name not in envs)
    if unlisted:
        log.warning("%s: env(s) %s have samples but are not in run.json; ignored", path, unlisted)
    return EvalRun(label=data.get("label", path.name), path=path, envs=envs)


# -- the comparison --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """Accuracy of one run on one benchmark (fractions in [0, 1]) and its difference to the
    baseline (None for the baseline itself or when the baseline lacks the benchmark)."""

    mean: float
    lo: float
    hi: float
    diff: float | None
    diff_lo: float | None
    diff_hi: float | None
    problems: int
    common: int | None = None
    """Problems shared with the baseline (the diff is over these); None without a diff."""


@dataclass(frozen=True)
class Comparison:
    """Cells keyed by (row label, env); ``averages`` holds the macro average over all envs
    for rows that have every env (only with two or more envs)."""

    envs: list[str]
    rows: list[str]
    baseline: str
    cells: dict[tuple[str, str], Cell]
    averages: dict[str, Cell] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    n_boot: int = 2000
    level: float = LEVEL


def _cell(
    scores: dict[str, float],
    base: dict[str, float] | None,
    *,
    n_boot: int,
    seed: int,
) -> tuple[Cell, np.ndarray, np.ndarray | None]:
    """A cell and its bootstrap replicates (of the mean and of the paired diff)."""
    ids = sorted(scores)
    values = [scores[i] for i in ids]
    reps = bootstrap_means(values, n_boot=n_boot, seed=seed)
    lo, hi = percentile_interval(reps, LEVEL)
    if base is None:
        cell = Cell(float(np.mean(values)), lo, hi, None, None, None, len(ids))
        return cell, reps, None
    diffs = list(paired_differences(scores, base).values())
    diff_reps = bootstrap_means(diffs, n_boot=n_boot, seed=seed)
    dlo, dhi = percentile_interval(diff_reps, LEVEL)
    cell = Cell(
        float(np.mean(values)), lo, hi, float(np.mean(diffs)), dlo, dhi, len(ids), len(diffs)
    )
    return cell, reps, diff_reps


def _average(parts: Sequence[Cell], reps: Sequence[tuple[np.ndarray, np.ndarray | None]]) -> Cell:
    """The macro average of a row's cells; its intervals average the envs' bootstrap
    replicates (resampled independently per env)."""
    lo, hi = percentile_interval(np.mean([r for r, _ in reps], axis=0), LEVEL)
    mean = float(np.mean([c.mean for c in parts]))
    problems = sum(c.problems for c in parts)
    diff_reps = [d for _, d in reps if d is not None]
    diffs = [c.diff for c in parts if c.diff is not None]
    if len(diff_reps) < len(reps) or len(diffs) < len(parts):
        return Cell(mean, lo, hi, None, None, None, problems)
    dlo, dhi = percentile_interval(np.mean(diff_reps, axis=0), LEVEL)
    common = sum(c.common or 0 for c in parts)
    return Cell(mean, lo, hi, float(np.mean(diffs)), dlo, dhi, problems, common)


def compare(
    dirs: Sequence[Path], *, baseline: str | None = None, n_boot: int = 2000, seed: int = 0
) -> Comparison:
    """Load eval directories and build the comparison. Metric: accuracy (mean score per
    problem, bootstrapped over problems); diff: paired bootstrap over common problem ids.
    ``baseline`` is a row label (default: the first directory's)."""
    if not dirs:
        raise EvalDataError("compare needs at least one eval directory")
    runs = [load_eval_dir(Path(d)) for d in dirs]
    seen: dict[str, Path] = {}
    for run in runs:
        if run.label in seen:
            raise EvalDataError(
                f"two eval directories have the label {run.label!r}: {seen[run.label]} and "
                f"{run.path}; give them distinct labels ('label' in run.json, or "
                "`brite-agent eval ... label=NAME`)"
            )
        seen[run.label] = run.path
    rows = [run.label for run in runs]
    baseline = rows[0] if baseline is None else baseline
    if baseline not in rows:
        raise EvalDataError(f"baseline {baseline!r} is not one of the runs {rows}; pick one")
    envs: list[str] = []
    for run in runs:
        envs += [e for e in run.envs if e not in envs]
    scores = {
        run.label: {env: problem_scores(recs) for env, recs in run.envs.items()} for run in runs
    }
    base_scores = scores[baseline]
    cells: dict[tuple[str, str], Cell] = {}
    reps: dict[tuple[str, str], tuple[np.ndarray, np.ndarray | None]] = {}
    for run in runs:
        for env in run.envs:
            base = base_scores.get(env) if run.label != baseline else None
            try:
                cell, r, d = _cell(scores[run.label][env], base, n_boot=n_boot, seed=seed)
            except EvalDataError as e:
                raise EvalDataError(f"{run.path} and {seen[baseline]}, env {env!r}: {e}") from e
            cells[(run.label, env)] = cell
            reps[(run.label, env)] = (r, d)
    averages: dict[str, Cell] = {}
    if len(envs) > 1:
        for run in runs:
            if any((run.label, env) not in cells for env in envs):
                continue
            averages[run.label] = _average(
                [cells[(run.label, env)] for env in envs],
                [reps[(run.label, env)] for env in envs],
            )
    return Comparison(
        envs=envs,
        rows=rows,
        baseline=baseline,
        cells=cells,
        averages=averages,
        paths={run.label: run.path for run in runs},
        n_boot=n_boot,
    )


# -- rendering -------------------------------------------------------------------------------------
def _signed(x: float) -> str:
    return f"{100 * x:+.1f}"


def _diff(diff: float, lo: float, hi: float) -> str:
    return f"{_signed(diff)} [{pct(lo)}, {pct(hi)}]"


def format_cell(cell: Cell | None) -> str:
    """Plain text of a cell: ``"41.2 [38.0, 44.5]  +3.1 [0.4, 5.9]"``; ``"—"`` when missing."""
    if cell is None:
        return "—"
    text = f"{pct(cell.mean)} [{pct(cell.lo)}, {pct(cell.hi)}]"
    if cell.diff is not None and cell.diff_lo is not None and cell.diff_hi is not None:
        text += f"  {_diff(cell.diff, cell.diff_lo, cell.diff_hi)}"
    return text


def _rich(cell: Cell | None, best: bool) -> Markup:
    if cell is None:
        return Markup("—", '<span class="muted">—</span>')
    mean, ci = pct(cell.mean), f"[{pct(cell.lo)}, {pct(cell.hi)}]"
    md = (f"**{mean}**" if best else mean) + f" {ci}"
    page = (f"<strong>{mean}</strong>" if best else mean) + f' <span class="muted">{ci}</span>'
    if cell.diff is not None and cell.diff_lo is not None and cell.diff_hi is not None:
        diff = _diff(cell.diff, cell.diff_lo, cell.diff_hi)
        md += f" {diff}"
        tone = "up" if cell.diff_lo > 0 else "down" if cell.diff_hi < 0 else "muted"
        page += f'<br><span class="{tone}">{diff}</span>'
    return Markup(md, page)


def comparison_blocks(comparison: Comparison) -> list[Block]:
    """The comparison as document blocks (one table and its notes)."""
    cols = list(comparison.envs) + ([AVG] if comparison.averages else [])

    def get(row: str, col: str) -> Cell | None:
        if col == AVG:
            return comparison.averages.get(row)
        return comparison.cells.get((row, col))

    best: dict[str, set[str]] = {}
    for col in cols:
        shown = {row: pct(c.mean) for row in comparison.rows if (c := get(row, col)) is not None}
        if shown:
            top = max(float(v) for v in shown.values())
            best[col] = {row for row, v in shown.items() if float(v) == top}
    headers = ["run"]
    for col in cols:
        counts = {c.problems for row in comparison.rows if (c := get(row, col)) is not None}
        headers.append(f"{col} ({counts.pop()})" if len(counts) == 1 and col != AVG else col)
    rows: list[list[TextCell]] = []
    for row in comparison.rows:
        name: TextCell = row
        if row == comparison.baseline:
            name = Markup(
                f"{row} *(baseline)*", f'{html.escape(row)} <span class="base">(baseline)</span>'
            )
        rows.append([name, *(_rich(get(row, col), row in best.get(col, ())) for col in cols)])
    level = round(100 * comparison.level)
    blocks: list[Block] = [
        Paragraph(
            f"Accuracy in % (mean score per problem; the column header gives the number of "
            f"problems) with a bootstrap {level}% interval over problems ({comparison.n_boot} "
            f"resamples). The second figure is the difference to the baseline "
            f"\u201c{comparison.baseline}\u201d with a paired bootstrap {level}% interval over "
            "the problems both runs share. Bold: the best run per column."
            + (f" {AVG}: the mean over all benchmarks." if comparison.averages else "")
        ),
        Table(headers, rows),
    ]
    partial = [
        f"{row} on {env}: {c.common} of {c.problems}"
        for (row, env), c in comparison.cells.items()
        if c.common is not None and c.common != c.problems
    ]
    if partial:
        blocks.append(
            Paragraph(
                "The difference is over the problems shared with the baseline only: "
                + "; ".join(partial)
                + "."
            )
        )
    blocks += [
        Heading("Runs"),
        Table(
            ["run", "eval directory"],
            [[row, str(comparison.paths.get(row, ""))] for row in comparison.rows],
            [False, False],
        ),
    ]
    return blocks


def write_comparison(comparison: Comparison, out: Path) -> tuple[Path, Path]:
    """Write ``out/compare.md`` and ``out/compare.html`` (self-contained); returns both."""
    return write_document(Path(out), "compare", comparison_blocks(comparison), title="Comparison")
