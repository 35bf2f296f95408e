"""The report says its times and day/month buckets are UTC, and writes finding times as ISO 8601.

Tester D #5: times and buckets were UTC but not labelled, and a finding's time showed as polars
writes it (`2026-10-01 00:00:10.000000+00:00`) next to a header in ISO 8601.
"""

from __future__ import annotations

import hashlib
import html
import json
from pathlib import Path

from asg_audit.audit import analyze
from asg_audit.ingest_files import ingest_paths
from asg_audit.report import render


def test_report_labels_utc_and_writes_finding_times_in_iso(tmp_path: Path) -> None:
    record = {
        "task_id": "early", "status": "settled", "consensus_label": "cat", "confidence": 1.0,
        "worker_count": 3, "agreement_count": 3, "created_at": "2026-10-01T00:00:40Z",
        # settled 30 s before it was created: a task.settled_before_created finding
        "settled_at": "2026-10-01T00:00:10Z", "cost_sats": 975,
        "bsv_txid": hashlib.sha256(b"early").hexdigest(),
    }  # fmt: skip
    export = tmp_path / "results.ndjson"
    export.write_text(json.dumps(record) + "\n")
    db = tmp_path / "s.duckdb"
    ingest_paths(db, [export])
    audit = analyze(db)
    assert "task.settled_before_created" in audit.findings["check_id"].to_list()
    report = render(audit, tmp_path / "r", formats="html,md")
    page = html.unescape(report.paths["html"].read_text(encoding="utf-8"))
    md = report.paths["md"].read_text(encoding="utf-8").replace("\\", "")
    for text in (page, md):
        assert "all times and days UTC" in text.split("Headline")[0]
        assert "Spend per month (UTC months)" in text
        assert "month (UTC)" in text
        findings = text[text.index("task.settled_before_created") :]
        assert "2026-10-01T00:00:10+00:00" in findings
        assert "2026-10-01 00:00:10" not in text and ".000000" not in text
