"""An empty table keeps its caption and says why it is empty, where the store tells why.

Tester D #3: empty sections said "No data." without a reason, and the HTML dropped the table's
caption when it had no rows (so an empty store's report was a list of bare "No data.").
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _report_store import report_pages, report_store, settled, tracked_store

from asg_audit.audit import analyze
from asg_audit.config import AuditConfig, CheckLevels
from asg_audit.report import render
from asg_audit.report.empty import empty_reasons
from asg_audit.store import open_store

CAPTIONS = (
    "Latency by consensus threshold",
    "Unsettled tasks by age and status",
    "Agreement by threshold",
    "Spend per month (UTC months of settlement)",
    "How tasks were seen",
)


def _section(md: str, caption: str) -> str:
    """The Markdown from a table's caption to the next caption or heading."""
    after = md.split(f"**{caption}**", 1)[1]
    return after.split("\n**", 1)[0].split("\n#", 1)[0]


def _answered_404(db: Path, ids: tuple[str, ...]) -> None:
    """Record the tracked tasks `ids` as polled to the end with a 404 (`task.unknown`)."""
    with open_store(db) as store:
        store.con.execute(
            "INSERT INTO poll_state (task_id, state, attempts, first_404_at, updated_at)"
            " SELECT task_id, 'not_found', 3, now(), now() FROM submissions"
            " WHERE list_contains($ids, task_id)",
            {"ids": list(ids)},
        )


def test_report_empty_store_says_the_store_holds_no_tasks(tmp_path: Path) -> None:
    db = tmp_path / "empty.duckdb"
    with open_store(db):
        pass
    page, md = report_pages(db, tmp_path / "reports")
    assert "No data.<" not in page and "_No data._" not in md
    for caption in CAPTIONS:
        assert f"<caption>{caption}</caption>" in page
        assert "No data: the store holds no tasks." in _section(md, caption)
    assert page.count("No data: the store holds no tasks.") >= len(CAPTIONS)


def test_report_tracked_but_not_collected_says_so(tmp_path: Path) -> None:
    db = tracked_store(tmp_path, (f"t{i}" for i in range(3)), ["cat"])
    page, md = report_pages(db, tmp_path / "reports")
    why = "No data: 3 tasks are tracked but nothing was collected yet (asg-audit collect)."
    assert why in page
    assert why in _section(md, "Latency by consensus threshold")


def test_report_tracked_tasks_the_gateway_answered_404_for_are_not_sent_to_collect(
    tmp_path: Path,
) -> None:
    # polled to the end with a 404 (`task.unknown`): another collect does not help them
    db = tracked_store(tmp_path, (f"t{i}" for i in range(3)), ["cat"])
    _answered_404(db, ("t0", "t1"))
    page, _ = report_pages(db, tmp_path / "reports")
    assert (
        "No data: 3 tasks are tracked but nothing was collected yet (asg-audit collect; 2 of"
        " them unknown to the Gateway: task.unknown)." in page
    )
    _answered_404(db, ("t2",))
    page, _ = report_pages(db, tmp_path / "reports2")
    assert (
        "No data: 3 tasks are tracked and the Gateway knows none of them (task.unknown: 404)."
        in page
    )
    assert "asg-audit collect" not in page


def test_report_empty_reason_counts_404_tasks_from_the_data_with_task_unknown_disabled(
    tmp_path: Path,
) -> None:
    # the reason read the `task.unknown` findings: with that check disabled it sent tasks the
    # Gateway answered 404 for to `asg-audit collect`; it reads `tracked_coverage` now
    db = tracked_store(tmp_path, (f"t{i}" for i in range(3)), ["cat"])
    _answered_404(db, ("t0", "t1", "t2"))
    config = AuditConfig(checks={"task.unknown": CheckLevels(enabled=False)})
    audit = analyze(db, config=config)
    assert "task.unknown" not in set(audit.findings["check_id"].to_list())
    assert audit["tracked_coverage"].row(0, named=True)["unknown"] == 3
    reason = empty_reasons(audit)["latency_by_threshold"]
    assert reason == "3 tasks are tracked and the Gateway knows none of them (task.unknown: 404)"


def test_report_ingest_only_store_says_there_are_no_polls(tmp_path: Path) -> None:
    db = report_store(tmp_path, [settled("f1")])
    out = tmp_path / "reports"
    render(analyze(db), out, formats="json", run_id="r1")
    page, md = report_pages(db, out, run_id="r2", compare="r1")
    assert "<caption>Polls per task and detection delay</caption>" in page
    assert "No data: only ingested files: no polls." in page
    assert "No data: only ingested files: no polls." in _section(
        md, "Polls per task and detection delay"
    )
    assert "No data: no task is unsettled." in page
    # a comparison with nothing new or resolved says so
    for text in (page, md):
        assert "No data: no new findings." in text
        assert "No data: no resolved findings." in text


@pytest.mark.parametrize("name", ["empty"])
def test_report_tables_keep_their_headers_when_empty(tmp_path: Path, name: str) -> None:
    db = tmp_path / f"{name}.duckdb"
    with open_store(db):
        pass
    page, _ = report_pages(db, tmp_path / "reports")
    table = page.split("<caption>Spend per month (UTC months of settlement)</caption>", 1)[1].split(
        "</table>", 1
    )[0]
    assert '<th scope="col">' in table and 'class="empty"' in table
