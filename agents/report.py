"""Eval reports: one Markdown file (plots as PNG files) and one self-contained HTML file (plots
embedded as base64), built from the same blocks so the two never disagree.

Why both: Markdown diffs well and renders on GitHub next to the run; the HTML file can be mailed
or attached anywhere and still shows its plots (no external assets, no scripts).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.metrics import EnvMetrics, SampleRecord, natural_key
from verifiers.base import Status

PLOTS = "plots"
_PLOT_NAMES = ("status_counts", "pass_at_k", "accuracy_by_level", "completion_lengths")
_STATUS_COLORS = {
    "correct": "#2e9e5b",
    "incorrect": "#d1495b",
    "unparsable": "#edae49",
    "timeout": "#7b5ea7",
    "error": "#6c757d",
}
_MAX_FAILURES = 20
_REASON_CHARS = 160


# -- document blocks, rendered to Markdown and HTML --------------------------------------------
@dataclass(frozen=True)
class Markup:
    """Text already rendered for each format (used for emphasis and colour)."""

    md: str
    html: str


def plain(text: str) -> Markup:
    """Literal text, escaped for both formats."""
    return Markup(md_escape(text), html.escape(text))


def md_escape(text: str) -> str:
    """Escape what would break a Markdown table cell or start emphasis."""
    return (
        text.replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("*", "\\*")
        .replace("<", "&lt;")
        .replace("\n", " ")
    )


Cell = str | Markup


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: Cell


@dataclass(frozen=True)
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[Cell]]
    numeric: Sequence[bool] = ()
    """Per column: right-align (numbers); missing columns are text. Default: every column
    but the first."""

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.headers):
                raise ValueError(f"table row {row!r} has {len(row)} cells for {self.headers!r}")


@dataclass(frozen=True)
class Plot:
    name: str
    """File stem under ``plots/``."""
    caption: str
    png: bytes


Block = Heading | Paragraph | Table | Plot


def _markup(cell: Cell) -> Markup:
    return cell if isinstance(cell, Markup) else plain(cell)


def _aligns(table: Table) -> list[bool]:
    if table.numeric:
        return [
            bool(table.numeric[i]) if i < len(table.numeric) else False
            for i in range(len(table.headers))
        ]
    return [i > 0 for i in range(len(table.headers))]


def render_markdown(blocks: Sequence[Block], *, title: str) -> str:
    """The Markdown document; plots are linked as ``plots/<name>.png``."""
    out = [f"# {md_escape(title)}", ""]
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + md_escape(block.text), ""]
        elif isinstance(block, Paragraph):
            out += [_markup(block.text).md, ""]
        elif isinstance(block, Table):
            out.append("| " + " | ".join(md_escape(h) for h in block.headers) + " |")
            out.append("|" + "|".join("--:" if a else ":--" for a in _aligns(block)) + "|")
            out += ["| " + " | ".join(_markup(c).md for c in row) + " |" for row in block.rows]
            out.append("")
        else:
            out += [f"![{md_escape(block.caption)}]({PLOTS}/{block.name}.png)", ""]
    return "\n".join(out).rstrip() + "\n"


CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 color:#212529;background:#fff;margin:0;line-height:1.45;font-size:15px}
main{max-width:1080px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:1.6em;margin:0 0 .4em}h2{font-size:1.2em;margin:1.6em 0 .5em;
 border-bottom:1px solid #dee2e6;padding-bottom:.2em}h3{font-size:1.05em;margin:1.2em 0 .4em}
p{margin:.4em 0 .8em}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:.92em}
th,td{padding:4px 10px;border-bottom:1px solid #e9ecef;vertical-align:top}
th{background:#f8f9fa;border-bottom:2px solid #dee2e6;text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:hover td{background:#f8f9fa}
figure{margin:.6em 0 1.2em}figure img{max-width:100%;height:auto}
figcaption{color:#6c757d;font-size:.88em}
.muted{color:#6c757d}.up{color:#2e7d32}.down{color:#c62828}.base{font-style:italic}
code{font-size:.9em;background:#f1f3f5;padding:0 3px;border-radius:3px}
"""


def render_html(blocks: Sequence[Block], *, title: str) -> str:
    """A self-contained HTML page: inline CSS, plots as ``data:image/png;base64`` images."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head>",
        "<body><main>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            out.append(f"<p>{_markup(block.text).html}</p>")
        elif isinstance(block, Table):
            aligns = _aligns(block)
            cls = [' class="num"' if a else "" for a in aligns]
            head = "".join(
                f"<th{c}>{html.escape(h)}</th>" for h, c in zip(block.headers, cls, strict=True)
            )
            body = "".join(
                "<tr>"
                + "".join(f"<td{c}>{_markup(v).html}</td>" for v, c in zip(row, cls, strict=True))
                + "</tr>"
                for row in block.rows
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        else:
            data = base64.b64encode(block.png).decode("ascii")
            cap = html.escape(block.caption)
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{cap}">'
                f"<figcaption>{cap}</figcaption></figure>"
            )
    out += ["</main></body>", "</html>"]
    return "\n".join(out) + "\n"


def write_document(
    out_dir: Path, stem: str, blocks: Sequence[Block], *, title: str
) -> tuple[Path, Path]:
    """Write ``<stem>.md``, ``<stem>.html`` and the plots (``plots/<name>.png``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = [b for b in blocks if isinstance(b, Plot)]
    if plots:
        (out_dir / PLOTS).mkdir(exist_ok=True)
    for plot in plots:
        (out_dir / PLOTS / f"{plot.name}.png").write_bytes(plot.png)
    md = out_dir / f"{stem}.md"
    page = out_dir / f"{stem}.html"
    md.write_text(render_markdown(blocks, title=title), encoding="utf-8")
    page.write_text(render_html(blocks, title=title), encoding="utf-8")
    return md, page


def pct(x: float | None) -> str:
    """A fraction as a percentage with one decimal ("—" for None)."""
    return "—" if x is None else f"{100 * x:.1f}"


# -- plots -----------------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Any:
    """A figure on the Agg canvas, without pyplot (no global state, safe in any process)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def _style(ax: Any) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(axis="y", color="#e9ecef", linewidth=0.8)
    ax.set_axisbelow(True)


def _grid(count: int) -> tuple[int, int]:
    cols = min(3, count)
    return math.ceil(count / cols), cols


def _env_colors(envs: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {env: cmap(i % 10) for i, env in enumerate(envs)}


def plot_status_counts(metrics: Sequence[EnvMetrics]) -> bytes:
    """Share of samples per verdict status, one stacked bar per env."""
    fig = _figure(7.0, 0.9 + 0.45 * len(metrics))
    ax = fig.subplots()
    ys = np.arange(len(metrics))
    left = np.zeros(len(metrics))
    for status in Status:
        share = np.array([m.status_counts.get(status.value, 0) / m.samples for m in metrics])
        ax.barh(
            ys,
            100 * share,
            left=100 * left,
            color=_STATUS_COLORS[status.value],
            label=status.value,
            height=0.6,
        )
        left += share
    ax.set_yticks(ys, [m.env for m in metrics])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of samples")
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.legend(ncol=5, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False, fontsize=8)
    return _png(fig)


def plot_pass_at_k(metrics: Sequence[EnvMetrics]) -> bytes:
    """pass@k (solid) and maj@k (dashed) against k, one colour per env."""
    fig = _figure(6.4, 3.6)
    ax = fig.subplots()
    colors = _env_colors([m.env for m in metrics])
    for m in metrics:
        ks = sorted(m.pass_at_k)
        ax.plot(
            ks,
            [100 * m.pass_at_k[k] for k in ks],
            marker="o",
            ms=4,
            color=colors[m.env],
            label=f"{m.env} pass@k",
        )
        ks = sorted(m.maj_at_k)
        ax.plot(
            ks,
            [100 * m.maj_at_k[k] for k in ks],
            marker="s",
            ms=3,
            linestyle="--",
            color=colors[m.env],
            alpha=0.8,
            label=f"{m.env} maj@k",
        )
    top = max(m.n for m in metrics)
    if top >= 8:
        ax.set_xscale("log", base=2)
    ticks = sorted({k for k in _ks(top)})
    ax.set_xticks(ticks, [str(k) for k in ticks])
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    _style(ax)
    ax.legend(fontsize=8, frameon=False, loc="best")
    return _png(fig)


def plot_accuracy_by_level(metrics: Sequence[EnvMetrics]) -> bytes:
    """Accuracy per level, one panel per env that has levels."""
    with_levels = [m for m in metrics if m.by_level]
    rows, cols = _grid(len(with_levels))
    fig = _figure(4.2 * cols, 3.0 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    colors = _env_colors([m.env for m in metrics])
    for ax, m in zip(axes, with_levels, strict=False):
        levels = list(m.by_level)
        acc = [100 * m.by_level[lv].accuracy for lv in levels]
        bars = ax.bar(range(len(levels)), acc, color=colors[m.env], width=0.65)
        ax.bar_label(bars, labels=[f"{a:.0f}" for a in acc], fontsize=7, padding=1)
        ax.set_xticks(
            range(len(levels)),
            levels,
            rotation=30 if len(levels) > 5 else 0,
            ha="right" if len(levels) > 5 else "center",
            fontsize=8,
        )
        ax.set_ylim(0, 105)
        ax.set_ylabel("accuracy %")
        ax.set_title(m.env, fontsize=10)
        _style(ax)
    for ax in axes[len(with_levels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return _png(fig)


def plot_completion_lengths(runs: Mapping[str, tuple[EnvMetrics, Sequence[SampleRecord]]]) -> bytes:
    """Histogram of completion lengths per env (tokens when known, else characters), split
    into correct and not correct samples."""
    rows, cols = _grid(len(runs))
    fig = _figure(4.2 * cols, 2.9 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (env, (_, records)) in zip(axes, runs.items(), strict=False):
        tokens = all(r.completion_tokens is not None for r in records)
        lengths = np.array(
            [r.completion_tokens if tokens else len(r.completion) for r in records], dtype=float
        )
        ok = np.array([r.verdict.correct for r in records], dtype=bool)
        edges = np.histogram_bin_edges(lengths, bins=min(30, max(5, int(np.sqrt(len(lengths))))))
        ax.hist(
            [lengths[ok], lengths[~ok]],
            bins=edges,
            stacked=True,
            color=[_STATUS_COLORS["correct"], _STATUS_COLORS["incorrect"]],
            label=["correct", "not correct"],
        )
        ax.set_xlabel("completion tokens" if tokens else "completion characters")
        ax.set_ylabel("samples")
        ax.set_title(env, fontsize=10)
        ax.legend(fontsize=7, framealpha=0.9, edgecolor="none")
        _style(ax)
    for ax in axes[len(runs) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return _png(fig)


# -- the eval report -------------------------------------------------------------------------------
def _ks(n: int) -> list[int]:
    """The k shown in tables and ticks: powers of two up to n, and n."""
    ks = [1 << i for i in range(n.bit_length()) if (1 << i) <= n]
    return sorted(set([*ks, n]))


def _check_runs(runs: Mapping[str, tuple[EnvMetrics, Sequence[SampleRecord]]]) -> None:
    if not runs:
        raise ValueError("write_report needs at least one env's metrics and records")
    for env, (metrics, records) in runs.items():
        if metrics.env != env:
            raise ValueError(f"write_report: metrics of env {metrics.env!r} under key {env!r}")
        if not records:
            raise ValueError(f"write_report: env {env!r} has no records")
        others = sorted({r.env for r in records} - {env})
        if others:
            raise ValueError(f"write_report: records of env(s) {others} under key {env!r}")


def _summary(metrics: Sequence[EnvMetrics]) -> Table:
    def seconds(x: float) -> str:
        return f"{x:.1f}"

    rows = [
        [
            m.env,
            str(m.problems),
            str(m.n),
            pct(m.accuracy),
            pct(m.pass_at_k.get(1)),
            pct(m.pass_at_k.get(m.n)),
            pct(m.maj_at_k.get(m.n)),
            "—" if m.mean_completion_tokens is None else f"{m.mean_completion_tokens:.1f}",
            f"{m.mean_completion_chars:.0f}",
            seconds(m.timing.generation_s),
            seconds(m.timing.verification_s),
        ]
        for m in metrics
    ]
    headers = [
        "env",
        "problems",
        "n",
        "accuracy %",
        "pass@1 %",
        "pass@n %",
        "maj@n %",
        "tokens",
        "chars",
        "generation s",
        "verification s",
    ]
    return Table(headers, rows)


def _status_table(metrics: Sequence[EnvMetrics]) -> Table:
    rows = []
    for m in metrics:
        cells: list[Cell] = [m.env]
        for s in Status:
            count = m.status_counts.get(s.value, 0)
            cells.append(f"{count} ({pct(count / m.samples)}%)")
        rows.append(cells)
    return Table(["env", *(s.value for s in Status)], rows)


def _pass_table(metrics: Sequence[EnvMetrics]) -> Table:
    ks = sorted({k for m in metrics for k in _ks(m.n)})
    rows = []
    for m in metrics:
        rows.append([m.env, "pass@k", *(pct(m.pass_at_k.get(k)) for k in ks)])
        rows.append([m.env, "maj@k", *(pct(m.maj_at_k.get(k)) for k in ks)])
    numeric = [False, False, *([True] * len(ks))]
    return Table(["env", "metric", *(f"k={k}" for k in ks)], rows, numeric)


def _breakdown_blocks(metrics: Sequence[EnvMetrics], attr: str, label: str) -> list[Block]:
    blocks: list[Block] = []
    for m in metrics:
        groups = getattr(m, attr)
        if not groups:
            continue
        blocks.append(Heading(m.env, 3))
        rows = [
            [key, str(b.problems), str(b.samples), pct(b.accuracy), pct(b.pass_at_1)]
            for key, b in groups.items()
        ]
        blocks.append(Table([label, "problems", "samples", "accuracy %", "pass@1 %"], rows))
    return blocks


def _failures(runs: Mapping[str, tuple[EnvMetrics, Sequence[SampleRecord]]]) -> list[Block]:
    failed = [r for _, records in runs.values() for r in records if r.verdict.failed_to_grade]
    if not failed:
        return []
    failed.sort(key=lambda r: (r.env, natural_key(r.problem_id), r.sample_index))
    rows = []
    for r in failed[:_MAX_FAILURES]:
        reason = " ".join(r.verdict.reason.split())
        if len(reason) > _REASON_CHARS:
            reason = reason[: _REASON_CHARS - 1] + "…"
        rows.append([r.env, r.problem_id, str(r.sample_index), r.verdict.status.value, reason])
    more = len(failed) - len(rows)
    note = f" ({more} more in samples.jsonl)" if more > 0 else ""
    return [
        Heading("Grading failures"),
        Paragraph(
            f"{len(failed)} sample(s) timed out or failed to grade; they count as failures, "
            f"not as wrong answers{note}."
        ),
        Table(["env", "problem", "sample", "status", "reason"], rows, [False, False, True]),
    ]


def report_blocks(
    runs: Mapping[str, tuple[EnvMetrics, Sequence[SampleRecord]]], *, info: Mapping[str, str]
) -> list[Block]:
    """Every block of an eval report, plots included."""
    _check_runs(runs)
    metrics = [m for m, _ in runs.values()]
    blocks: list[Block] = []
    if info:
        blocks.append(
            Table(["setting", "value"], [[k, str(v)] for k, v in info.items()], [False, False])
        )
    blocks += [
        Heading("Summary"),
        Paragraph(
            "Percentages. accuracy: mean score over all samples; pass@k: unbiased estimator "
            "(Chen et al., 2021) averaged over problems; maj@k: majority vote over extracted "
            "answers; n: samples per problem; tokens and chars: mean completion length."
        ),
        _summary(metrics),
        Heading("Verdict status"),
        Paragraph(
            "Samples per status. Timeouts and errors are grading failures, not wrong "
            "answers; only 'correct' counts as a pass."
        ),
        _status_table(metrics),
        Plot("status_counts", "Verdict status per env", plot_status_counts(metrics)),
        Heading("pass@k and maj@k"),
        _pass_table(metrics),
        Plot("pass_at_k", "pass@k (solid) and maj@k (dashed) against k", plot_pass_at_k(metrics)),
    ]
    if any(m.by_level for m in metrics):
        blocks += [
            Heading("Accuracy by level"),
            Plot("accuracy_by_level", "Accuracy by level", plot_accuracy_by_level(metrics)),
            *_breakdown_blocks(metrics, "by_level", "level"),
        ]
    if any(m.by_subject for m in metrics):
        blocks += [
            Heading("Accuracy by subject"),
            *_breakdown_blocks(metrics, "by_subject", "subject"),
        ]
    blocks += [
        Heading("Completion lengths"),
        Plot(
            "completion_lengths",
            "Completion lengths, correct and not correct samples",
            plot_completion_lengths(runs),
        ),
        *_failures(runs),
    ]
    return blocks


def write_report(
    out_dir: Path,
    runs: Mapping[str, tuple[EnvMetrics, Sequence[SampleRecord]]],
    *,
    title: str,
    info: Mapping[str, str],
) -> tuple[Path, Path]:
    """Write ``out_dir/report.md`` (plots in ``out_dir/plots/``) and the self-contained
    ``out_dir/report.html``; ``runs`` maps each env to its metrics and graded records.
    Returns (markdown path, html path)."""
    blocks = report_blocks(runs, info=info)
    written = {b.name for b in blocks if isinstance(b, Plot)}
    for name in set(_PLOT_NAMES) - written:  # a plot of an earlier report that no longer applies
        (out_dir / PLOTS / f"{name}.png").unlink(missing_ok=True)
    return write_document(out_dir, "report", blocks, title=title)
