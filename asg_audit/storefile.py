"""A store's file: what it must be before DuckDB writes it, and connecting to it.

`asg_audit.store.open_store` opens a store through these: the checks of the path (not a
folder, not under a file, no planted write-ahead log), the connection with its wait for another
writer, the check that the file is whole, the migrations of an older schema (or the refusal of
a newer one, of another application's database, of a damaged store), and DuckDB's input/output
errors said in one line. Also the locks a process keeps per file: one write transaction at a
time, and the registry of the connections it holds open.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TypeVar

import duckdb

from asg_audit import engine
from asg_audit.errors import SchemaVersionError, StoreBusyError, StoreError, StoreFileError
from asg_audit.filelines import special_file_kind
from asg_audit.migrations import MIGRATIONS
from asg_audit.normalize import RULES_VERSION
from asg_audit.rejudge import RULES_KEY, rules_note, stored_rules_version, write_setting

__all__ = [
    "SCHEMA_VERSION",
    "STOP_POLL_S",
    "check_intact",
    "connect",
    "damaged_in_use",
    "disconnect",
    "file_lock",
    "migrate",
    "no_database_yet",
    "not_a_folder_above",
    "refuse_planted_files",
    "schema_version",
    "store_io_error",
    "upgraded_reader",
    "waited",
    "warn_rules",
    "write_lock",
]

SCHEMA_VERSION: Final = len(MIGRATIONS)
_WRITE_LOCKS: dict[Path, threading.RLock] = {}
_Lock = TypeVar("_Lock")
_WRITE_LOCKS_GUARD = threading.Lock()
# The connections `open_store` holds open, by file (ids): DuckDB shares one database instance
# among a process's connections to a file, and a file is checked to be whole only by the
# first, before any of them writes (see `_check_whole`).
_OPEN_FILES: dict[Path, set[int]] = {}
# DuckDB's file layout: a main header and two database headers of 4 KiB each, then the blocks.
_DUCKDB_HEADER_BYTES: Final = 3 * 4096


def file_lock(registry: dict[Path, _Lock], path: Path, make: Callable[[], _Lock]) -> _Lock:
    """Return the lock of `registry` for one file (by its resolved path), made on first use."""
    key = path.resolve()
    with _WRITE_LOCKS_GUARD:
        if (lock := registry.get(key)) is None:
            lock = registry[key] = make()
        return lock


# How often a wait for the store (another writer, this process's collect claim) looks whether a
# stop asked it to end: a stop handled on another thread (the collector's event loop) cannot
# interrupt it.
STOP_POLL_S: Final = 0.1


def waited(wait_seconds: float, started: float, stopped: Callable[[], bool] | None) -> str:
    """Say how a wait for a busy store ended: its time ran out, or a stop ended it."""
    if stopped is not None and stopped():
        return f" (a stop ended the wait after {time.monotonic() - started:.1f} s)"
    return f" (waited {wait_seconds:g} s)" if wait_seconds else ""


def write_lock(path: Path) -> threading.RLock:
    """Return the lock that serialises write transactions on one file within this process."""
    return file_lock(_WRITE_LOCKS, path, threading.RLock)


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
    ).fetchall()[0]
    if not exists or not exists[0]:
        return 0
    row = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0]
    return int(row[0]) if row else 0


def _is_store(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the database has our `schema_migrations` table: a store, however old."""
    columns = con.execute(
        "SELECT list(column_name ORDER BY column_name) FROM information_schema.columns"
        " WHERE table_catalog = current_database() AND table_name = 'schema_migrations'"
    ).fetchall()[0][0]
    return bool(columns == ["applied_at", "name", "version"])


def _tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database()"
    ).fetchall()
    return [str(name) for (name,) in rows]


@functools.cache
def _schema_columns() -> dict[tuple[str, str], str]:
    """Return the columns a store at this code's schema version has, (table, column) to its
    type as DuckDB names it: the migrations applied to an empty in-memory database."""
    con = engine.connect()
    try:
        for migration in MIGRATIONS:
            for statement in migration.statements:
                con.execute(statement)
        rows = con.execute(_COLUMNS_SQL).fetchall()
    finally:
        con.close()
    return {(str(t), str(c)): str(k) for t, c, k in rows}


_COLUMNS_SQL: Final = (
    "SELECT table_name, column_name, data_type FROM information_schema.columns"
    " WHERE table_catalog = current_database() AND table_schema = 'main'"
)


def check_intact(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Refuse a store at this schema version that lacks a table or column of it, or holds one
    of its columns as another type (dropped or altered outside asg_audit): every command would
    otherwise fail on it half-way with a catalog or conversion error. Tables and columns of its
    own a user added are no concern. One catalog query: it runs at every open."""
    rows = con.execute(_COLUMNS_SQL).fetchall()
    found = {(str(t), str(c)): str(k) for t, c, k in rows}
    expected = _schema_columns()
    missing = expected.keys() - found.keys()
    retyped = sorted(
        f"{t}.{c} is {found[t, c]}, not {kind}"
        for (t, c), kind in expected.items()
        if (t, c) in found and found[t, c] != kind
    )
    if not missing and not retyped:
        return
    tables = {t for t, _ in found}
    gone = sorted({t for t, _ in missing if t not in tables})
    columns = sorted(f"{t}.{c}" for t, c in missing if t in tables)
    what = "; ".join(
        part
        for part in (
            f"table{'s' if len(gone) > 1 else ''} {', '.join(gone)} missing" if gone else "",
            f"column{'s' if len(columns) > 1 else ''} {', '.join(columns[:8])}"
            f"{', ...' if len(columns) > 8 else ''} missing"
            if columns
            else "",
            f"column{'s' if len(retyped) > 1 else ''} {', '.join(retyped[:4])}"
            f"{', ...' if len(retyped) > 4 else ''}"
            if retyped
            else "",
        )
        if part
    )
    raise StoreFileError(
        f"{path}: a damaged store: schema version {SCHEMA_VERSION} but {what} (changed outside"
        " asg_audit); left untouched: restore it from a copy, or ingest into a new store"
    )


def _not_a_store(path: Path, tables: Sequence[str] = ()) -> str:
    if tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        return (
            f"{path}: a DuckDB database of another application (tables: {shown}), not an"
            " asg_audit store; left untouched (use --db with a store or a new file)"
        )
    # A DuckDB file with nothing in it: a store whose creation was interrupted (its first
    # migration is one transaction, rolled back), or `duckdb.connect` of a new name. A writer
    # makes it a store, as it does a new file; for a reader it is no store yet.
    return (
        f"{path}: no database here yet (an empty DuckDB file, not an asg_audit store until"
        " `asg-audit ingest` or `collect` writes to it)"
    )


def no_database_yet(path: Path) -> str:
    return f"{path}: no database here yet (run `asg-audit ingest` or `collect`)"


# What a migration meets in a store whose tables were changed outside asg_audit (a column it
# adds already there, a table it alters gone or of another type); disk errors are not these.
_SCHEMA_CLASH: Final = (
    duckdb.CatalogException,
    duckdb.BinderException,
    duckdb.ConversionException,
    duckdb.ConstraintException,
)


def migrate(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    version = schema_version(con)
    # Only an empty database becomes a store: asg_audit's tables are never added to another
    # application's database (its `results` might even clash with ours).
    if version == 0 and not _is_store(con) and (tables := _tables(con)):
        raise StoreFileError(_not_a_store(path, tables))
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path}: schema version {version} is newer than this asg_audit supports "
            f"({SCHEMA_VERSION}); upgrade asg_audit instead of opening it with this one"
        )
    if version == SCHEMA_VERSION:
        return
    # a store at version 0 holding tables already: every migration row deleted (review)
    damaged_new = version == 0 and bool(set(_tables(con)) - {"schema_migrations"})
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
        )
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in migration.statements:
                try:
                    con.execute(statement)
                except _SCHEMA_CLASH as exc:
                    if version == 0 and not damaged_new:
                        raise  # a new store: a bug, not a damaged file
                    raise StoreFileError(
                        f"{path}: a damaged store: schema version {version}, but upgrading it"
                        f" by migration {number} ({migration.name}) failed: DuckDB:"
                        f" {_first_line(str(exc))} (its tables were changed outside asg_audit:"
                        " a migration's row deleted from schema_migrations, or a table"
                        " altered); left untouched: restore it from a copy, or ingest into a"
                        " new store"
                    ) from None
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                [number, migration.name, datetime.now(UTC)],
            )
        if version == 0:
            # A new store: its rows will all be judged by this code's rules. An older store
            # keeps no rules version (0) until `rejudge` has judged its rows again.
            write_setting(con, RULES_KEY, str(RULES_VERSION))
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _is_database_file(con: duckdb.DuckDBPyConnection) -> bool:
    """Tell whether a connection opened a database file, not DuckDB's stand-in for another file.

    DuckDB opens a `.csv`, `.json` or `.parquet` path as an in-memory database with a view of
    the file (the usual slip of swapping `--db` and the input file). Told apart after the open
    and through DuckDB, never by reading the file's header from Python: closing any handle on
    a file releases every POSIX lock this process holds on it, DuckDB's own included, so a
    second `open_store` in a process (the webhook receiver's normaliser) let other processes
    write the same file at the same time.
    """
    row = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    return row is not None and row[0] is not None


def not_a_folder_above(path: Path) -> str | None:
    """Name the first folder on the way to `path` that is a file (or another thing, not a
    folder), as "afile is a file, not a folder"; None when each one there is a folder (or is
    missing, which its caller reports as a missing folder).

    Checked before anything beside the store (its write-ahead log) is looked at: those checks
    would fail with "Not a directory", naming the log rather than the file in the way.
    """
    for ancestor in reversed(path.parents):
        try:
            mode = ancestor.stat().st_mode
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            continue  # not looked at here: DuckDB's open says what is wrong
        if stat.S_ISDIR(mode):
            continue
        what = "a file" if stat.S_ISREG(mode) else (special_file_kind(ancestor) or "a file")
        return f"{ancestor} is {what}, not a folder"
    return None


def refuse_planted_files(path: Path) -> None:
    """Refuse to write beside a store whose write-ahead log or spill folder is not DuckDB's own.

    DuckDB writes `<db>.wal` (and spills to `<db>.tmp/`) beside the file a `--db` link points
    to, by name, following a symbolic link there: a link planted there (a job run by root in a
    folder others can write) would have it overwrite the file the link points to, or create
    it. A hard link to another file is refused too. Only what is there when the store opens is
    checked: DuckDB makes and removes the log while it writes, so a store belongs in a folder
    only its owner can write.
    """
    real = os.path.realpath(path)
    for name, kind in ((f"{real}.wal", "write-ahead log"), (f"{real}.tmp", "spill folder")):
        try:
            info = os.lstat(name)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if (problem_above := not_a_folder_above(Path(real))) is not None:
                # `--db` is a link to a path under a file: name that file, not the log
                raise StoreError(f"{path}: cannot be the store: {problem_above}") from None
            raise StoreError(f"{name}: cannot check the store's {kind}: {exc.strerror}") from None
        problem: str | None
        if stat.S_ISLNK(info.st_mode):
            problem = f"a symbolic link (to {os.readlink(name)})"
        elif kind == "spill folder":
            problem = None if stat.S_ISDIR(info.st_mode) else "not a folder"
        elif not stat.S_ISREG(info.st_mode):
            problem = "not a file"
        else:
            problem = "a file with other names (hard links)" if info.st_nlink > 1 else None
        if problem is not None:
            raise StoreFileError(
                f"{name}: refusing to write the store's {kind}: it is {problem}; nothing was"
                " written to it. Remove it (DuckDB creates it itself) and run again"
            )


# Per store file (its real path): how long any open of it in this process waits at least for
# another process holding it (`patience`).
_PATIENCE: dict[str, list[float]] = {}
_PATIENCE_GUARD = threading.Lock()


@contextlib.contextmanager
def patience(path: str | os.PathLike[str], seconds: float) -> Iterator[None]:
    """Within the block, every open of the store at `path` in this process waits at least
    `seconds` for another process holding it. An audit runs its steps so: each step opens the
    store itself, and a reader of another process (a notebook, a report) that opens it
    between two steps delays the next step instead of failing it at once (tester T8)."""
    key = os.path.realpath(path)
    with _PATIENCE_GUARD:
        _PATIENCE.setdefault(key, []).append(seconds)
    try:
        yield
    finally:
        with _PATIENCE_GUARD:
            waits = _PATIENCE[key]
            waits.remove(seconds)
            if not waits:
                del _PATIENCE[key]


def _patience(path: Path) -> float:
    with _PATIENCE_GUARD:
        return max(_PATIENCE.get(os.path.realpath(path)) or [0.0])


def connect(
    path: Path,
    *,
    read_only: bool,
    wait_seconds: float,
    stopped: Callable[[], bool] | None = None,
) -> duckdb.DuckDBPyConnection:
    wait_seconds = max(wait_seconds, _patience(path)) if _PATIENCE else wait_seconds
    started = time.monotonic()
    deadline = started + wait_seconds
    delay = 0.05
    while True:
        try:
            con = engine.connect(str(path), read_only=read_only)
        except duckdb.ConnectionException as exc:
            if not read_only:
                # DuckDB has the file open in this process with another configuration: a
                # read-only store (an `open_store(read_only=True)` block, a running `analyze`)
                # that a writer cannot share.
                if "different configuration" in str(exc):
                    raise StoreError(
                        f"{path}: open read-only in this process (an open_store(...,"
                        " read_only=True) block or a running analyze); close it (leave its"
                        " `with` block) before writing to the store"
                    ) from None
                raise StoreError(f"{path}: cannot open the database: {exc}") from None
            # This process already writes to the file: share its instance (Store.read_only
            # still refuses writes through this handle).
            con = engine.connect(str(path))
            try:
                con.execute("SET TimeZone = 'UTC'")
                _register(con, path)
            except BaseException:  # Ctrl-C included: a half-made connection never stays open
                disconnect(con, path)
                raise
            return con
        except duckdb.IOException as exc:
            text = str(exc)
            if "not a valid duckdb database file" in text.lower():
                raise StoreFileError(f"{path}: not a DuckDB database file") from None
            if (foreign := _foreign_wal(path, text)) is not None:
                raise foreign from None
            if isinstance(damaged := store_io_error(path, exc), StoreFileError):
                raise damaged from None  # cut within its headers or catalog, or corrupt
            if "lock" not in text.lower():
                raise StoreError(f"{path}: cannot open the database: {text}") from None
            if time.monotonic() >= deadline or (stopped is not None and stopped()):
                # A reader is locked out by a writer only; a writer by any other process
                # that has the file open, a reader (a notebook holding it open) included.
                holder = (
                    "another process is writing to it"
                    if read_only
                    else "another process has it open (a writer, or a reader such as a"
                    " notebook holding it open)"
                )
                raise StoreBusyError(
                    f"{path}: database busy: {holder}" + waited(wait_seconds, started, stopped)
                ) from None
            time.sleep(delay if stopped is None else min(delay, STOP_POLL_S))
            delay = min(delay * 2, 1.0)
        except duckdb.CatalogException as exc:
            if "in-memory database" in str(exc):  # a read-only open of another kind of file
                raise StoreFileError(f"{path}: not a DuckDB database file") from None
            raise StoreError(f"{path}: cannot open the database: {exc}") from None
        except duckdb.Error as exc:
            if isinstance(damaged := store_io_error(path, exc), StoreFileError):
                raise damaged from None
            raise StoreError(f"{path}: cannot open the database: {exc}") from None
        else:
            try:
                if not _is_database_file(con):
                    raise StoreFileError(f"{path}: not a DuckDB database file")
                con.execute("SET TimeZone = 'UTC'")
                _register(con, path, check_whole=True)
            except BaseException:  # Ctrl-C included: a half-made connection never stays open
                disconnect(con, path)
                raise
            return con


_READ_SHORT: Final = "Could not read enough bytes"
_CORRUPT: Final = "Corrupt database file"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _truncated(path: Path, detail: str) -> str:
    return (
        f"{path}: a damaged database file: truncated, {detail} (a copy, download or disk that"
        " stopped short); left untouched: restore it from a copy, or ingest into a new store"
    )


def _register(con: duckdb.DuckDBPyConnection, path: Path, *, check_whole: bool = False) -> None:
    """Count a new connection to the file; with `check_whole`, the first one of the process
    checks the file is whole (`_check_whole`) before it counts."""
    key = path.resolve()
    with _WRITE_LOCKS_GUARD:  # no other connection of this process registers meanwhile
        ids = _OPEN_FILES.setdefault(key, set())
        if check_whole and not ids:
            _check_whole(con, path)
        ids.add(id(con))


def disconnect(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Close a connection `connect` made (a no-op on one already closed)."""
    try:
        con.close()
    finally:
        with _WRITE_LOCKS_GUARD:
            _OPEN_FILES.get(path.resolve(), set()).discard(id(con))


def _check_whole(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Refuse a database file cut short (a copy or download that stopped, a full disk).

    DuckDB reads a block only when a query needs it: a file cut short opens, and fails later,
    half-way through a command (a writer may even have written to it by then). Its blocks
    follow the headers, each `block_size` bytes at the place its number says; the file holds
    every block in use, so at least as many as are in use, and the metadata blocks (the
    catalog, where tables keep their data) by number. Blocks counted but free may be missing:
    DuckDB shortens the file by the free blocks at its end. Checked only while no other
    connection of this process shares the database: the blocks it is writing count before
    they reach the file.
    """
    row = con.execute(
        "SELECT block_size, total_blocks - free_blocks,"
        " (SELECT max(block_id) + 1 FROM pragma_metadata_info())"
        " FROM pragma_database_size() WHERE database_name = current_database()"
    ).fetchone()
    if row is None or row[0] is None:
        return
    blocks = max(int(row[1] or 0), int(row[2] or 0))
    need = _DUCKDB_HEADER_BYTES + int(row[0]) * blocks
    size = path.stat().st_size
    if size < need:
        raise StoreFileError(
            _truncated(path, f"{size:,} bytes where the blocks it uses need {need:,}")
        )


_WAL_REPLAY_RE: Final = re.compile(r'Failure while replaying WAL file "([^"]*)"')
# DuckDB's words for a log that was not written for the file beside it: another store's, or
# one left by a later state of this file (a backup restored without its log).
_WAL_MISMATCH: Final = ("does not match", "checkpoint iteration")


def _foreign_wal(path: Path, text: str) -> StoreFileError | None:
    """Return the error for a write-ahead log that does not belong to the database file beside
    it (DuckDB refuses to open the file then), or None for any other error. The log is named
    and left where it is: it may hold the only copy of commits of another file."""
    found = _WAL_REPLAY_RE.search(text)
    if found is None or not any(words in text for words in _WAL_MISMATCH):
        return None
    wal = found.group(1) or f"{path}.wal"
    return StoreFileError(
        f"{path}: a damaged store: its write-ahead log {wal} does not belong to this database"
        " file (DuckDB: it was written for another file, or for a later state of this one:"
        " the file restored from a backup without its log, or another store's log copied"
        " beside it); nothing was read or written. Move the log aside (asg_audit never"
        " deletes or renames it) and run again"
    )


def store_io_error(path: Path, exc: duckdb.Error) -> StoreError:
    """Return the one-line error for a DuckDB input/output error while opening a store."""
    text = str(exc)
    if _READ_SHORT in text:
        return StoreFileError(_truncated(path, f"DuckDB: {_first_line(text)}"))
    if _CORRUPT in text:
        return StoreFileError(
            f"{path}: a damaged database file: DuckDB: {_first_line(text)}; left untouched:"
            " restore it from a copy, or ingest into a new store"
        )
    return StoreError(f"{path}: cannot use the database: {_first_line(text)}")


def damaged_in_use(path: Path, exc: BaseException) -> StoreFileError | None:
    """Return the error for a damage DuckDB found while a command used the store, or None.

    The checks at open find a file cut short or damaged in its headers or catalog; a block
    damaged inside (bit rot, a bad copy) fails its checksum only when a query reads it, in
    the middle of any command. That is a damaged store (exit 2, one line naming the file),
    not a bug's traceback (tester T1: `report`, `verify-chain`, `billing` and `collect` ended
    with one and exit 1, the code of findings). DuckDB's message starts with its words; an
    error that merely quotes them (a value in a conversion error) is not one.
    """
    if isinstance(exc, duckdb.Error) and str(exc).startswith(_CORRUPT):
        damaged = store_io_error(path, exc)
        return damaged if isinstance(damaged, StoreFileError) else None
    return None


def upgraded_reader(
    con: duckdb.DuckDBPyConnection, path: Path, wait_seconds: float
) -> duckdb.DuckDBPyConnection:
    """Return a read-only connection to a current store: `con`, or a new one once an older
    store was upgraded (`con` is then closed). The caller closes `con` if this raises."""
    version = schema_version(con)
    if version == 0 and not _is_store(con):
        # A reader never turns a file into a store (an older store is upgraded, below).
        raise StoreFileError(_not_a_store(path, _tables(con)))
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path}: schema version {version} is newer than this asg_audit supports "
            f"({SCHEMA_VERSION}); upgrade asg_audit"
        )
    if version == SCHEMA_VERSION:
        return con
    disconnect(con, path)
    try:
        # The schema only: judging the rows again by newer rules is left to the next writer
        # (a reader says it is due, see `rules_note`).
        writer = connect(path, read_only=False, wait_seconds=wait_seconds)
        try:
            migrate(writer, path)
        finally:
            disconnect(writer, path)
    except (StoreBusyError, StoreFileError):
        raise  # busy (exit 3), or damaged (a migration that cannot apply to it): said so
    except StoreError as exc:
        # read-only media, an immutable file, no write permission
        raise StoreError(
            f"{path}: schema version {version} is older than this asg_audit's"
            f" ({SCHEMA_VERSION}) and is upgraded when first opened, which writes the"
            f" file; it cannot be written ({exc}). Copy it somewhere writable and open"
            " the copy"
        ) from None
    return connect(path, read_only=True, wait_seconds=wait_seconds)


_RULES_WARNED: set[tuple[Path, int]] = set()


def warn_rules(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Warn (once a process) a reader of a store judged by other normaliser rules."""
    note = rules_note(con, path)
    key = (path.resolve(), stored_rules_version(con))
    if note is not None and key not in _RULES_WARNED:
        _RULES_WARNED.add(key)
        print(f"asg-audit: warning: {note}", file=sys.stderr, flush=True)
