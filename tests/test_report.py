"""Eval reports: the Markdown links plots that exist, the HTML parses and embeds every plot as a
decodable base64 PNG, and the tables carry the metrics as percentages with one decimal."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

import pytest

from agents.metrics import EnvMetrics, SampleRecord, Timing, compute_metrics
from agents.report import write_report
from tests.test_eval_metrics import toy_records
from verifiers.base import Status, Verdict

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """Collects images, table cells and headings, and checks that tags nest."""

    VOID = frozenset({"meta", "img", "br", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.cells: list[str] = []
        self.headings: list[str] = []
        self.stack: list[str] = []
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs))
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag in ("td", "th", "h1", "h2", "h3"):
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()
        if self._text is not None and tag in ("td", "th"):
            self.cells.append("".join(self._text).strip())
            self._text = None
        elif self._text is not None and tag in ("h1", "h2", "h3"):
            self.headings.append("".join(self._text).strip())
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def arith_records() -> list[SampleRecord]:
    """Two problems, n=2, no subjects or levels; token counts known."""
    ok, bad = Verdict(1.0, Status.CORRECT, "4", "match"), Verdict(0.0, Status.INCORRECT, "5", "no")
    return [
        SampleRecord("arith", "arith/0", 0, "2+2?", "4", ok, 3, 7, True),
        SampleRecord("arith", "arith/0", 1, "2+2?", "5", bad, 3, 9, True),
        SampleRecord("arith", "arith/1", 0, "1+3?", "4", ok, 3, 11, False),
        SampleRecord("arith", "arith/1", 1, "1+3?", "4", ok, 3, 13, True),
    ]


def runs() -> dict[str, tuple[EnvMetrics, list[SampleRecord]]]:
    toy, arith = toy_records(), arith_records()
    return {
        "toy": (compute_metrics(toy, Timing(4.0, 1.0)), toy),
        "arith": (compute_metrics(arith, Timing(2.0, 0.5)), arith),
    }


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert page.stack == [], f"unclosed tags {page.stack}"
    return page


def test_report_files_html_parses_and_embeds_png_plots(tmp_path: Path) -> None:
    md, html_path = write_report(
        tmp_path, runs(), title="Eval <tiny>", info={"model": "tiny", "n": "4"}
    )
    assert (md, html_path) == (tmp_path / "report.md", tmp_path / "report.html")
    page = parse(html_path)
    assert page.headings[0] == "Eval <tiny>"  # escaped in the page, text again once parsed
    assert {"Summary", "Verdict status", "Accuracy by level", "Completion lengths"} <= set(
        page.headings
    )
    # Four plots: status counts, pass@k curves, accuracy by level, completion lengths.
    assert len(page.images) == 4
    for img in page.images:
        src = img["src"] or ""
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG_MAGIC)
        assert img["alt"]
    assert "http" not in html_path.read_text().replace("http-equiv", "")  # no external assets
    # Summary numbers as percentages with one decimal (toy: accuracy 11/30, pass@1 17/48,
    # pass@3 11/16, maj@3 1/2; arith: 3 of 4 correct, pass@2 = 1 for both problems).
    for text in ["36.7", "35.4", "68.8", "50.0", "75.0", "100.0", "tiny"]:
        assert text in page.cells, text
    assert "5 (33.3%)" in page.cells  # toy: 5 of 15 samples correct
    assert "1 (6.7%)" in page.cells  # toy: one timeout, one error


def test_markdown_links_the_plot_files(tmp_path: Path) -> None:
    md, _ = write_report(tmp_path, runs(), title="Eval", info={})
    text = md.read_text(encoding="utf-8")
    links = [line.rsplit("](", 1)[1][:-1] for line in text.splitlines() if line.startswith("![")]
    assert sorted(links) == [
        "plots/accuracy_by_level.png",
        "plots/completion_lengths.png",
        "plots/pass_at_k.png",
        "plots/status_counts.png",
    ]
    for link in links:
        assert (tmp_path / link).read_bytes().startswith(PNG_MAGIC)
    assert "| toy | 4 | 3 | 36.7 | 35.4 | 68.8 | 50.0 |" in text
    assert "| Level 10 | 1 | 3 | 66.7 | 66.7 |" in text  # natural order after Level 2
    assert text.index("| Level 2 |") < text.index("| Level 10 |")
    # Grading failures are listed with their reasons.
    assert "| toy | p2 | 3 | timeout | timeout |" in text
    assert "| toy | p3 | 2 | error | error |" in text


def test_a_report_without_levels_has_no_level_plot_and_drops_a_stale_one(tmp_path: Path) -> None:
    write_report(tmp_path, runs(), title="Eval", info={})
    assert (tmp_path / "plots" / "accuracy_by_level.png").is_file()
    arith = arith_records()
    md, html_path = write_report(
        tmp_path, {"arith": (compute_metrics(arith), arith)}, title="Eval", info={}
    )
    assert not (tmp_path / "plots" / "accuracy_by_level.png").exists()
    assert "Accuracy by level" not in md.read_text()
    assert "Grading failures" not in md.read_text()
    assert len(parse(html_path).images) == 3


def test_write_report_rejects_mismatched_input(tmp_path: Path) -> None:
    arith = arith_records()
    with pytest.raises(ValueError, match="metrics of env 'arith' under key 'gsm8k'"):
        write_report(tmp_path, {"gsm8k": (compute_metrics(arith), arith)}, title="t", info={})
    with pytest.raises(ValueError, match="at least one env"):
        write_report(tmp_path, {}, title="t", info={})
    with pytest.raises(ValueError, match=r"records of env\(s\) \['toy'\] under key 'arith'"):
        write_report(
            tmp_path, {"arith": (compute_metrics(arith), toy_records())}, title="t", info={}
        )
