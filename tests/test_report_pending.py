"""The headline "Pending" counts only tasks still on their way; other statuses apart.

Spec §4: `pending -> in_progress -> verified -> settled`; a status outside the documented four
(the simulator's `failed`, `timed_out`) is kept and reported, and may be final. "Pending" once
counted every task not settled, failed and timed-out ones included (w1: "Pending 3" with no
task pending at all). Now Pending is pending + in_progress + verified, and "Other status" counts
the rest; `unsettled` in `Audit.summary()` keeps its meaning (all tasks not settled).
"""

from __future__ import annotations

import json
from pathlib import Path

from asg_audit.audit import analyze
from asg_audit.ingest_files import ingest_paths
from asg_audit.report import render

_STATUSES = {
    "settled": 4, "pending": 1, "in_progress": 2, "verified": 1,
    "failed": 2, "timed_out": 1, "frozen": 1,
}  # fmt: skip


def _line(i: int, status: str) -> str:
    record: dict[str, object] = {"task_id": f"t{i:02d}", "status": status,
                                 "created_at": f"2026-04-08T21:{i:02d}:00Z"}  # fmt: skip
    if status == "settled":
        record |= {
            "consensus_label": "cat", "confidence": 1.0, "worker_count": 3,
            "agreement_count": 3, "bsv_txid": f"{i + 1:064x}",
            "settled_at": f"2026-04-08T21:{i:02d}:40Z", "cost_sats": 975,
        }  # fmt: skip
    return json.dumps(record) + "\n"


def test_report_pending_counts_only_tasks_on_their_way(tmp_path: Path) -> None:
    statuses = [s for s, n in _STATUSES.items() for _ in range(n)]
    export = tmp_path / "r.ndjson"
    export.write_text("".join(_line(i, s) for i, s in enumerate(statuses)))
    db = tmp_path / "s.duckdb"
    ingest_paths(db, [export], progress=False)
    audit = analyze(db, as_of="2026-04-08T22:00:00Z")
    s = audit.summary()
    assert (s["tasks"], s["settled"], s["unsettled"]) == (12, 4, 8)
    assert s["pending"] == 4  # pending 1, in_progress 2, verified 1
    assert s["other_status"] == 4  # failed 2, timed_out 1, frozen 1
    report = render(audit, tmp_path / "out", formats="html,md,json")
    doc = json.loads(report.paths["json"].read_text(encoding="utf-8"))
    assert doc["headline"]["pending"] == 4 and doc["headline"]["other_status"] == 4
    md = report.paths["md"].read_text(encoding="utf-8")
    assert "| Pending | 4 |" in md and "| Other status | 4 |" in md
    html = report.paths["html"].read_text(encoding="utf-8")
    assert 'data-key="pending" data-value="4"' in html
    assert 'data-key="other_status" data-value="4"' in html
