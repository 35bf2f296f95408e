"""`Audit.names` lists the analysis frames only (README: "audit.names lists them").

It listed `_counts`, the internal one-row frame `summary()` starts from, among the analysis
frames. It is kept apart now; `summary()` still counts from it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from _analyses_frames import T0, result, results_frame, submission, submissions_frame
from _records import settled_line

from asg_audit.audit import analyze, analyze_frames
from asg_audit.config import AuditConfig
from asg_audit.ingest_files import ingest_paths


def test_names_are_the_analysis_frames_only() -> None:
    rows = [
        result("a"),
        result("b", status="pending", settled_at=None),
        result("c", status="failed"),
    ]
    audit = analyze_frames(
        results_frame(rows),
        submissions_frame([submission("a")]),
        config=AuditConfig(),
        as_of=T0 + timedelta(hours=1),
    )
    assert audit.names == list(audit.frames)
    assert [n for n in audit.names if n.startswith("_")] == []
    assert {"latency_overall", "formula_fit", "unknown_costs"} <= set(audit.names)
    for name in audit.names:
        assert audit[name] is audit.frames[name]
    s = audit.summary()
    assert (s["tasks"], s["settled"], s["pending"], s["other_status"]) == (3, 1, 1, 1)
    assert s["unsettled"] == 2


def test_names_of_a_store_audit_are_public(tmp_path: Path) -> None:
    export = tmp_path / "one.ndjson"
    export.write_text(settled_line("t1") + "\n")
    db = tmp_path / "s.duckdb"
    ingest_paths(db, [export], progress=False)
    audit = analyze(db)
    assert [n for n in audit.names if n.startswith("_")] == []
    assert audit.summary()["tasks"] == 1
