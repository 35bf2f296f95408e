"""A report of a store where verify-chain or billing never ran says so, and its methodology does
not refer to tables the report does not have.

Tester D #4: without `verify-chain`/`billing`, the report had no Chain or Billing section and
said nothing, while the methodology sent the reader to the chain and fee coverage tables.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from _chain_sim import scenario
from _report_store import page_and_markdown, report_pages

from asg_audit.audit import analyze
from asg_audit.chain import verify_chain
from asg_audit.report import render
from asg_audit.store import open_store

CHAIN_NOT_RUN = "Chain verification not run on this store (asg-audit verify-chain)."
BILLING_NOT_RUN = "Billing not fetched (asg-audit billing)."


def _methodology(page: str, md: str) -> tuple[str, str]:
    return page.split('id="methodology"')[1].split("</section>")[0], md.split("## Methodology")[
        1
    ].split("\n## ")[0]


def test_report_says_chain_and_billing_did_not_run(tmp_path: Path) -> None:
    db = tmp_path / "empty.duckdb"
    with open_store(db):
        pass
    page, md = report_pages(db, tmp_path / "r")
    chain = page.split('<section id="chain">')[1].split("</section>")[0]
    billing = page.split('<section id="billing">')[1].split("</section>")[0]
    assert CHAIN_NOT_RUN in chain and BILLING_NOT_RUN in billing
    assert '<a href="#chain">' in page and '<a href="#billing">' in page
    md_chain = md.split("## Chain verification")[1].split("\n## ")[0]
    md_billing = md.split("## Billing")[1].split("\n## ")[0]
    assert CHAIN_NOT_RUN in md_chain and BILLING_NOT_RUN in md_billing
    for text in _methodology(page, md):
        assert "coverage table" not in text
        assert "no cost was checked on chain" in text


def test_report_with_chain_refers_to_its_coverage_tables(tmp_path: Path) -> None:
    with scenario(tmp_path, tasks=60) as sc:
        config = sc.config.replace(chain={**sc.config.chain, "fetch_parents": True})
        verify_chain(sc.db, config)
        report = render(analyze(sc.db, config=config), tmp_path / "r", formats="html,md")
    page, md = page_and_markdown(report)
    assert CHAIN_NOT_RUN not in page and CHAIN_NOT_RUN not in md
    assert BILLING_NOT_RUN in page and BILLING_NOT_RUN in md
    for text in _methodology(page, md):
        assert "in the chain coverage table" in text
        assert "in the fee coverage table" in text


@pytest.mark.parametrize("command", ["verify-chain", "billing"])
def test_not_run_note_tells_a_run_that_found_nothing(tmp_path: Path, command: str) -> None:
    from asg_audit.report.empty import not_run_note

    db = tmp_path / "empty.duckdb"
    with open_store(db):
        pass
    audit = analyze(db)
    assert "not" in not_run_note(audit, command)
    audit.frames["http_by_run"] = pl.DataFrame({"command": ["ingest", command]})
    assert "ran on this store" in not_run_note(audit, command)
