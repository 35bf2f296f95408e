"""DuckDB's own progress bar never prints (into a notebook's output or a piped report).

DuckDB prints it on stdout for a query running longer than `progress_bar_time` (2 s) while
`enable_progress_bar` is on: its default in a plain interpreter (under pytest DuckDB starts
with it off, so the connections are checked in a child interpreter).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from asg_audit import engine

_QUERY = "SELECT count(*) FROM range(60000000) t(i) WHERE i % 7 = 3"

_CHILD = """
import json, sys, duckdb
from asg_audit import engine
from asg_audit.normalize import _engine
from asg_audit.store import open_store

def on(con):
    return con.execute("SELECT current_setting('enable_progress_bar')").fetchone()[0]

seen = {"plain": on(duckdb.connect())}
with open_store(sys.argv[1]) as store:
    seen["writer"] = on(store.con)
with open_store(sys.argv[1], read_only=True) as store:
    seen["reader"] = on(store.con)
seen["normaliser"] = on(_engine(1_000_000))
seen["engine"] = on(engine.connect())
print(json.dumps(seen))
"""


def test_the_bar_prints_unless_turned_off(capfd: pytest.CaptureFixture[str]) -> None:
    con = duckdb.connect()
    try:
        con.execute("SET progress_bar_time = 0")  # turns the bar on, shown at once
        assert con.execute(_QUERY).fetchall() == [(8571429,)]
        assert "%" in capfd.readouterr().out
        engine.quiet(con)
        capfd.readouterr()  # the SET statement itself, while the bar was on
        assert con.execute(_QUERY).fetchall() == [(8571429,)]
        assert capfd.readouterr() == ("", "")
    finally:
        con.close()


def test_every_connection_of_ours_has_it_off(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "s.duckdb")],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen == {
        "plain": True,  # DuckDB's default outside pytest: what ours must not keep
        "writer": False,
        "reader": False,
        "normaliser": False,
        "engine": False,
    }


_KERNEL_CELL = """
import duckdb
from asg_audit import engine
from asg_audit.ingest_staging import query_progress
con = engine.connect()
seen = []
con.execute("CREATE TABLE t (n BIGINT)")
con.execute("BEGIN")  # as ingest stages a file: inside the store's transaction
with query_progress(con, 1000, seen.append):
    con.execute("INSERT INTO t SELECT * FROM range(1000)")
con.execute("COMMIT")
n = con.execute("SELECT count(*) FROM t").fetchone()[0]
print("bar", con.execute("SELECT current_setting('enable_progress_bar')").fetchone()[0], n)
"""


def test_in_a_jupyter_kernel(tmp_path: Path) -> None:
    """A Jupyter kernel without ipywidgets refuses every progress bar setting (its bar is off
    already): connections still open, and a progress estimate is simply not had."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(_KERNEL_CELL)])
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    (output,) = nb.cells[0].outputs
    assert output["text"] == "bar False 1000\n"
