"""`ingest_paths(..., wait_seconds=N)` and `ingest(..., wait_seconds=N)` refuse a wait that is not
a finite number of seconds, 0 or more, up front, as `analyze` and `track_file` do: a NaN waited
for ever on a busy store, 'x' or None were a TypeError only when the store was busy, and -1 was
taken. A real second process holds the store as a writer, so the refusal is seen to come before
any wait.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _hardening_procs import clean_env
from _records import settled_line

from asg_audit.errors import ConfigError, StoreBusyError
from asg_audit.ingest_files import ingest, ingest_paths

_HOLD = textwrap.dedent(
    """
    import sys, time
    from asg_audit.store import open_store
    with open_store(sys.argv[1]):
        print("open", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)

_BAD_WAITS = [-1, -0.5, math.nan, math.inf, -math.inf, "x", "5", True, None]


@pytest.fixture
def export(tmp_path: Path) -> Path:
    path = tmp_path / "one.ndjson"
    path.write_text(settled_line("t1") + "\n")
    return path


@contextlib.contextmanager
def _held(db: Path) -> Iterator[None]:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(db), "60"],
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        yield
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("wait", _BAD_WAITS)
def test_ingest_paths_refuses_a_wait_that_is_not_seconds(
    db: Path, export: Path, wait: object
) -> None:
    with pytest.raises(
        ConfigError,
        match=r"^ingest_paths wait_seconds: expected a finite number of seconds, 0 or more$",
    ):
        ingest_paths(db, [export], wait_seconds=wait)  # type: ignore[arg-type]
    assert not db.exists()  # refused before the store was opened (or made)


@pytest.mark.parametrize("wait", _BAD_WAITS)
def test_ingest_refuses_a_wait_that_is_not_seconds(db: Path, export: Path, wait: object) -> None:
    with pytest.raises(
        ConfigError, match=r"^ingest wait_seconds: expected a finite number of seconds, 0 or more$"
    ):
        ingest(db, export, wait_seconds=wait)
    assert not db.exists()


@pytest.mark.parametrize("wait", [math.nan, "x", None, -1])
def test_a_bad_wait_is_refused_at_once_on_a_busy_store(
    tmp_path: Path, export: Path, wait: object
) -> None:
    db = tmp_path / "s.duckdb"
    ingest(db, export)
    with _held(db):
        started = time.monotonic()
        with pytest.raises(ConfigError, match=r"wait_seconds: expected a finite number"):
            ingest_paths(db, [export], wait_seconds=wait)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match=r"wait_seconds: expected a finite number"):
            ingest(db, export, wait_seconds=wait)
        assert time.monotonic() - started < 5  # no wait at all (NaN waited for ever)
        # a good wait on the busy store still waits, then says busy
        with pytest.raises(StoreBusyError, match=r"database busy"):
            ingest_paths(db, [export], wait_seconds=0.2)


@pytest.mark.parametrize("wait", [0, 0.0, 1, 2.5])
def test_ingest_takes_a_finite_wait_of_zero_or_more(db: Path, export: Path, wait: float) -> None:
    assert ingest_paths(db, [export], wait_seconds=wait).failed_files == []
    assert ingest(db, export, wait_seconds=wait).failed_files == []


def test_a_chunk_size_that_reads_nothing_is_refused_before_anything_is_read(
    tmp_path: Path,
) -> None:
    # tester T10: chunk_bytes=0 read nothing of a file over 1 MiB and called it ingested
    from asg_audit.errors import ConfigError
    from asg_audit.ingest_files import ingest_paths

    db = tmp_path / "s.duckdb"
    export = tmp_path / "in.ndjson"
    export.write_text('{"task_id": "tsk_1", "status": "pending"}\n')
    for bad, error in ((0, ConfigError), (-5, ConfigError), ("x", TypeError), (1.5, TypeError)):
        with pytest.raises(error, match="ingest_paths chunk_bytes"):
            ingest_paths(db, [export], chunk_bytes=bad)  # type: ignore[arg-type]
    assert not db.exists()
