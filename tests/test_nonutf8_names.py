"""File names that are not UTF-8 (Latin-1 `café.ndjson` unpacked from a Windows zip).

Such a file is ingested (and tracked) like any other, opened by its real name; what is stored
and printed as its origin is the name with each byte that is not UTF-8 written `\\xNN`. A
`--db` name that is not UTF-8 is one error line, exit 2 (DuckDB cannot open it).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from _audit_job import offline_job, result_lines

from asg_audit.ingest_files import ingest_paths
from asg_audit.ingest_summary import IngestSummary
from asg_audit.store import Store
from asg_audit.track import track_file

LATIN1 = b"caf\xe9"  # "café" in Latin-1: not UTF-8


def _record(i: int) -> dict[str, Any]:
    return {"task_id": f"tsk_{i}", "status": "pending", "created_at": "2026-09-15T02:41:05Z"}


def _ndjson(ids: range) -> bytes:
    return b"".join(json.dumps(_record(i)).encode() + b"\n" for i in ids)


def _write(folder: Path, name: bytes, data: bytes) -> bytes:
    path = os.path.join(os.fsencode(folder), name)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def _cli(*args: str | bytes, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", *args], capture_output=True, cwd=cwd, timeout=120
    )


def _query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_ingest_folder_with_latin1_name(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    _write(drop, LATIN1 + b".ndjson", _ndjson(range(1, 3)))
    _write(drop, b"good.ndjson", _ndjson(range(3, 5)))
    proc = _cli("ingest", "--db", "s.duckdb", "drop", cwd=tmp_path)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "ingested          drop/caf\\xe9.ndjson (2 records, 2 accepted" in out
    assert "ingested          drop/good.ndjson (2 records, 2 accepted" in out
    db = tmp_path / "s.duckdb"
    assert _query(db, "SELECT origin, count(*) FROM observations GROUP BY 1 ORDER BY 1") == [
        ("drop/caf\\xe9.ndjson", 2),
        ("drop/good.ndjson", 2),
    ]
    assert _query(db, "SELECT path FROM ingested_files ORDER BY 1") == [
        ("drop/caf\\xe9.ndjson",),
        ("drop/good.ndjson",),
    ]
    ((status, stats),) = _query(db, "SELECT status, stats FROM runs")
    assert status == "ok"
    assert [f["path"] for f in json.loads(stats)["files"]] == [
        "drop/caf\\xe9.ndjson",
        "drop/good.ndjson",
    ]
    # Ingesting again: the same file, by the same name, already ingested.
    again = _cli("ingest", "--db", "s.duckdb", "drop", cwd=tmp_path)
    assert again.returncode == 0, again.stderr.decode()
    assert "already ingested  drop/caf\\xe9.ndjson" in again.stdout.decode()


def test_every_layout_and_the_streamed_path(tmp_path: Path) -> None:
    """Arrays and documents (read by DuckDB), gzip, a large streamed file, a rejected line,
    in a folder whose own name is not UTF-8, named by a glob."""
    folder = tmp_path / os.fsdecode(LATIN1 + b"-d")
    folder.mkdir()
    _write(folder, b"a\xe9.json", json.dumps([_record(i) for i in range(10, 13)]).encode())
    docs = b"\n".join(json.dumps(_record(i), indent=2).encode() for i in range(20, 23))
    _write(folder, b"d\xe9.json", docs)
    _write(folder, b"z\xe9.ndjson.gz", gzip.compress(_ndjson(range(30, 33)) + b"{oops\n"))
    big_array = json.dumps([_record(i) for i in range(100_000, 130_000)]).encode()
    assert len(big_array) > 2 << 20  # over the small-file size: staged in the store
    _write(folder, b"big\xff.json", big_array)
    _write(folder, b"big\xe9.ndjson", _ndjson(range(200_000, 230_000)))
    # Small compressed, over the group size decompressed: staged in the store too.
    big_gz = json.dumps([_record(i) for i in range(300_000, 360_000)]).encode()
    assert len(big_gz) > 4 << 20
    _write(folder, b"zbig\xe9.json.gz", gzip.compress(big_gz))
    db = tmp_path / "s.duckdb"
    summary = ingest_paths(db, [str(tmp_path / "caf*-d" / "*")])
    shown = "caf\\xe9-d/"
    assert not summary.failed_files
    assert {Path(f.path).name: (f.status, f.records) for f in summary.files} == {
        "a\\xe9.json": ("ingested", 3),
        "d\\xe9.json": ("ingested", 3),
        "z\\xe9.ndjson.gz": ("ingested", 4),
        "big\\xff.json": ("ingested", 30_000),
        "big\\xe9.ndjson": ("ingested", 30_000),
        "zbig\\xe9.json.gz": ("ingested", 60_000),
    }
    origins = dict(_query(db, "SELECT origin, count(*) FROM observations GROUP BY 1"))
    assert {Path(o).name: n for o, n in origins.items()} == {
        "a\\xe9.json": 3,
        "d\\xe9.json": 3,
        "z\\xe9.ndjson.gz": 3,
        "big\\xff.json": 30_000,
        "big\\xe9.ndjson": 30_000,
        "zbig\\xe9.json.gz": 60_000,
    }
    assert all(shown in o for o in origins)
    ((reject,),) = _query(db, "SELECT origin FROM rejects")
    assert reject.endswith(shown + "z\\xe9.ndjson.gz")
    assert _query(db, "SELECT status FROM runs") == [("ok",)]


def test_track_latin1_name(tmp_path: Path) -> None:
    _write(
        tmp_path,
        LATIN1 + b".csv",
        b"task_id,task_type,consensus_threshold,options,created_at\n"
        b"tsk_c1,img,3,a|b,2026-09-15T02:41:05Z\n"
        b"tsk_c2,img,11,a|b,2026-09-15T02:41:05Z\n",
    )
    proc = _cli("track", "--db", "s.duckdb", LATIN1 + b".csv", cwd=tmp_path)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert out.startswith("caf\\xe9.csv: 2 rows: 1 new tasks")
    assert "caf\\xe9.csv:3: consensus_threshold: 11 is outside 2..10" in err
    db = tmp_path / "s.duckdb"
    assert _query(db, "SELECT task_id, origin FROM submissions") == [("tsk_c1", "caf\\xe9.csv")]
    assert _query(db, "SELECT origin, origin_line FROM rejects") == [("caf\\xe9.csv", 3)]
    assert _query(db, "SELECT command, status FROM runs") == [("track", "ok")]


def test_scheduled_audit_ingests_the_drop_folder(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 3)
    _write(job["drop"], LATIN1 + b".ndjson", result_lines(5).replace('"w', '"x').encode())
    proc = _cli("audit", "--db", str(job["db"]), "--config", str(job["config"]), cwd=tmp_path)
    err = proc.stderr.decode()
    assert "Traceback" not in err
    assert proc.returncode in (0, 1), (proc.stdout.decode(), err)  # findings or none
    assert "2 new file(s), 8 records accepted" in proc.stdout.decode()
    assert dict(_query(job["db"], "SELECT command, status FROM runs WHERE command = 'ingest'")) == {
        "ingest": "ok"
    }
    origins = {Path(o).name for (o,) in _query(job["db"], "SELECT origin FROM observations")}
    assert origins == {"caf\\xe9.ndjson", "export.ndjson"}


@pytest.mark.parametrize(
    "args",
    [
        ("ingest", "in.ndjson"),
        ("track", "in.csv"),
        ("runs",),
        ("db", "info"),
        ("report", "--out", "rep"),
    ],
)
def test_db_name_not_utf8_is_one_error_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    (tmp_path / "in.ndjson").write_bytes(_ndjson(range(1, 2)))
    (tmp_path / "in.csv").write_text("task_id,task_type,consensus_threshold,options,created_at\n")
    if args[0] == "db":
        cmd: list[str | bytes] = ["db", "info", "--db", LATIN1 + b".duckdb"]
    else:
        cmd = [args[0], "--db", LATIN1 + b".duckdb", *args[1:]]
    proc = _cli(*cmd, cwd=tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.splitlines() == [
        "asg-audit: error: caf\\xe9.duckdb: the database file name is not valid UTF-8, and"
        " DuckDB opens only UTF-8 names; rename it (or give --db another name)"
    ]
    assert not any(name.endswith(".duckdb") for name in os.listdir(tmp_path))


@pytest.mark.parametrize("command", ["verify-chain", "billing"])
def test_readers_of_a_missing_store_name_it_escaped(tmp_path: Path, command: str) -> None:
    """verify-chain and billing refuse a --db that does not exist before opening it: the name
    is shown with its undecodable byte as \\xNN, never a surrogate."""
    proc = _cli(command, "--db", LATIN1 + b".duckdb", cwd=tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert len(err.splitlines()) == 1, err
    assert "caf\\xe9.duckdb: no database here yet" in err, err
    assert not any(name.endswith(".duckdb") for name in os.listdir(tmp_path))


def test_ingest_run_is_failed_when_its_stats_cannot_be_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error at the end of an ingest (here: counters DuckDB cannot hold as JSON)
    ends its run `failed`, never `running`."""
    (tmp_path / "in.ndjson").write_bytes(_ndjson(range(1, 3)))
    as_dict = IngestSummary.as_dict
    monkeypatch.setattr(IngestSummary, "as_dict", lambda self: {**as_dict(self), "bad": "\udce9"})
    db = tmp_path / "s.duckdb"
    with pytest.raises(duckdb.Error):
        ingest_paths(db, [tmp_path / "in.ndjson"])
    assert _query(db, "SELECT status FROM runs") == [("failed",)]


def test_track_run_is_failed_on_an_unexpected_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "in.csv"
    path.write_text(
        "task_id,task_type,consensus_threshold,options,created_at\n"
        "tsk_c1,img,3,a|b,2026-09-15T02:41:05Z\n"
    )

    def broken(self: Store, source: str) -> tuple[int, int]:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(Store, "write_staged_submissions", broken)
    db = tmp_path / "s.duckdb"
    with pytest.raises(RuntimeError, match="unexpected"):
        track_file(db, path)
    assert _query(db, "SELECT command, status FROM runs") == [("track", "failed")]
    assert _query(db, "SELECT count(*) FROM submissions") == [(0,)]
