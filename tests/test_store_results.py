"""How `results` is derived from observations, and the store's safety rules."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from asg_audit.errors import SchemaVersionError, StoreBusyError, StoreError
from asg_audit.model import Source
from asg_audit.normalize import RawRecord, normalise_records
from asg_audit.store import SCHEMA_VERSION, open_store

# every test runs through both ways a commit derives results (see conftest.write_path)
pytestmark = pytest.mark.usefixtures("write_path")

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TX1, TX2 = "1" * 64, "2" * 64


def settled(label: str = "cat", txid: str = TX1, cost: int = 650) -> dict[str, object]:
    return {
        "task_id": "t1",
        "status": "settled",
        "consensus_label": label,
        "confidence": 2 / 3,
        "worker_count": 3,
        "agreement_count": 2,
        "bsv_txid": txid,
        "cost_sats": cost,
        "created_at": "2026-11-01T11:59:00Z",
        "settled_at": "2026-11-01T11:59:42Z",
    }


def poll(body: object, at: datetime, status: int = 200) -> RawRecord:
    return RawRecord(
        body=json.dumps(body),
        source=Source.POLL,
        origin="GET /v1/tasks/t1/result",
        observed_at=at,
        task_id_hint="t1",
        http_status=status,
    )


def write(db: Path, *records: RawRecord):
    with open_store(db) as store:
        run = store.start_run("test")
        stats = store.write_batch(run, normalise_records(list(records)))
        return stats, store.frame("results")


def test_store_settled_result_beats_a_later_pending_answer(db: Path) -> None:
    write(db, poll(settled(), T0))
    _, results = write(db, poll({"status": "in_progress"}, T0 + timedelta(seconds=5), 202))
    row = results.row(0, named=True)
    assert row["status"] == "settled" and row["consensus_label"] == "cat"
    assert row["observation_count"] == 2


def test_store_pending_then_settled_records_when_it_was_first_seen_settled(db: Path) -> None:
    write(db, poll({"status": "in_progress"}, T0, 202))
    stats, results = write(db, poll(settled(), T0 + timedelta(seconds=10)))
    row = results.row(0, named=True)
    assert row["status"] == "settled"
    assert row["first_seen_at"] == T0
    assert row["settled_seen_at"] == T0 + timedelta(seconds=10)
    assert stats.updated_results == 1


@pytest.mark.parametrize("change", [{"label": "dog"}, {"txid": TX2}, {"cost": 975}])
def test_store_change_after_settlement_is_a_conflict_not_an_overwrite(
    db: Path, change: dict
) -> None:
    write(db, poll(settled(), T0))
    stats, results = write(db, poll(settled(**change), T0 + timedelta(minutes=5)))
    row = results.row(0, named=True)
    assert row["conflict_count"] == 1 and stats.new_conflicts == 1
    assert (row["consensus_label"], row["bsv_txid"], row["cost_sats"]) == ("cat", TX1, 650)
    with open_store(db, read_only=True) as store:
        assert store.count("observations") == 2  # both versions are evidence


def test_store_webhook_then_poll_fills_counts_without_conflict(db: Path) -> None:
    hook = RawRecord(
        body=json.dumps(
            {
                "event": "task.settled",
                "task_id": "t1",
                "consensus_label": "cat",
                "confidence": 2 / 3,
                "bsv_txid": TX1,
                "settled_at": "2026-11-01T11:59:42Z",
                "timestamp": "2026-11-01T11:59:43Z",
            }
        ),
        source=Source.WEBHOOK,
        origin="delivery-1",
        observed_at=T0,
    )
    write(db, hook)
    _, results = write(db, poll(settled(), T0 + timedelta(seconds=3)))
    row = results.row(0, named=True)
    assert row["worker_count"] == 3 and row["cost_sats"] == 650
    assert row["conflict_count"] == 0
    assert row["sources"] == ["poll", "webhook"]
    assert row["delivered_at"] == datetime(2026, 11, 1, 11, 59, 43, tzinfo=UTC)


def test_store_flags_about_a_missing_field_go_once_a_later_answer_fills_it(db: Path) -> None:
    # settled first with cost 0 (unknown) and no txid; a later answer has both: the result
    # carries the cost and txid, so its flags must not say they are unknown or missing
    first = {**settled(cost=0), "bsv_txid": None}
    write(db, poll(first, T0))
    _, results = write(db, poll(settled(), T0 + timedelta(seconds=3)))
    row = results.row(0, named=True)
    assert (row["cost_sats"], row["bsv_txid"], row["cost_unknown"]) == (650, TX1, False)
    assert "cost_unknown" not in row["flags"] and "txid_missing" not in row["flags"]
    # while nothing fills them, the flags stay
    other = {**first, "task_id": "t2"}
    again = {**other, "consensus_label": "cat"}
    rec = [
        RawRecord(
            body=json.dumps(b),
            source=Source.POLL,
            origin="GET /v1/tasks/t2/result",
            observed_at=T0 + timedelta(seconds=i),
            task_id_hint="t2",
            http_status=200,
        )
        for i, b in enumerate((other, again))
    ]
    _, results = write(db, *rec)
    row = results.filter(results["task_id"] == "t2").row(0, named=True)
    assert {"cost_unknown", "txid_missing"} <= set(row["flags"])


def test_store_error_answers_are_observations_but_not_results(db: Path) -> None:
    _, results = write(db, poll({"error": "task not found"}, T0, 404))
    assert results.height == 0
    with open_store(db, read_only=True) as store:
        assert store.count("observations") == 1


def test_store_reader_cannot_write(db: Path) -> None:
    write(db, poll(settled(), T0))
    with open_store(db, read_only=True) as store, pytest.raises(StoreError, match="read-only"):
        store.start_run("x")


def test_store_missing_file_for_a_reader_is_a_clear_error(tmp_path: Path) -> None:
    with (
        pytest.raises(StoreError, match="no database"),
        open_store(tmp_path / "none.duckdb", read_only=True),
    ):
        pass


@pytest.fixture
def locked_db(db: Path) -> Iterator[Path]:
    """A store held open for writing by another process."""
    write(db, poll(settled(), T0))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); time.sleep(30)",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield db
    finally:
        holder.kill()
        holder.wait()


def test_store_second_writer_process_gets_database_busy(locked_db: Path) -> None:
    with (
        pytest.raises(StoreBusyError, match="database busy"),
        open_store(locked_db, wait_seconds=0.3),
    ):
        pass


def test_store_cli_maps_busy_database_to_exit_code_3(locked_db: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "asg_audit",
            "ingest",
            "--quiet",
            "--db",
            str(locked_db),
            "asg_audit/data/sample_results.jsonl",
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    assert proc.returncode == 3
    assert "database busy" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_store_refuses_a_file_from_a_newer_schema(db: Path) -> None:
    write(db, poll(settled(), T0))
    con = duckdb.connect(str(db))
    con.execute(
        "INSERT INTO schema_migrations VALUES (?, 'from the future', now())", [SCHEMA_VERSION + 1]
    )
    con.close()
    with pytest.raises(SchemaVersionError, match="newer"), open_store(db):
        pass
    with pytest.raises(SchemaVersionError), open_store(db, read_only=True):
        pass


def test_store_opening_an_older_file_upgrades_it(db: Path) -> None:
    # An "older" file: only the schema_migrations table at version 0 plus a stray table.
    con = duckdb.connect(str(db))
    con.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL)"
    )
    con.execute("CREATE TABLE notes (x INTEGER)")
    con.execute("INSERT INTO notes VALUES (42)")
    con.close()
    with open_store(db, read_only=True) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert {"observations", "results", "notes"} <= set(store.tables())
        assert store.con.execute("SELECT x FROM notes").fetchall() == [(42,)]
