"""Levels in findings are written out, never in exponent form (a 30-day `task.stuck` level
read `settled within 2.592e+06 s`)."""

from __future__ import annotations

import json
from pathlib import Path

from asg_audit import analyze, ingest
from asg_audit.config import load_config


def test_a_30_day_level_is_written_out(tmp_path: Path) -> None:
    export = tmp_path / "a.ndjson"
    export.write_text(
        json.dumps(
            {"task_id": "tsk_old", "status": "in_progress", "created_at": "2026-01-01T00:00:00Z"}
        )
        + "\n",
        encoding="utf-8",
    )
    db = tmp_path / "s.duckdb"
    ingest(db, export)
    config = load_config(None, overrides={"checks": {"task.stuck": {"fail": 2_592_000}}})
    audit = analyze(db, config=config)
    stuck = audit.findings.filter(audit.findings["check_id"] == "task.stuck")
    assert stuck["expected"].to_list() == ["settled within 2592000 s"]
