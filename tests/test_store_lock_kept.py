"""A writer keeps its hold on the store file while it runs, whatever else the process opens.

POSIX record locks (DuckDB's) belong to the process and the file: closing *any* handle on the
file drops them all. The store must never open the database file from Python, or a second
`open_store` in a process (the webhook receiver's normaliser thread) lets another process
write the same file at the same time (lost deliveries, a corrupted store).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from asg_audit.errors import EXIT_INCOMPLETE
from asg_audit.store import open_store


def _other_writer(db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", "db", "info", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("second_read_only", [False, True])
def test_a_second_open_in_the_process_keeps_the_file_locked(
    tmp_path: Path, second_read_only: bool
) -> None:
    db = tmp_path / "audit.duckdb"
    with open_store(db) as first:
        assert _other_writer(db).returncode == EXIT_INCOMPLETE  # held, as expected
        with open_store(db, read_only=second_read_only):
            pass
        with open_store(db):
            pass
        proc = _other_writer(db)
        # Before the fix: exit 0 here, the lock gone while `first` still writes.
        assert proc.returncode == EXIT_INCOMPLETE, proc.stdout + proc.stderr
        assert "database busy" in proc.stderr
        first.con.execute("SELECT count(*) FROM runs").fetchall()


def test_the_store_itself_given_to_ingest_is_not_read(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    export = tmp_path / "a.jsonl"
    export.write_text('{"task_id": "t1", "status": "in_progress"}\n')
    first = subprocess.run(
        [sys.executable, "-m", "asg_audit", "ingest", "--db", str(db), str(export)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 0, first.stderr
    other = tmp_path / "b.jsonl"
    other.write_text('{"task_id": "t2", "status": "in_progress"}\n')
    # the store named as an input, and caught by a glob beside a good file
    proc = subprocess.run(
        [sys.executable, "-m", "asg_audit", "ingest", "--db", str(db), str(db), f"{tmp_path}/*"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{db}: the store itself (--db), not an export: not read" in proc.stderr
    with open_store(db, read_only=True) as store:
        assert store.con.execute("SELECT count(*) FROM rejects").fetchone() == (0,)
        ids = store.con.execute("SELECT task_id FROM results ORDER BY 1").fetchall()
    assert ids == [("t1",), ("t2",)]  # the good file beside it was ingested
