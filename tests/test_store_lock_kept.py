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


@pytest.mark.parametrize("origin_kind", ["store", "process_relative"])
def test_a_rejudge_never_reads_the_store_itself(
    tmp_path: Path, origin_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A re-judge re-reads file records from the name they were ingested by. In the writer
    # doing it, /dev/fd/3 is the store itself; a name may also be the store's own path.
    import duckdb

    db = tmp_path / "audit.duckdb"
    export = tmp_path / "a.jsonl"
    export.write_text('{"task_id": "t1", "status": "in_progress"}\n')
    ingest = [sys.executable, "-m", "asg_audit", "ingest", "--db", str(db), str(export)]
    assert subprocess.run(ingest, capture_output=True, timeout=120).returncode == 0
    with duckdb.connect(str(db)) as con:  # a store judged by older rules, as tester L made one
        con.execute("DELETE FROM store_settings")
        # a name that is a regular file in this process (in the re-judging writer of the
        # command line, /dev/fd/3 is the store)
        held = export.open("rb")
        origin = str(db) if origin_kind == "store" else f"/proc/self/fd/{held.fileno()}"
        con.execute("UPDATE observations SET origin = ?", [origin])
    read: list[str] = []
    import asg_audit.rejudge as rejudge_module

    real = rejudge_module._file_batches

    def spy(path: Path, size: int):  # type: ignore[no-untyped-def]
        read.append(str(path))
        return real(path, size)

    monkeypatch.setattr(rejudge_module, "_file_batches", spy)
    with open_store(db):
        proc = _other_writer(db)
        assert proc.returncode == EXIT_INCOMPLETE, proc.stdout + proc.stderr
    held.close()
    assert read == []
    with open_store(db, read_only=True) as store:
        assert store.con.execute("SELECT count(*) FROM rejects").fetchone() == (0,)
        assert store.con.execute("SELECT count(*) FROM observations").fetchone() == (1,)


def test_demo_never_deletes_a_store_another_process_holds(tmp_path: Path) -> None:
    folder = tmp_path / "demo-output"
    folder.mkdir()
    db = folder / "demo.duckdb"
    with open_store(db) as held:  # a notebook (or a demo still running) holds the store
        held.con.execute("CREATE TABLE mine AS SELECT 42 AS answer")
        proc = subprocess.run(
            [sys.executable, "-m", "asg_audit", "demo", "--out", str(folder), "--tasks", "20"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == EXIT_INCOMPLETE, proc.stdout + proc.stderr
        assert "database busy" in proc.stderr
        assert held.con.execute("SELECT answer FROM mine").fetchone() == (42,)
    with open_store(db, read_only=True) as store:  # the same file, not a new demo store
        assert store.con.execute("SELECT answer FROM mine").fetchone() == (42,)


def test_the_stores_wal_is_not_read_even_before_it_exists(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    export = tmp_path / "in.ndjson"
    export.write_text('{"task_id": "t1", "status": "in_progress"}\n')
    ingest = [sys.executable, "-m", "asg_audit", "ingest", "--db", str(db)]
    assert subprocess.run([*ingest, str(export)], capture_output=True, timeout=120).returncode == 0
    wal = tmp_path / "s.duckdb.wal"
    assert not wal.exists()  # checkpointed at the end: this run's own writes make it again
    proc = subprocess.run([*ingest, str(wal)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{wal}: the store itself (--db), not an export: not read" in proc.stderr
    with open_store(db, read_only=True) as store:
        assert store.con.execute("SELECT count(*) FROM rejects").fetchone() == (0,)
