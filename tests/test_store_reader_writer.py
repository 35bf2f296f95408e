"""A writer on a store that is open read-only: a clear StoreError naming the file and what to do.

In one process, a writer after a read-only `open_store` got DuckDB's raw `ConnectionException`
("Can't open a connection to same database file with a different configuration"). Across
processes, a writer locked out by a notebook that only reads the store was told "another
asg-audit process is writing to it". Real DuckDB files, a real second process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _hardening_procs import asg_audit, clean_env
from _records import settled_line

from asg_audit.audit import analyze
from asg_audit.errors import StoreBusyError, StoreError
from asg_audit.ingest_files import ingest, ingest_paths
from asg_audit.store import open_store
from asg_audit.track import track_file

_CLOSE_IT = r"open read-only in this process .*close it \(leave its `with` block\) before writing"


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, Path]:
    export = tmp_path / "one.ndjson"
    export.write_text(settled_line("t1") + "\n")
    db = tmp_path / "s.duckdb"
    ingest_paths(db, [export], progress=False)
    more = tmp_path / "more.ndjson"
    more.write_text(settled_line("t2") + "\n")
    return db, more


def test_writer_inside_a_read_only_block_names_the_file_and_what_to_do(
    store: tuple[Path, Path], tmp_path: Path
) -> None:
    db, more = store
    submissions = tmp_path / "subs.ndjson"
    submissions.write_text('{"task_id": "t3", "created_at": "2026-11-01T10:00:00Z"}\n')
    with open_store(db, read_only=True) as reader:
        for write in (
            lambda: ingest(db, more),
            lambda: track_file(db, submissions),
            lambda: open_store(db).__enter__(),
        ):
            with pytest.raises(StoreError, match=_CLOSE_IT) as caught:
                write()
            assert str(db) in str(caught.value)
            assert not isinstance(caught.value, StoreBusyError)
        assert reader.count("results") == 1  # the reader is untouched
    ingest(db, more)  # once it is closed, the writer works
    assert analyze(db).summary()["tasks"] == 2


def test_cli_writer_locked_out_by_a_reader_does_not_say_a_writer_holds_it(
    store: tuple[Path, Path],
) -> None:
    db, more = store
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, time
                from asg_audit.store import open_store
                with open_store(sys.argv[1], read_only=True):
                    print("open", flush=True)
                    time.sleep(60)
                """
            ),
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        done = subprocess.run(
            asg_audit("ingest", "--db", str(db), str(more)),
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=120,
        )
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 3, done.stderr
    assert "database busy: another process has it open (a writer, or a reader" in done.stderr
    assert "is writing to it" not in done.stderr
