"""`--db` pointing at something that is not a store: a clear error, exit 2, the file untouched."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from asg_audit.errors import EXIT_USAGE, StoreFileError
from asg_audit.store import open_store


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", *args], capture_output=True, text=True, timeout=120
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def export(tmp_path: Path) -> Path:
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"task_id": "t1", "status": "in_progress"}) + "\n")
    return path


@pytest.mark.parametrize("command", [["db", "info"], ["runs"], ["report", "--out", "reports"]])
def test_readers_of_a_missing_store_exit_2_and_create_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    db = tmp_path / "missing.duckdb"
    proc = cli(*command, "--db", str(db))
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert proc.stderr == (
        f"asg-audit: error: {db}: no database here yet (run `asg-audit ingest` or `collect`)\n"
    )
    assert not db.exists()


def test_a_file_that_is_not_a_duckdb_database_is_refused_and_left_as_it_was(
    tmp_path: Path, export: Path
) -> None:
    db = tmp_path / "notes.duckdb"
    db.write_text("hello\n")
    for args in (["db", "info"], ["ingest", str(export)]):
        proc = cli(*args, "--db", str(db))
        assert proc.returncode == EXIT_USAGE, proc.stderr
        assert proc.stderr == f"asg-audit: error: {db}: not a DuckDB database file\n"
    assert db.read_text() == "hello\n"


@pytest.mark.parametrize("name", ["subs.csv", "export.jsonl", "export.json", "data.parquet"])
def test_a_data_file_given_as_the_store_is_refused_and_left_as_it_was(
    tmp_path: Path, export: Path, name: str
) -> None:
    # DuckDB would open these as an in-memory database with a view of the file: the slip
    # of swapping --db and the input must still read "not a DuckDB database file" (exit 2)
    db = tmp_path / name
    if name.endswith(".parquet"):
        with duckdb.connect() as con:
            con.execute(f"COPY (SELECT 1 AS a) TO '{db}' (FORMAT parquet)")
    else:
        db.write_bytes(export.read_bytes())
    before = digest(db)
    for args in (["db", "info"], ["runs"], ["ingest", str(export)], ["report", "--out", "r"]):
        proc = cli(*args, "--db", str(db))
        assert proc.returncode == EXIT_USAGE, (args, proc.stderr)
        assert proc.stderr == f"asg-audit: error: {db}: not a DuckDB database file\n"
    assert digest(db) == before


def test_another_applications_database_is_never_written(tmp_path: Path, export: Path) -> None:
    db = tmp_path / "crm.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE customers (id INTEGER); CREATE TABLE results (x INTEGER)")
    before = digest(db)
    for args in (["db", "info"], ["ingest", str(export)], ["report", "--out", "r"], ["runs"]):
        proc = cli(*args, "--db", str(db))
        assert proc.returncode == EXIT_USAGE, (args, proc.stderr)
        assert "a DuckDB database of another application (tables: customers, results)" in (
            proc.stderr
        )
        assert "Traceback" not in proc.stderr
    assert digest(db) == before
    with pytest.raises(StoreFileError), open_store(db):
        pass


def test_an_empty_duckdb_file_becomes_a_store_for_a_writer_not_for_a_reader(
    tmp_path: Path, export: Path
) -> None:
    db = tmp_path / "empty.duckdb"
    duckdb.connect(str(db)).close()
    proc = cli("db", "info", "--db", str(db))
    assert proc.returncode == EXIT_USAGE and "not an asg_audit store" in proc.stderr
    assert cli("ingest", "--quiet", "--db", str(db), str(export)).returncode == 0
    with open_store(db, read_only=True) as store:
        assert store.count("observations") == 1


def test_a_fifo_or_a_folder_as_the_store_is_refused_without_waiting(
    tmp_path: Path, export: Path
) -> None:
    import os

    fifo = tmp_path / "f.duckdb"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.duckdb"
    folder.mkdir()
    for db, what in ((fifo, "a named pipe (FIFO)"), (folder, "a folder")):
        for args in (["db", "info"], ["runs"], ["ingest", str(export)]):
            proc = cli(*args, "--db", str(db))  # DuckDB waited on a FIFO for ever
            assert proc.returncode == EXIT_USAGE, (args, proc.stderr)
            assert proc.stderr == f"asg-audit: error: {db}: {what}, not a database file\n"


def test_an_empty_file_becomes_a_store_for_a_writer_only(tmp_path: Path, export: Path) -> None:
    db = tmp_path / "made-by-mktemp"
    db.write_bytes(b"")
    proc = cli("db", "info", "--db", str(db))
    assert proc.returncode == EXIT_USAGE
    assert "no database here yet" in proc.stderr
    assert db.read_bytes() == b""  # a reader writes nothing
    proc = cli("ingest", "--db", str(db), str(export))
    assert proc.returncode == 0, proc.stderr  # was "not a DuckDB database file", exit 2
    with open_store(db, read_only=True) as store:
        assert store.con.execute("SELECT task_id FROM results").fetchall() == [("t1",)]


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("DROP TABLE store_settings", "table store_settings missing"),
        ("ALTER TABLE results DROP COLUMN conflict_count", "column results.conflict_count missing"),
    ],
)
@pytest.mark.parametrize("command", [["db", "info"], ["ingest"], ["report", "--out", "reports"]])
def test_a_store_missing_a_table_or_column_of_its_schema_is_refused_untouched(
    tmp_path: Path, export: Path, damage: str, named: str, command: list[str]
) -> None:
    """A store changed outside asg_audit (a table dropped, a column gone) is named as damaged,
    exit 2, before anything is written; a writer crashed half-way with a catalog error."""
    db = tmp_path / "a.duckdb"
    with open_store(db):
        pass
    con = duckdb.connect(str(db))
    con.execute(damage)
    con.execute("CREATE TABLE my_notes (note VARCHAR)")  # a user's own table is no damage
    con.close()
    before = digest(db)
    args = [*command, str(export)] if command == ["ingest"] else command
    proc = cli(*args, "--db", str(db))
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "a damaged store: schema version" in proc.stderr and named in proc.stderr
    assert "Traceback" not in proc.stderr and "my_notes" not in proc.stderr
    assert digest(db) == before
    with pytest.raises(StoreFileError, match=named), open_store(db, read_only=True):
        pass
