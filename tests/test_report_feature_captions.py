"""Chain and billing tables have captions and headers in words, and the runs table says what it
counts.

Tester D #7: the captions were the frames' names (`chain_status`, `chain_coverage`,
`fee_coverage`, `billing_usage`) and the billing headers the store's columns (`tasks_settled`,
`total_cost_sats`); "HTTP answers per run" counted an ingest run's file records as answers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl
from _report_store import page_and_markdown, report_store, settled

from asg_audit.audit import analyze
from asg_audit.report import render

RAW = ("chain_status", "chain_coverage", "billing_usage", "tasks_settled", "total_cost_sats")


def test_report_chain_and_billing_tables_are_in_words(tmp_path: Path) -> None:
    audit = analyze(report_store(tmp_path, [settled("t1")]))
    frames = {
        **audit.frames,
        "chain_status": pl.DataFrame({"status": ["confirmed"], "txids": [1]}),
        "chain_coverage": pl.DataFrame({"proves": ["exact"], "tasks": [1]}),
        "billing_usage": pl.DataFrame(
            {
                "month": ["2026-10"],
                "tier": ["standard"],
                "tasks_settled": [1203],
                "total_cost_sats": [277575],
                "worker_payouts_sats": [250000],
                "platform_fee_sats": [27575],
            }
        ),
    }
    report = render(dataclasses.replace(audit, frames=frames), tmp_path / "r", formats="html,md")
    page, md = page_and_markdown(report)
    for text in (page, md):
        for raw in RAW:
            assert raw not in text, raw
        assert "Chain transactions by status" in text
        assert "Chain coverage: what the on-chain cost checks could check" in text
        assert "Billed usage per month (UTC months)" in text
        assert "tasks settled" in text and "total cost" in text and "platform fee" in text
        assert "277,575 sats" in text
        # the runs table: an ingest run stored file records, not HTTP answers
        assert "HTTP answers per run" not in text
        assert "Records stored per run (collect: HTTP answers; ingest: file records)" in text
    runs = page.split("Records stored per run")[1].split("</table>")[0]
    assert '<th scope="col">records</th>' in runs and ">answers<" not in runs
