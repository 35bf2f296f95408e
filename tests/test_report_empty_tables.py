"""An empty table keeps its caption and says why it is empty, where the store tells why.

Tester D #3: empty sections said "No data." without a reason, and the HTML dropped the table's
caption when it had no rows (so an empty store's report was a list of bare "No data.").
"""

from __future__ import annotations

import hashlib
import html
import json
from pathlib import Path

import pytest

from asg_audit.audit import analyze
from asg_audit.ingest_files import ingest_paths, track_file
from asg_audit.report import render
from asg_audit.store import open_store

CAPTIONS = (
    "Latency by consensus threshold",
    "Unsettled tasks by age and status",
    "Agreement by threshold",
    "Spend per month (UTC months)",
    "How tasks were seen",
)


def _pages(db: Path, out: Path, **kw: object) -> tuple[str, str]:
    report = render(analyze(db), out, formats="html,md", **kw)  # type: ignore[arg-type]
    md = report.paths["md"].read_text(encoding="utf-8").replace("\\", "")
    return html.unescape(report.paths["html"].read_text(encoding="utf-8")), md


def _section(md: str, caption: str) -> str:
    """The Markdown from a table's caption to the next caption or heading."""
    after = md.split(f"**{caption}**", 1)[1]
    return after.split("\n**", 1)[0].split("\n#", 1)[0]


def test_report_empty_store_says_the_store_holds_no_tasks(tmp_path: Path) -> None:
    db = tmp_path / "empty.duckdb"
    with open_store(db):
        pass
    page, md = _pages(db, tmp_path / "reports")
    assert "No data.<" not in page and "_No data._" not in md
    for caption in CAPTIONS:
        assert f"<caption>{caption}</caption>" in page
        assert "No data: the store holds no tasks." in _section(md, caption)
    assert page.count("No data: the store holds no tasks.") >= len(CAPTIONS)


def test_report_tracked_but_not_collected_says_so(tmp_path: Path) -> None:
    subs = tmp_path / "subs.ndjson"
    subs.write_text(
        "".join(
            json.dumps({"task_id": f"t{i}", "task_type": "a", "consensus_threshold": 3,
                        "label_spec": {"options": ["cat"]}, "created_at": "2026-10-01T00:00:00Z"})
            + "\n"
            for i in range(3)
        )
    )  # fmt: skip
    db = tmp_path / "tracked.duckdb"
    track_file(db, subs)
    page, md = _pages(db, tmp_path / "reports")
    why = "No data: 3 tasks are tracked but nothing was collected yet (asg-audit collect)."
    assert why in page
    assert why in _section(md, "Latency by consensus threshold")


def test_report_ingest_only_store_says_there_are_no_polls(tmp_path: Path) -> None:
    record = {
        "task_id": "f1", "status": "settled", "consensus_label": "cat", "confidence": 1.0,
        "worker_count": 3, "agreement_count": 3, "created_at": "2026-10-01T00:00:00Z",
        "settled_at": "2026-10-01T00:00:40Z", "cost_sats": 975,
        "bsv_txid": hashlib.sha256(b"f1").hexdigest(),
    }  # fmt: skip
    export = tmp_path / "results.ndjson"
    export.write_text(json.dumps(record) + "\n")
    db = tmp_path / "files.duckdb"
    ingest_paths(db, [export])
    out = tmp_path / "reports"
    render(analyze(db), out, formats="json", run_id="r1")
    page, md = _pages(db, out, run_id="r2", compare="r1")
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
    page, _ = _pages(db, tmp_path / "reports")
    table = page.split("<caption>Spend per month (UTC months)</caption>", 1)[1].split(
        "</table>", 1
    )[0]
    assert '<th scope="col">' in table and 'class="empty"' in table
