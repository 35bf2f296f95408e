"""Stores judged by other normaliser rules: judged again by a writer, noted by readers, refused
when newer; and runs an older asg_audit left `running` without a process."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from asg_audit.errors import SchemaVersionError
from asg_audit.model import Source
from asg_audit.normalize import RULES_VERSION, RawRecord, normalise_records
from asg_audit.store import open_store
from asg_audit.storeinfo import describe_runs, describe_store

T0 = datetime(2026, 10, 20, 12, 0, tzinfo=UTC)


def body(task_id: str, **changes: object) -> str:
    record: dict[str, object] = {
        "task_id": task_id,
        "status": "settled",
        "consensus_label": "ok",
        "confidence": 2 / 3,
        "worker_count": 3,
        "agreement_count": 2,
        "bsv_txid": hashlib.sha256(task_id.encode()).hexdigest(),
        "total_cost_sats": 650,
        "task_type": "tox",
        "created_at": "2026-10-20T10:00:00Z",
        "settled_at": "2026-10-20T10:00:45Z",
    }
    record.update(changes)
    return json.dumps({k: v for k, v in record.items() if v is not None})


# Answers to polls, in order. c03 and c05 were accepted by older rules (+24:00 read as an
# offset, a time without a zone taken as UTC); today's rules reject both as bad_timestamp.
ANSWERS = [
    ("c01", body("c01", total_cost_sats=0)),  # cost unknown at first ...
    ("c01", body("c01")),  # ... then known: the result has no cost_unknown flag
    ("c02", body("c02", bsv_txid=None)),
    ("c02", body("c02")),
    ("c03", body("c03", created_at="2026-10-20T10:00:00+24:00")),
    ("c04", body("c04")),
    ("c05", body("c05", created_at="2026-10-20T10:00:00", settled_at="2026-10-20T10:00:30")),
]
# What older rules made of the records today's rules reject (created_at, settled_at).
OLD_READING = {
    "c03": (
        datetime(2026, 10, 19, 10, 0, tzinfo=UTC),
        datetime(2026, 10, 20, 10, 0, 45, tzinfo=UTC),
    ),
    "c05": (
        datetime(2026, 10, 20, 10, 0, tzinfo=UTC),
        datetime(2026, 10, 20, 10, 0, 30, tzinfo=UTC),
    ),
}


def record(i: int, task_id: str, text: str) -> RawRecord:
    return RawRecord(
        body=text,
        source=Source.POLL,
        origin=f"GET /v1/tasks/{task_id}/result",
        observed_at=T0 + timedelta(seconds=i),
        task_id_hint=task_id,
        http_status=200,
    )


def fresh_store(db: Path) -> None:
    """Today's code, every answer in order (c03 and c05 are rejected)."""
    with open_store(db) as store:
        run = store.start_run("collect")
        for i, (task_id, text) in enumerate(ANSWERS):
            store.write_batch(run, normalise_records([record(i, task_id, text)]))
        store.finish_run(run, status="ok")


def older_store(db: Path) -> None:
    """The same answers stored as an older asg_audit did: c03 and c05 accepted, a stale
    `cost_unknown` and `txid_missing` in results, no rules version kept."""
    with open_store(db) as store:
        run = store.start_run("collect")
        for i, (task_id, text) in enumerate(ANSWERS):
            if task_id in OLD_READING:
                # accepted as a valid record would be, with the old reading of its times
                rec = record(i, task_id, body(task_id))
                batch = normalise_records([rec])
                created, settled = OLD_READING[task_id]
                accepted = batch.accepted.with_columns(
                    raw=pl.lit(text),
                    payload_hash=pl.lit(hashlib.md5(text.encode()).hexdigest()),
                    created_at=pl.lit(created).dt.convert_time_zone("UTC"),
                    settled_at=pl.lit(settled).dt.convert_time_zone("UTC"),
                )
                batch = type(batch)(accepted=accepted, rejects=batch.rejects)
            else:
                batch = normalise_records([record(i, task_id, text)])
            store.write_batch(run, batch)
        store.finish_run(run, status="ok")
        with store.transaction() as con:
            # the results rule of older versions kept the flags of the first settled answer
            con.execute(
                "UPDATE results SET flags = ['cost_unknown'], cost_unknown = true"
                " WHERE task_id = 'c01'"
            )
            con.execute("UPDATE results SET flags = ['txid_missing'] WHERE task_id = 'c02'")
            con.execute("DELETE FROM store_settings")  # a store from before the rules version


def results(db: Path) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT * FROM results ORDER BY task_id").fetchall()
    finally:
        con.close()


def rules_version(db: Path) -> str | None:
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute("SELECT value FROM store_settings WHERE key = 'rules_version'").fetchone()
    finally:
        con.close()
    return None if row is None else str(row[0])


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def test_a_new_store_is_judged_by_this_codes_rules(tmp_path: Path) -> None:
    db = tmp_path / "new.duckdb"
    fresh_store(db)
    assert rules_version(db) == str(RULES_VERSION)
    assert "judged by older" not in describe_store(db)


def test_a_writer_judges_an_older_store_again_like_a_fresh_ingest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh, old = tmp_path / "fresh.duckdb", tmp_path / "old.duckdb"
    fresh_store(fresh)
    older_store(old)
    before = {row[0]: row for row in results(old)}
    assert {"c03", "c05"} <= set(before)  # the older rules' view, as the tester found it
    capsys.readouterr()

    with open_store(old) as store:  # any writer: judged again before anything is written
        run = store.start_run("ingest")
        store.finish_run(run, status="ok")
    notice = capsys.readouterr().err
    assert "judged again" in notice
    assert "7 observations judged again" in notice and "2 now rejected" in notice
    assert "4 results changed" in notice  # c01, c02 flags; c03, c05 gone

    assert results(old) == results(fresh)
    assert rules_version(old) == str(RULES_VERSION)
    con = duckdb.connect(str(old), read_only=True)
    rejected = con.execute(
        "SELECT origin, reason, field, decode(raw) FROM rejects ORDER BY origin"
    ).fetchall()
    obs = con.execute(
        "SELECT count(*) FROM observations WHERE task_id IN ('c03', 'c05')"
    ).fetchone()
    con.close()
    assert rejected == [
        ("GET /v1/tasks/c03/result", "bad_timestamp", "created_at", ANSWERS[4][1]),
        ("GET /v1/tasks/c05/result", "bad_timestamp", "created_at", ANSWERS[6][1]),
    ]
    assert obs == (0,)
    assert "rejudge" in describe_runs(old)

    # judged once: the next writer changes nothing and says nothing
    with open_store(old):
        pass
    assert capsys.readouterr().err == ""


FILE_LINES = [
    body("f01", total_cost_sats=0),
    body("f01"),
    body("f03", created_at="2026-10-20T10:00:00+24:00"),  # rejected today, accepted before
    body("f04"),
]


def older_file_store(db: Path, lines: Path, cwd: Path | None = None) -> None:
    """`lines` ingested as an older asg_audit did: f03 accepted (accepted file records keep no
    raw text), a stale flag in results, no rules version kept. With `cwd`, `lines` is named
    relative to it, as typed in that folder."""
    lines.write_text("\n".join(FILE_LINES) + "\n")
    name = lines if cwd is None else lines.relative_to(cwd)
    proc = cli("ingest", "--db", str(db), str(name), cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    con = duckdb.connect(str(db))
    con.execute("SET TimeZone = 'UTC'")
    # f03 as older rules stored it: an observation like f04's, for line 3, with its own payload
    con.execute(
        "INSERT INTO observations SELECT * REPLACE (obs_id + 1000 AS obs_id, 'f03' AS task_id,"
        " 3 AS origin_line, ? AS payload_hash, ?::TIMESTAMPTZ AS created_at)"
        " FROM observations WHERE task_id = 'f04'",
        [hashlib.md5(FILE_LINES[2].encode()).hexdigest(), OLD_READING["c03"][0]],
    )
    con.execute(
        "INSERT INTO results SELECT * REPLACE ('f03' AS task_id, ?::TIMESTAMPTZ AS created_at)"
        " FROM results WHERE task_id = 'f04'",
        [OLD_READING["c03"][0]],
    )
    con.execute("DELETE FROM rejects")
    con.execute("UPDATE results SET flags = ['cost_unknown'] WHERE task_id = 'f01'")
    con.execute("DELETE FROM store_settings")
    assert con.execute("SELECT count(raw) FROM observations").fetchone() == (0,)
    con.close()


def test_file_records_are_read_again_from_their_file_like_a_fresh_ingest(tmp_path: Path) -> None:
    old, fresh = tmp_path / "old.duckdb", tmp_path / "fresh.duckdb"
    lines = tmp_path / "results.ndjson"
    older_file_store(old, lines)
    assert cli("ingest", "--db", str(fresh), str(lines)).returncode == 0

    proc = cli("runs", "--db", str(old))  # a reader: says so, changes nothing
    assert "judged by older normaliser rules" in proc.stderr
    empty = tmp_path / "empty.ndjson"
    empty.write_text("")
    proc = cli("ingest", "--db", str(old), str(empty))  # any writing command
    assert "4 observations judged again (4 read again from their files)" in proc.stderr
    assert "1 now rejected" in proc.stderr and "2 results changed" in proc.stderr

    skip = "EXCLUDE (first_seen_at, settled_seen_at, last_seen_at)"
    query = f"SELECT * {skip} FROM results ORDER BY task_id"
    con = duckdb.connect(str(old), read_only=True)
    got = con.execute(query).fetchall()
    rejected = con.execute("SELECT origin_line, reason, decode(raw) FROM rejects").fetchall()
    con.close()
    con = duckdb.connect(str(fresh), read_only=True)
    assert got == con.execute(query).fetchall()
    con.close()
    assert [r[0] for r in got] == ["f01", "f04"]
    assert rejected == [(3, "bad_timestamp", FILE_LINES[2])]
    assert "could not be judged again" not in describe_store(old)


@pytest.mark.parametrize("name", ["results.ndjson", os.fsdecode(b"caf\xe9.ndjson")])
def test_file_records_named_relative_or_not_utf8_are_found_from_another_folder(
    tmp_path: Path, name: str
) -> None:
    """A file ingested by a relative name (or one that is not UTF-8, stored as \\xNN) is found
    again when the next writer runs in another folder: next to the store."""
    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    proj.mkdir()
    elsewhere.mkdir()
    db = proj / "audit.duckdb"
    older_file_store(db, proj / name, cwd=proj)
    (elsewhere / "empty.ndjson").write_text("")
    proc = cli("ingest", "--db", "../proj/audit.duckdb", "empty.ndjson", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert "4 observations judged again (4 read again from their files)" in proc.stderr
    assert "gone or changed" not in proc.stderr
    con = duckdb.connect(str(db), read_only=True)
    tasks = [r[0] for r in con.execute("SELECT task_id FROM results ORDER BY 1").fetchall()]
    ((started, finished),) = con.execute(
        "SELECT started_at, finished_at FROM runs WHERE command = 'rejudge'"
    ).fetchall()
    con.close()
    assert tasks == ["f01", "f04"]  # f03's +24:00 is rejected by today's rules
    assert started < finished  # the run's time is the work's, not a point after it


def test_file_records_whose_file_is_gone_stay_and_are_counted(tmp_path: Path) -> None:
    db = tmp_path / "files.duckdb"
    lines = tmp_path / "results.ndjson"
    older_file_store(db, lines)
    lines.write_text(FILE_LINES[0] + "\n")  # changed since: lines 2-4 are not there
    empty = tmp_path / "empty.ndjson"
    empty.write_text("")
    proc = cli("ingest", "--db", str(db), str(empty))
    assert "1 read again from their files" in proc.stderr
    assert "3 file observations keep no raw text and their file is gone or changed" in proc.stderr
    con = duckdb.connect(str(db), read_only=True)
    flags = con.execute("SELECT task_id, flags FROM results ORDER BY 1").fetchall()
    con.close()
    # the stale flag goes (results are derived again); f03 stays as older rules judged it
    assert flags == [("f01", []), ("f03", []), ("f04", [])]
    info = describe_store(db)
    assert "3 file observations were stored under older normaliser rules" in info


def test_a_reader_of_an_older_store_says_so_and_leaves_it_as_it_is(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    older_store(db)
    before = results(db)
    assert "judged by older normaliser rules (version 0" in describe_store(db)
    for args in (["db", "info"], ["runs"]):
        proc = cli(*args, "--db", str(db))
        assert proc.returncode == 0, proc.stderr
        assert "warning:" in proc.stderr and "judged by older normaliser rules" in proc.stderr
        assert "the next command that writes" in proc.stderr
    assert results(db) == before
    assert rules_version(db) is None


def test_a_store_judged_by_newer_rules_is_refused_by_writers_and_read_by_readers(
    tmp_path: Path,
) -> None:
    db = tmp_path / "newer.duckdb"
    fresh_store(db)
    con = duckdb.connect(str(db))
    con.execute(
        "UPDATE store_settings SET value = ? WHERE key = 'rules_version'", [str(RULES_VERSION + 1)]
    )
    con.close()
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    with pytest.raises(SchemaVersionError, match="newer normaliser rules"), open_store(db):
        pass
    lines = tmp_path / "more.ndjson"
    lines.write_text(body("n01") + "\n")
    proc = cli("ingest", "--db", str(db), str(lines))
    assert proc.returncode == 2
    assert "newer normaliser rules" in proc.stderr and "Traceback" not in proc.stderr
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest  # the file unchanged
    proc = cli("db", "info", "--db", str(db))
    assert proc.returncode == 0
    assert "newer normaliser rules" in proc.stderr
    with open_store(db, read_only=True) as store:
        assert store.count("results") == 3  # c01, c02, c04


def test_a_run_left_running_by_a_version_that_kept_no_process_is_abandoned(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.duckdb"
    fresh_store(db)
    con = duckdb.connect(str(db))
    # as versions before 142bf98 stored a running run: no host, no pid
    con.execute(
        "INSERT INTO runs VALUES ('20261129T163207Z-dd84db', 'ingest', ?, NULL, 'running', NULL)",
        [T0],
    )
    con.close()
    assert "running" in describe_runs(db)  # a reader leaves it (it writes nothing)
    with open_store(db) as store:
        run = store.start_run("ingest")
        row = store.con.execute(
            "SELECT status, stats FROM runs WHERE run_id = '20261129T163207Z-dd84db'"
        ).fetchone()
        store.finish_run(run, status="ok")
    assert row is not None and row[0] == "abandoned"
    assert "kept no process id" in json.loads(row[1])["abandoned"]
    assert " running" not in describe_runs(db)
