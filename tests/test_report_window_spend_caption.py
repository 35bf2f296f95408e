"""Under a window, the report's per-month spend says it holds the window's tasks only (tester
T5: a November report showed 21,825 sats of November spend next to a billing finding counting
23,775 for the same month, and a December row, with nothing saying why: the spend table holds
the tasks created in the window, by the month they settled; the billing checks every task
settled in the month)."""

from __future__ import annotations

from pathlib import Path

from _report_store import page_and_markdown, report_store, settled

from asg_audit.audit import analyze
from asg_audit.report import render

_PARTIAL = "the window's tasks (by creation) only: a month may differ from the billed one"


def test_a_windowed_report_says_its_months_are_the_windows_tasks(tmp_path: Path) -> None:
    tasks = [
        # created before the window, settled in November: billed in November, not in the window
        settled("t07", created_at="2026-10-31T23:59:00Z", settled_at="2026-11-01T00:00:30Z"),
        settled("t20", created_at="2026-11-10T00:00:00Z", settled_at="2026-11-10T00:00:40Z"),
        # created on the window's last day, settled after it: a December row
        settled("t09", created_at="2026-11-30T23:59:50Z", settled_at="2026-12-01T00:00:20Z"),
    ]
    db = report_store(tmp_path, tasks)
    windowed = analyze(db, since="2026-11-01", until="2026-12-01")
    months = windowed.frames["spend_by_month"]["period_start"].to_list()
    assert [str(m)[:7] for m in months] == ["2026-11", "2026-12"]
    page, md = page_and_markdown(render(windowed, tmp_path / "w", formats="html,md"))
    for text in (page, md):
        assert "Spend per month (UTC months of settlement" in text
        assert _PARTIAL in text
    page, md = page_and_markdown(render(analyze(db), tmp_path / "all", formats="html,md"))
    for text in (page, md):
        assert "Spend per month (UTC months of settlement)" in text
        assert _PARTIAL not in text
