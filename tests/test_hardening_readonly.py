"""A read-only folder: a clear error, and the store left exactly as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from _hardening_procs import read_only

from asg_audit.ingest_files import ingest_paths
from asg_audit.store import open_store

REPO = Path(__file__).parents[1]


def test_hardening_read_only_folder_is_a_clear_error_and_changes_nothing(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    db = store_dir / "audit.duckdb"
    first = tmp_path / "a.jsonl"
    first.write_text(
        json.dumps(
            {
                "task_id": "t1",
                "status": "settled",
                "consensus_label": "cat",
                "bsv_txid": "ab" * 32,
                "settled_at": "2026-11-01T10:00:00Z",
            }
        )
        + "\n"
    )
    ingest_paths(db, [first])
    before = db.read_bytes()
    second = tmp_path / "b.jsonl"
    second.write_text(json.dumps({"task_id": "t2", "status": "in_progress"}) + "\n")
    with read_only(store_dir):
        proc = subprocess.run(
            [sys.executable, "-m", "asg_audit", "ingest", "--quiet", "--db", str(db), str(second)],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert db.read_bytes() == before
    assert proc.returncode in (2, 3)
    assert proc.stderr.startswith("asg-audit: error:") and "Traceback" not in proc.stderr
    assert str(db) in proc.stderr
    with open_store(db, read_only=True) as store:
        assert store.frame("results").get_column("task_id").to_list() == ["t1"]


def test_hardening_older_store_on_read_only_media_says_it_needs_an_upgrade(
    tmp_path: Path,
) -> None:
    import duckdb

    store_dir = tmp_path / "media"
    store_dir.mkdir()
    db = store_dir / "old.duckdb"
    # an older store: only schema_migrations, at version 0
    with duckdb.connect(str(db)) as con:
        con.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL)"
        )
    before = db.read_bytes()
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(db)], check=True)
    else:
        db.chmod(0o444)
    try:
        with read_only(store_dir):
            proc = subprocess.run(
                [sys.executable, "-m", "asg_audit", "db", "info", "--db", str(db)],
                capture_output=True,
                text=True,
                cwd=REPO,
            )
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(db)], check=True)
        else:
            db.chmod(0o644)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"asg-audit: error: {db}: schema version 0 is older than")
    assert "upgraded when first opened, which writes the file" in proc.stderr
    assert "Copy it somewhere writable" in proc.stderr
    assert db.read_bytes() == before
