"""DuckDB connections that keep quiet: every connection this package opens goes through here.

DuckDB's own progress bar is on by default in Python and prints to standard output for any
query that runs longer than two seconds (ingesting a large file, rejudging a store): into a
notebook's cell output, or into the file a report or a JSON summary is piped to. Ours goes to
standard error, on a terminal only (`asg_audit.progress`); `asg_audit.ingest_staging`'s
`query_progress` turns DuckDB's on, with printing off, only to read its estimate.
"""

from __future__ import annotations

import weakref

import duckdb

__all__ = ["bar_settable", "connect", "quiet"]

# Connections on which DuckDB refused to change the progress bar (a Jupyter kernel without
# ipywidgets): a refused SET inside a transaction would abort it, so none is tried again.
_BAR_FIXED: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()


def quiet(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Turn DuckDB's progress bar off on `con` (a setting of this connection only); return it.

    In a Jupyter kernel without ipywidgets DuckDB refuses to change any progress bar setting
    (it could not draw the bar there) and has the bar off already: that is left as it is.
    """
    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.InvalidInputException:
        row = con.execute("SELECT current_setting('enable_progress_bar')").fetchone()
        if row is None or row[0]:
            raise
        _BAR_FIXED.add(con)
    return con


def bar_settable(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether DuckDB lets `con`'s progress bar settings change (see `quiet`)."""
    return con not in _BAR_FIXED


def connect(database: str = ":memory:", *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB connection with DuckDB's progress bar off.

    The setting is made on the connection, not passed as `config`: DuckDB refuses a second
    connection to a file opened with another configuration, and a notebook may hold one.
    """
    con = duckdb.connect(database, read_only=read_only)
    try:
        return quiet(con)
    except BaseException:
        con.close()
        raise
