"""`ingest` says how many accepted records have no status, and what to use for a submissions
export (tester T1: one given to `ingest` said "3 accepted, 0 new results" and nothing else)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from _records import settled_record

from asg_audit.ingest_files import ingest_paths


def test_ingest_counts_the_records_without_a_status_and_names_track(tmp_path: Path) -> None:
    export = tmp_path / "mixed.ndjson"
    submissions = [
        {"task_id": f"s{i}", "task_type": "image", "consensus_threshold": 3} for i in range(3)
    ]
    export.write_text("".join(json.dumps(r) + "\n" for r in [*submissions, settled_record("r1")]))
    db = tmp_path / "s.duckdb"
    summary = ingest_paths(db, [export], progress=False)
    assert (summary.accepted, summary.new_results, summary.without_status) == (4, 1, 3)
    again = tmp_path / "more.ndjson"
    again.write_text(json.dumps(settled_record("r2")) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "asg_audit", "ingest", "--db", str(db), str(export), str(again)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    # the first file is stored already (skipped): only this run's records count
    assert "without a status" not in proc.stdout
    fresh = subprocess.run(
        [sys.executable, "-m", "asg_audit", "ingest", "--db", str(tmp_path / "t.duckdb"),
         str(export)],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert (
        "without a status             3  (no result is made of them: a submissions export is"
        " stored by `asg-audit track`)"
    ) in fresh.stdout
