"""The report says how many fees `chain.fee_rate` could check (fixer H4).

58f8661 gave the analysis a `fee_coverage` frame (`verify-chain`'s `fees checked
(chain.fee_rate): X of Y txids; n not checkable (reason)`), but the report showed only
`chain_coverage`: with `fetch_parents` on and an index serving no parents, a reader saw no fee
finding and read it as "fees fine". The chain section of the HTML and the Markdown now shows
the figures next to chain coverage, and summary.json carries them (`fee_coverage`, null
without chain transactions). Real simulator: its chain index serves no parent transactions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from _browser import chromium, console_lines
from _chain_sim import scenario

from asg_audit.audit import analyze
from asg_audit.chain import verify_chain
from asg_audit.chain_verify import FEE_EXACT, FEE_PARENT_UNKNOWN
from asg_audit.report import render
from asg_audit.report.markdown import md_escape


@dataclass
class Rendered:
    fees: dict[str, int]  # what verify-chain counted
    folder: Path
    summary: dict[str, Any]
    md: str
    html: Path


def _rendered(tmp: Path, *, verify: bool) -> Rendered:
    with scenario(tmp, tasks=200 if verify else 50) as sc:
        config = sc.config.replace(chain={**sc.config.chain, "fetch_parents": True})
        fees = dict(verify_chain(sc.db, config).fees) if verify else {}
        report = render(analyze(sc.db, config=config), tmp / "reports")
    summary = json.loads(report.paths["json"].read_text(encoding="utf-8"))
    md = report.paths["md"].read_text(encoding="utf-8")
    return Rendered(fees, report.folder, summary, md, report.paths["html"])


@pytest.fixture(scope="module")
def with_chain(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return _rendered(tmp_path_factory.mktemp("fees_chain"), verify=True)


@pytest.fixture(scope="module")
def without_chain(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return _rendered(tmp_path_factory.mktemp("fees_none"), verify=False)


def _figures(fees: dict[str, int]) -> tuple[int, int, int]:
    assert fees.get(FEE_EXACT, 0) == 0, fees  # the simulator serves no parents
    unknown = fees[FEE_PARENT_UNKNOWN]
    assert unknown > 0, fees
    return fees.get(FEE_EXACT, 0), sum(fees.values()), unknown


def _line_parts(line: str) -> tuple[str, set[str]]:
    head, *rest = line.split("; ")
    return head, set(rest)


def _expected_parts(fees: dict[str, int]) -> tuple[str, set[str]]:
    checked, total, _ = _figures(fees)
    head = f"fees checked (chain.fee_rate): {checked:,} of {total:,} txids"
    return head, {f"{n:,} {what}" for what, n in fees.items() if what != FEE_EXACT}


def test_summary_json_counts_the_fees_checked(with_chain: Rendered) -> None:
    checked, total, unknown = _figures(with_chain.fees)
    got = with_chain.summary["fee_coverage"]
    assert got["check_id"] == "chain.fee_rate"
    assert got["checked"] == checked
    assert got["txids"] == total
    assert got["proves"] == with_chain.fees  # as verify-chain counted them
    assert got["proves"][FEE_PARENT_UNKNOWN] == unknown
    assert with_chain.summary["schema_version"] == 2


def test_markdown_chain_section_shows_the_fee_coverage(with_chain: Rendered) -> None:
    unknown = _figures(with_chain.fees)[2]
    md = with_chain.md
    chain = md[md.index("## Chain verification") : md.index("## Collection health")]
    head, parts = _expected_parts(with_chain.fees)
    lines = [x for x in chain.splitlines() if x.startswith(md_escape(head))]
    assert len(lines) == 1, chain
    assert _line_parts(lines[0]) == (md_escape(head), {md_escape(p) for p in parts})
    assert f"| {md_escape(FEE_PARENT_UNKNOWN)} | {unknown:,} |" in chain
    # next to chain coverage
    assert chain.index("**Chain coverage: ") < chain.index("**Fee coverage: ")


@pytest.mark.browser
def test_html_chain_section_shows_the_fee_coverage_in_chromium(
    with_chain: Rendered, tmp_path: Path
) -> None:
    unknown = _figures(with_chain.fees)[2]
    run = chromium(with_chain.html, tmp_path / "profile", "--dump-dom")
    assert console_lines(run) == []
    dom = run.stdout
    section = re.search(r'<section id="chain">(.*?)</section>', dom, re.S)
    assert section is not None
    chain = section.group(1)
    para = re.search(r'<p id="fee-coverage">(.*?)</p>', chain, re.S)
    assert para is not None
    assert _line_parts(unescape(para.group(1))) == _expected_parts(with_chain.fees)
    table = re.search(r"<caption>Fee coverage: [^<]*</caption>(.*?)</table>", chain, re.S)
    assert table is not None
    cells = [unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", table.group(1))]
    assert cells[cells.index(FEE_PARENT_UNKNOWN) + 1] == f"{unknown:,}"
    assert chain.index("<caption>Chain coverage: ") < chain.index('<p id="fee-coverage">')


def test_no_fee_coverage_without_chain_transactions(without_chain: Rendered) -> None:
    assert without_chain.summary["fee_coverage"] is None
    assert "fee\\_coverage" not in without_chain.md
    assert "fees checked" not in without_chain.md
    html = without_chain.html.read_text(encoding="utf-8")
    assert "fee-coverage" not in html and "fee_coverage" not in html
