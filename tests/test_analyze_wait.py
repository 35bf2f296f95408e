"""`analyze(db, wait_seconds=N)`: a store another process writes to is waited for up to N
seconds, then StoreBusyError, as the README's reliability table says (it was a TypeError).
A real second process holds the store as a writer.
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

from asg_audit.audit import analyze
from asg_audit.errors import ConfigError, StoreBusyError
from asg_audit.ingest_files import ingest

_HOLD = textwrap.dedent(
    """
    import sys, time
    from asg_audit.store import open_store
    with open_store(sys.argv[1]):
        print("open", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    export = tmp_path / "one.ndjson"
    export.write_text(settled_line("t1") + "\n")
    path = tmp_path / "s.duckdb"
    ingest(path, export)
    return path


@contextlib.contextmanager
def _held(db: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(db), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_analyze_waits_for_a_writer_then_reads_the_store(db: Path) -> None:
    with _held(db, 1.5):
        started = time.monotonic()
        audit = analyze(db, wait_seconds=60)
        waited = time.monotonic() - started
    assert audit.summary()["tasks"] == 1
    assert waited >= 0.5  # it waited for the writer to let go


def test_analyze_raises_store_busy_after_the_wait(db: Path) -> None:
    with _held(db, 60):
        started = time.monotonic()
        with pytest.raises(StoreBusyError, match=r"database busy: .*\(waited 0\.8 s\)"):
            analyze(db, wait_seconds=0.8)
        assert time.monotonic() - started >= 0.8
        with pytest.raises(StoreBusyError, match=r"database busy"):
            analyze(db)  # no wait by default


@pytest.mark.parametrize("wait", [-1, math.nan, math.inf, "5", True, None])
def test_analyze_refuses_a_wait_that_is_not_seconds(db: Path, wait: object) -> None:
    with pytest.raises(ConfigError, match=r"^analyze wait_seconds: expected a finite number"):
        analyze(db, wait_seconds=wait)  # type: ignore[arg-type]
