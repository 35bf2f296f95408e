"""A write-ahead log beside a store that does not belong to it (tester finding 1).

A store restored from a backup without its `<db>.wal` (the log of a later state of the file),
or another store's log copied beside it: DuckDB refuses to replay it. Every command said
"cannot open the database: IO Error: Failure while replaying WAL file ..." and exited 3 (busy,
retry later), which no retry mends. It is a damaged store: exit 2, one line naming the log and
saying it does not belong to this file; the file and the log are left as they are.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import pytest
from _hardening_procs import run_asg_audit
from _records import settled_export

from asg_audit.errors import EXIT_USAGE, StoreFileError
from asg_audit.ingest_files import ingest
from asg_audit.store import open_store


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leave_wal(db: Path, *, checkpoint_first: bool) -> None:
    """Commit a row that stays in `db.wal` (no checkpoint when the connection closes), as a
    writer killed with SIGKILL leaves it; `checkpoint_first` checkpoints an earlier commit
    first, so that the log belongs to a later state of the file than a copy taken before."""
    con = duckdb.connect(str(db))
    try:
        if checkpoint_first:
            con.execute("INSERT INTO store_settings VALUES ('a', 'b', now())")
            con.execute("CHECKPOINT")
        con.execute("PRAGMA disable_checkpoint_on_shutdown")
        con.execute("SET checkpoint_threshold = '1TB'")
        con.execute("INSERT INTO store_settings VALUES ('c', 'd', now())")
    finally:
        con.close()
    assert Path(f"{db}.wal").stat().st_size > 0


def restored_without_wal(folder: Path) -> Path:
    """`cp s.duckdb backup.duckdb; <writer killed>; cp backup.duckdb s.duckdb`."""
    db = folder / "s.duckdb"
    ingest(db, settled_export(folder / "a.ndjson", 20))
    backup = folder / "backup.duckdb"
    shutil.copyfile(db, backup)
    leave_wal(db, checkpoint_first=True)
    shutil.copyfile(backup, db)
    return db


def another_stores_wal(folder: Path) -> Path:
    other = folder / "other.duckdb"
    ingest(other, settled_export(folder / "b.ndjson", 20))
    leave_wal(other, checkpoint_first=False)
    db = folder / "s.duckdb"
    ingest(db, settled_export(folder / "a.ndjson", 20))
    shutil.copyfile(f"{other}.wal", f"{db}.wal")
    return db


MAKERS = {"restored from a backup": restored_without_wal, "another store's": another_stores_wal}


@pytest.mark.parametrize("case", MAKERS)
@pytest.mark.parametrize(
    "command", [("db", "info"), ("runs",), ("ingest", "NEW"), ("report", "--out", "OUT")]
)
def test_foreign_wal_is_a_damaged_store_exit_2_untouched(
    tmp_path: Path, case: str, command: tuple[str, ...]
) -> None:
    db = MAKERS[case](tmp_path)
    wal = Path(f"{db}.wal")
    before = (digest(db), digest(wal))
    new = settled_export(tmp_path / "new.ndjson", 3, prefix="n")
    args = [{"NEW": str(new), "OUT": str(tmp_path / "rep")}.get(a, a) for a in command]
    done = run_asg_audit(*args, "--db", str(db), cwd=tmp_path)
    assert done.returncode == EXIT_USAGE, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "a damaged store: its write-ahead log" in lines[0]
    assert str(wal.resolve()) in lines[0] or str(wal) in lines[0]
    assert "does not belong to this database file" in lines[0]
    assert "Move the log aside" in lines[0]
    assert "Traceback" not in done.stderr
    assert (digest(db), digest(wal)) == before  # never written, the log neither moved nor cut
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("read_only", [True, False])
def test_foreign_wal_library_open_is_store_file_error(tmp_path: Path, read_only: bool) -> None:
    db = restored_without_wal(tmp_path)
    with (
        pytest.raises(StoreFileError, match="does not belong to this database file"),
        open_store(db, read_only=read_only),
    ):
        pass
    assert Path(f"{db}.wal").exists()


def test_store_opens_once_the_foreign_wal_is_moved_aside(tmp_path: Path) -> None:
    db = restored_without_wal(tmp_path)
    Path(f"{db}.wal").rename(tmp_path / "aside.wal")
    with open_store(db, read_only=True) as store:
        assert store.count("results") == 20
