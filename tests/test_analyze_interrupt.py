"""An interrupted `analyze()` raises KeyboardInterrupt, never DuckDB's RuntimeError.

A Ctrl-C (or Jupyter's "interrupt kernel") that lands in a DuckDB statement came out as
`RuntimeError: Query interrupted`, so `try: analyze(...) except Exception: ...` (a loop over
stores) swallowed the user's Ctrl-C and went on. A real SIGINT, sent to a real process while
`analyze` runs a real (long) DuckDB statement on the store's connection.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _hardening_procs import clean_env
from _records import settled_line

from asg_audit.ingest_files import ingest_paths

# `_read_tables` first runs a statement that takes until it is interrupted, on the store's own
# connection: the SIGINT lands in DuckDB, as it does on a big store.
_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, threading
    import asg_audit.audit as audit

    real = audit._read_tables

    def slow_read(store, *args, **kwargs):
        if sys.argv[2] == "error":
            store.con.execute("SELECT no_such_column FROM results")
        # One thread: the statement then checks for a signal between its steps (with more,
        # a worker may run the whole scan as one step while the main thread waits).
        store.con.execute("SET threads = 1")
        if sys.argv[2] == "interrupt":
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        else:  # DuckDB's own form: what `sigint_interrupts` and other threads use
            threading.Timer(0.5, store.con.interrupt).start()
        store.con.execute("SELECT count(*) FROM range(1000000000000) t(x) WHERE x % 7 = 3")
        return real(store, *args, **kwargs)

    audit._read_tables = slow_read
    try:
        audit.analyze(sys.argv[1])
    except Exception as exc:
        print("swallowed by except Exception:", type(exc).__name__, exc)
    except KeyboardInterrupt as exc:
        print("KeyboardInterrupt:", exc)
    """
)


def _run(tmp_path: Path, mode: str) -> str:
    export = tmp_path / "one.ndjson"
    export.write_text(settled_line("t1") + "\n")
    db = tmp_path / "s.duckdb"
    ingest_paths(db, [export], progress=False)
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(db), mode],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("mode", ["interrupt", "con_interrupt"])
def test_interrupt_in_a_duckdb_statement_is_a_keyboard_interrupt(tmp_path: Path, mode: str) -> None:
    out = _run(tmp_path, mode)
    assert out.startswith("KeyboardInterrupt: analyze interrupted"), out


def test_a_real_duckdb_error_is_not_taken_for_an_interrupt(tmp_path: Path) -> None:
    out = _run(tmp_path, "error")
    assert out.startswith("swallowed by except Exception: BinderException"), out
    assert "no_such_column" in out
