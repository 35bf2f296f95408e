"""A Ctrl-C that lands while `open_store` is opening the store closes the connection.

The read-only branch had no `try` between `duckdb.connect` and `yield`: an interrupt in
`schema_version`, `SET TimeZone` or the `Store` constructor left the connection referenced
from the traceback, which IPython keeps (`sys.last_traceback`), so the file stayed locked and
the command line's writer got "database busy" until the kernel dropped the traceback.

The interrupt is made to land at each of those points (the function there raises
KeyboardInterrupt, as Python's SIGINT handler does); the traceback is kept, as IPython keeps
it; a real `asg-audit ingest` in another process must then write the store.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from _hardening_procs import asg_audit, clean_env
from _records import settled_line

import asg_audit.storefile as storefile
from asg_audit.audit import analyze
from asg_audit.ingest_files import ingest_paths
from asg_audit.store import open_store


def _store(tmp_path: Path) -> Path:
    export = tmp_path / "first.ndjson"
    export.write_text(settled_line("t1") + "\n")
    db = tmp_path / "s.duckdb"
    ingest_paths(db, [export], progress=False)
    return db


def _cli_writes(db: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    export = tmp_path / "second.ndjson"
    export.write_text(settled_line("t2") + "\n")
    return subprocess.run(
        asg_audit("ingest", "--db", str(db), str(export)),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
    )


def _interrupt(*args: Any, **kwargs: Any) -> Any:
    raise KeyboardInterrupt


class _ConnectionInterruptedAtTimeZone:
    """A real connection whose `SET TimeZone` is interrupted (the rest goes to DuckDB)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.startswith("SET TimeZone"):
            raise KeyboardInterrupt
        return self._con.execute(sql, *args)

    def close(self) -> None:
        self._con.close()


def _land_at(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if where == "set_timezone":
        real = duckdb.connect
        monkeypatch.setattr(
            storefile.duckdb,
            "connect",
            lambda *a, **k: _ConnectionInterruptedAtTimeZone(real(*a, **k)),
        )
    else:
        monkeypatch.setattr(storefile, where, _interrupt)


@pytest.mark.parametrize("where", ["set_timezone", "schema_version", "write_lock"])
def test_interrupted_analyze_leaves_the_store_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    db = _store(tmp_path)
    with monkeypatch.context() as patch:
        _land_at(where, patch)
        with pytest.raises(KeyboardInterrupt) as caught:
            analyze(db)
    # As IPython keeps the last traceback (and with it every frame's locals).
    kept = (caught.value, caught.value.__traceback__)
    monkeypatch.setattr(sys, "last_traceback", kept[1], raising=False)
    done = _cli_writes(db, tmp_path)
    assert done.returncode == 0, done.stderr
    assert analyze(db).summary()["tasks"] == 2


@pytest.mark.parametrize("where", ["set_timezone", "schema_version", "write_lock"])
def test_interrupted_writer_open_leaves_the_store_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    db = _store(tmp_path)
    with monkeypatch.context() as patch:
        _land_at(where, patch)
        with pytest.raises(KeyboardInterrupt) as caught, open_store(db):
            pass
    monkeypatch.setattr(sys, "last_traceback", caught.value.__traceback__, raising=False)
    done = _cli_writes(db, tmp_path)
    assert done.returncode == 0, done.stderr
