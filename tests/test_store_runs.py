"""Runs whose process died: closed as `abandoned` by the next run, never shown as running."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from asg_audit.store import open_store
from asg_audit.storeinfo import describe_runs


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def add_running(db: Path, run_id: str, owner: dict[str, object] | None) -> None:
    with open_store(db) as store, store.transaction():
        store.con.execute(
            "INSERT INTO runs VALUES (?, 'ingest', ?, NULL, 'running', ?)",
            [run_id, datetime.now(UTC), None if owner is None else json.dumps(owner)],
        )


def test_the_next_run_closes_runs_whose_process_is_gone(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    host = socket.gethostname()
    add_running(db, "r1-dead", {"host": host, "pid": dead_pid()})
    add_running(db, "r2-alive", {"host": host, "pid": os.getpid()})  # this process
    add_running(db, "r3-elsewhere", {"host": host + "-other", "pid": dead_pid()})
    add_running(db, "r4-old", None)  # a run recorded before runs kept their process
    with open_store(db) as store:
        new = store.start_run("ingest")
        rows = dict(store.con.execute("SELECT run_id, status FROM runs").fetchall())
        stats = store.con.execute("SELECT stats FROM runs WHERE run_id = 'r1-dead'").fetchone()
    assert rows == {
        "r1-dead": "abandoned",
        "r2-alive": "running",
        "r3-elsewhere": "running",  # another machine's process cannot be checked
        "r4-old": "abandoned",  # no process kept: it cannot be alive while we hold the write lock
        new: "running",
    }
    assert stats is not None
    assert "ended without finishing the run" in json.loads(stats[0])["abandoned"]
    assert "abandoned" in describe_runs(db)


def test_a_run_records_its_process_until_it_finishes(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    with open_store(db) as store:
        run = store.start_run("ingest")
        row = store.con.execute("SELECT stats FROM runs WHERE run_id = ?", [run]).fetchone()
        assert row is not None
        assert json.loads(row[0]) == {"host": socket.gethostname(), "pid": os.getpid()}
        store.finish_run(run, status="ok", stats={"records": 3})
        row = store.con.execute("SELECT stats FROM runs WHERE run_id = ?", [run]).fetchone()
        assert row is not None and json.loads(row[0]) == {"records": 3}


def test_runs_shows_the_error_a_run_recorded(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    long = "unreadable input: " + "x" * 300
    with open_store(db) as store:
        failed = store.start_run("audit")
        store.finish_run(failed, status="failed", stats={"error": "drop/a.jsonl: gone\nmore"})
        cut = store.start_run("audit")
        store.finish_run(cut, status="failed", stats={"error": long})
        ok = store.start_run("ingest")
        store.finish_run(ok, status="ok", stats={"records": 3})
    lines = {line.split()[0]: line for line in describe_runs(db).splitlines()[1:]}
    # on one line: a line break (in a file name, say) is shown escaped, the reason kept
    assert lines[failed].endswith("failed  drop/a.jsonl: gone\\x0amore")
    assert lines[cut].endswith("failed  " + long[:117] + "...")
    assert lines[ok].endswith("  ok")


def test_an_abandoned_run_says_what_it_had_stored(tmp_path: Path) -> None:
    """A killed ingest never recorded its stats; the files, observations and rejects it
    committed before it died are counted when the next run closes it."""
    from asg_audit.ingest_files import ingest_paths

    db = tmp_path / "audit.duckdb"
    good = tmp_path / "a.jsonl"
    good.write_text(
        '{"task_id": "t1", "status": "pending"}\n{"task_id": "t2", "status": "pending"}\nnot json\n'
    )
    ingest_paths(db, [good])
    with open_store(db) as store, store.transaction():
        # the ingest's run as its killed process would have left it
        (run_id,) = store.con.execute("SELECT run_id FROM runs").fetchone() or ("",)
        store.con.execute(
            "UPDATE runs SET status = 'running', finished_at = NULL, stats = ? WHERE run_id = ?",
            [json.dumps({"host": socket.gethostname(), "pid": dead_pid()}), run_id],
        )
    add_running(db, "r-nothing", {"host": socket.gethostname(), "pid": dead_pid()})
    with open_store(db) as store:
        store.start_run("ingest")
        notes = dict(
            store.con.execute(
                "SELECT run_id, stats FROM runs WHERE status = 'abandoned'"
            ).fetchall()
        )
    killed = json.loads(notes[run_id])
    assert killed["stored"] == {"files": 1, "observations": 2, "rejects": 1}
    assert killed["abandoned"].endswith(
        "ended without finishing the run (stored before: files 1, observations 2, rejects 1)"
    )
    nothing = json.loads(notes["r-nothing"])
    assert nothing["stored"] == {"files": 0, "observations": 0, "rejects": 0}
    assert nothing["abandoned"].endswith("ended without finishing the run")
    assert "(stored before: files 1, observations 2, rejects 1)" in describe_runs(db)
