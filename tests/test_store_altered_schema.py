"""A store altered outside asg_audit: exit 2, never written (tester finding 3).

- A migration's row deleted from `schema_migrations` (its column stays): every command tried
  the migration again and failed with a traceback (`CatalogException: Column with name
  "unknown_streak" already exists!`, exit 1).
- A column of the schema altered to another type: `report` failed with a polars ComputeError,
  `ingest` with a BinderException (exit 1).

Both are "a damaged store" (as a dropped column already was), exit 2, the file unchanged.
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

ALTERATIONS = {
    "migration row deleted": "DELETE FROM schema_migrations WHERE version = 7",
    "column retyped": "ALTER TABLE results ALTER conflict_count TYPE VARCHAR",
    "retyped and row deleted": (
        "ALTER TABLE runs ALTER stats TYPE VARCHAR; DELETE FROM schema_migrations WHERE version = 7"
    ),
    # review: version 0 with every table there was taken for a new store (a traceback, exit 1)
    "every migration row deleted": "DELETE FROM schema_migrations",
}
EXPECTED = {
    "migration row deleted": (
        "a damaged store: schema version 6, but upgrading it by migration 7 (chain index cache:"
        " back-off of unknown txids) failed: DuckDB: Catalog Error: Column with name"
        ' "unknown_streak" already exists!'
    ),
    "column retyped": (
        "a damaged store: schema version 7 but column results.conflict_count is VARCHAR, not"
        " BIGINT (changed outside asg_audit)"
    ),
    "retyped and row deleted": "a damaged store: schema version 6, but upgrading it",
    "every migration row deleted": (
        "a damaged store: schema version 0, but upgrading it by migration 1 (initial evidence"
        " store) failed"
    ),
}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def good_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("good")
    db = folder / "good.duckdb"
    ingest(db, settled_export(folder / "a.ndjson", 50))
    return db


def altered(good: Path, folder: Path, case: str) -> Path:
    db = folder / "s.duckdb"
    shutil.copyfile(good, db)
    con = duckdb.connect(str(db))
    try:
        con.execute(ALTERATIONS[case])
    finally:
        con.close()
    assert not Path(f"{db}.wal").exists()
    return db


@pytest.mark.parametrize("case", ALTERATIONS)
@pytest.mark.parametrize(
    "command",
    [("db", "info"), ("runs",), ("ingest", "NEW"), ("track", "SUBS"), ("report", "--out", "OUT")],
)
def test_altered_store_is_damaged_exit_2_untouched(
    good_store: Path, tmp_path: Path, case: str, command: tuple[str, ...]
) -> None:
    db = altered(good_store, tmp_path, case)
    before = digest(db)
    new = settled_export(tmp_path / "new.ndjson", 3, prefix="n")
    subs = tmp_path / "subs.csv"
    subs.write_text(
        "task_id,task_type,consensus_threshold,options,created_at\n"
        "n0,classify,2,a|b,2026-01-01T00:00:00Z\n"
    )
    names = {"NEW": str(new), "SUBS": str(subs), "OUT": str(tmp_path / "rep")}
    done = run_asg_audit(*[names.get(a, a) for a in command], "--db", str(db), cwd=tmp_path)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"asg-audit: error: {db}: {EXPECTED[case]}"), lines[0]
    assert "left untouched" in lines[0]
    assert digest(db) == before
    assert not Path(f"{db}.wal").exists()
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("case", ALTERATIONS)
@pytest.mark.parametrize("read_only", [True, False])
def test_altered_store_library_open_is_store_file_error(
    good_store: Path, tmp_path: Path, case: str, read_only: bool
) -> None:
    db = altered(good_store, tmp_path, case)
    before = digest(db)
    with (
        pytest.raises(StoreFileError, match="a damaged store"),
        open_store(db, read_only=read_only),
    ):
        pass
    assert digest(db) == before


def test_a_column_of_the_users_own_and_an_unaltered_store_still_open(
    good_store: Path, tmp_path: Path
) -> None:
    db = tmp_path / "s.duckdb"
    shutil.copyfile(good_store, db)
    con = duckdb.connect(str(db))
    con.execute("ALTER TABLE results ADD COLUMN my_note VARCHAR")
    con.execute("CREATE TABLE my_table (x INTEGER)")
    con.close()
    with open_store(db) as store:
        assert store.count("results") == 50


def test_a_table_of_the_same_name_in_a_schema_of_the_users_own_is_no_damage(
    good_store: Path, tmp_path: Path
) -> None:
    # review: the column check read every schema, so `scratch.results` with a DOUBLE
    # conflict_count made the store "damaged"
    db = tmp_path / "s.duckdb"
    shutil.copyfile(good_store, db)
    con = duckdb.connect(str(db))
    try:
        con.execute("CREATE SCHEMA scratch")
        con.execute(
            "CREATE TABLE scratch.results AS SELECT task_id, 1.5::DOUBLE AS conflict_count"
            " FROM main.results"
        )
    finally:
        con.close()
    with open_store(db, read_only=True) as store:
        assert store.count("results") == 50
