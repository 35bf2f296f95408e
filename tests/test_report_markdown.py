"""report.md: every data string escaped, one table row per line, PNGs beside the file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _report_world import HOSTILE_LABEL, MARKDOWN_LABEL, SECRETS, build_audit

from asg_audit.report import render
from asg_audit.report.markdown import md_escape, md_table


def test_report_markdown_escape_keeps_a_cell_one_cell() -> None:
    cell = md_escape("a|b `c` <img src=x>\nd")
    assert "|" not in cell.replace("\\|", "")
    assert "`" not in cell.replace("\\`", "")
    assert "<img" not in cell and "&lt;img" in cell
    assert "\n" not in cell and "<br>" in cell


def test_report_markdown_escape_defuses_links_and_emphasis() -> None:
    cell = md_escape("[x](javascript:alert(1)) *b* _i_")
    assert "](" not in cell
    assert re.search(r"(?<!\\)[*_\[\]]", cell) is None


def test_report_markdown_table_rows_have_the_header_width() -> None:
    table = md_table(["label", "n"], [[MARKDOWN_LABEL, 1], [HOSTILE_LABEL, 2]])
    lines = table.strip().splitlines()
    assert len(lines) == 4  # header, rule, two rows: no newline escaped a row

    def cells(line: str) -> int:
        return len(re.split(r"(?<!\\)\|", line)) - 2

    assert {cells(line) for line in lines} == {2}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("report_md")
    rendered = render(build_audit(tmp), tmp / "reports", formats="md")
    return rendered, rendered.paths["md"].read_text(encoding="utf-8")


def test_report_markdown_links_charts_written_beside_it(report) -> None:
    rendered, text = report
    images = re.findall(r"!\[[^\n]+?\]\(([a-z_]+\.png)\)", text)
    assert sorted(images) == sorted(f"{c}.png" for c in rendered.summary["charts"])
    for name in images:
        assert (Path(rendered.folder) / name).read_bytes()[:4] == b"\x89PNG"


def test_report_markdown_never_shows_a_raw_hostile_label(report) -> None:
    _, text = report
    assert "<img" not in text
    assert "&lt;img src=x onerror=" in text  # shown, escaped
    assert "](javascript" not in text


def test_report_markdown_has_the_sections_and_no_secret(report) -> None:
    _, text = report
    for heading in ("## Headline", "## Settlement latency", "## Backlog and survival",
                    "## Consensus and confidence", "## Costs and payments",
                    "## Collection health", "## Findings", "## Methodology",
                    "## Configuration used"):  # fmt: skip
        assert heading in text
    for secret in SECRETS:
        assert secret not in text
