"""The report says its times and day/month buckets are UTC, and writes finding times as ISO 8601.

Tester D #5: times and buckets were UTC but not labelled, and a finding's time showed as polars
writes it (`2026-10-01 00:00:10.000000+00:00`) next to a header in ISO 8601.
"""

from __future__ import annotations

from pathlib import Path

from _report_store import page_and_markdown, report_store, settled

from asg_audit.audit import analyze
from asg_audit.report import render


def test_report_labels_utc_and_writes_finding_times_in_iso(tmp_path: Path) -> None:
    # settled 30 s before it was created: a task.settled_before_created finding
    early = settled("early", created_at="2026-10-01T00:00:40Z", settled_at="2026-10-01T00:00:10Z")
    audit = analyze(report_store(tmp_path, [early]))
    assert "task.settled_before_created" in audit.findings["check_id"].to_list()
    report = render(audit, tmp_path / "r", formats="html,md")
    page, md = page_and_markdown(report)
    for text in (page, md):
        assert "all times and days UTC" in text.split("Headline")[0]
        assert "Spend per month (UTC months of settlement)" in text
        assert "month (UTC)" in text
        findings = text[text.index("task.settled_before_created") :]
        assert "2026-10-01T00:00:10+00:00" in findings
        assert "2026-10-01 00:00:10" not in text and ".000000" not in text
