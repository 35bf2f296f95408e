"""An ingest run that ends early is recorded as such (tester X; needs /tmp/m_E_ingest.patch).

- An ingest stopped by a failed write (a full disk) records the error in `runs.stats.error`,
  as collect does, and `asg-audit runs` shows it.
- A SIGINT that lands just after the run was recorded (before the ingest proper began) ends
  the run as `interrupted`; it was left `running`.

Both run real subprocesses: the disk is "full" through RLIMIT_FSIZE (EFBIG for ENOSPC), and the
SIGINT is a real signal the process sends itself at the moment under test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
from _hardening_procs import ingest_limited
from _records import settled_export

import asg_audit

# ingest argv[2] into argv[1], with a SIGINT sent to itself as the files start to be taken in
# (when the group of small files is made, just after the run is recorded)
INTERRUPTED_START = (
    "import os, signal, sys\n"
    "from asg_audit.ingest_files import ingest_paths\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "def hook(frame, event, arg):\n"
    "    if event == 'call' and frame.f_code.co_qualname == '_SmallFiles.__init__':\n"
    "        sys.setprofile(None)\n"
    "        os.kill(os.getpid(), signal.SIGINT)\n"
    "sys.setprofile(hook)\n"
    "try:\n"
    "    ingest_paths(sys.argv[1], [sys.argv[2]])\n"
    "except KeyboardInterrupt:\n"
    "    sys.exit(130)\n"
    "sys.exit(0)\n"
)


def runs_of(db: Path) -> list[tuple[str, str, str | None]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT command, status, json_extract_string(stats, '$.error') FROM runs"
            " ORDER BY started_at"
        ).fetchall()
    finally:
        con.close()
    return [(str(c), str(s), e) for c, s, e in rows]


def test_ingest_stopped_by_a_full_disk_records_the_error_in_its_run(tmp_path: Path) -> None:
    db = tmp_path / "a.duckdb"
    export = settled_export(tmp_path / "a.ndjson", 130_000)  # more than DuckDB keeps in memory
    proc = ingest_limited(db, export, 2_000_000)
    assert proc.returncode == 3, proc.stderr
    ((command, status, error),) = runs_of(db)
    assert (command, status) == ("ingest", "failed")
    assert error is not None and "cannot write the database" in error
    assert "File too large" in error
    shown = subprocess.run(
        [sys.executable, "-m", "asg_audit", "runs", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "cannot write the database" in shown.stdout, shown.stdout + shown.stderr


def test_ingest_interrupted_as_its_run_starts_ends_the_run(tmp_path: Path) -> None:
    db = tmp_path / "a.duckdb"
    export = settled_export(tmp_path / "a.ndjson", 5)
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_START, str(db), str(export)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 130, proc.stderr  # the interrupt landed where it was meant to
    assert runs_of(db) == [("ingest", "interrupted", None)]


def test_ingest_whose_checkpoint_meets_a_full_disk_records_the_error_in_its_run(
    tmp_path: Path,
) -> None:
    """Tester T1: the disk filled at the checkpoint after the file's commit, a FATAL error
    after which DuckDB refuses every statement on that database: the run stayed `running`,
    and the next writer called it `abandoned` with the error lost."""
    db = tmp_path / "a.duckdb"
    asg_audit.ingest(db, settled_export(tmp_path / "small.ndjson", 1, prefix="s"))
    proc = ingest_limited(db, settled_export(tmp_path / "big.ndjson", 40_000), 3_072_000)
    assert proc.returncode == 3, proc.stderr
    assert "FATAL" in proc.stderr and "checkpoint" in proc.stderr  # the case meant
    (_, (command, status, error)) = runs_of(db)
    assert (command, status) == ("ingest", "failed")
    assert error is not None and "File too large" in error
    asg_audit.ingest(db, tmp_path / "big.ndjson")  # room again: the file is stored whole
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM results").fetchone() == (40_001,)
