"""Judging a store's rows again when the normaliser rules changed (`normalize.RULES_VERSION`).

A store remembers the rules version its rows were judged by (`store_settings`, key
`rules_version`; absent in a store from before it was kept: 0, older rules). When a writer opens
a store judged by older rules, `rejudge` runs before anything else is written, in one
transaction:

- every observation that keeps its raw text (polls, webhook deliveries) goes through the one
  normaliser again: a record it still accepts gets its normalised columns (flags included)
  rewritten; a record it now rejects moves to `rejects`, with its raw text, reason code, origin
  and run, and out of `observations`: nothing is lost;
- observations that keep no raw text (accepted file records: the file and line are the
  evidence) are read again from their file when it is still there, a regular file, and the line
  at their `origin_line` has their payload hash (`_reread_files`); those are judged with the
  rest. The others (file gone or changed, a pipe, an array or document over 256 MiB) stay as
  they are, and their number is kept (`older_rules_observations`) and shown by `db info`;
- `results` is derived again from `observations`, for every task, by the rules of
  `asg_audit.results_sql`;
- the run is recorded (command `rejudge`, with its counts) and the rules version is stored.

A store judged by newer rules than this code's is refused by writers (`SchemaVersionError`, the
file unchanged) and read with a warning.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import stat
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import duckdb
import polars as pl
import pyarrow as pa

from asg_audit import engine
from asg_audit.errors import SchemaVersionError
from asg_audit.filelines import (
    PROCESS_RELATIVE,
    HashingReader,
    LineBatches,
    duckdb_path,
    file_layout,
    open_binary,
    store_file_ids,
)
from asg_audit.model import NORMALISED_SCHEMA, Source, new_run_id
from asg_audit.normalize import DEFAULT_MAX_RECORD_BYTES, RULES_VERSION, normalise_sql
from asg_audit.results_sql import RESULTS_SQL

__all__ = [
    "RULES_KEY",
    "UNJUDGED_KEY",
    "RejudgeOutcome",
    "check_writable_rules",
    "rejudge",
    "rules_note",
    "setting",
    "stored_rules_version",
    "write_setting",
]

RULES_KEY: Final = "rules_version"
# The observations that kept no raw text when the rows were last judged again: they were
# judged by older rules and stay so.
UNJUDGED_KEY: Final = "older_rules_observations"
# Above this many observations, say that judging them again has started (it takes a while).
_ANNOUNCE_ABOVE: Final = 100_000
# Sources whose observation's task id came from the request when the body had none.
_HINTED_SOURCES: Final = (str(Source.POLL), str(Source.STATUS))


@dataclass(frozen=True, slots=True)
class RejudgeOutcome:
    """What judging a store again changed."""

    from_version: int
    judged: int = 0  # observations normalised again (from their raw text or their file)
    reread: int = 0  # of those, file records read again from their file
    changed: int = 0  # of those, rewritten (a field or flag differs)
    rejected: int = 0  # of those, now rejects (moved to `rejects`)
    without_raw: int = 0  # file observations whose record could not be read again: left
    results_changed: int = 0  # tasks whose `results` row changed, appeared or went

    def _left(self) -> str:
        if not self.without_raw:
            return ""
        return (
            f" {self.without_raw:,} file observations keep no raw text and their file is gone"
            " or changed: they stay as they were;"
        )

    def notice(self, path: Path) -> str:
        """One line for stderr."""
        return (
            f"asg-audit: {path}: rows stored under older normaliser rules (version"
            f" {self.from_version}) were judged again by this asg_audit's (version"
            f" {RULES_VERSION}): {self.judged:,} observations judged again ({self.reread:,}"
            f" read again from their files), {self.changed:,} changed, {self.rejected:,} now"
            f" rejected (moved to rejects);{self._left()} {self.results_changed:,} results"
            " changed"
        )


def _has_settings(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database()"
        " AND table_name = 'store_settings'"
    ).fetchall()[0]
    return bool(row[0])


def setting(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    """Return a store setting, or None when absent (or the store predates settings)."""
    if not _has_settings(con):
        return None
    rows = con.execute("SELECT value FROM store_settings WHERE key = ?", [key]).fetchall()
    return str(rows[0][0]) if rows else None


def write_setting(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    """Store a setting (inside the caller's transaction)."""
    con.execute(
        "INSERT OR REPLACE INTO store_settings VALUES (?, ?, ?)", [key, value, datetime.now(UTC)]
    )


def stored_rules_version(con: duckdb.DuckDBPyConnection) -> int:
    """Return the normaliser rules version the store's rows were judged by (0: older/unknown)."""
    value = setting(con, RULES_KEY)
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def check_writable_rules(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Return the store's rules version; refuse (SchemaVersionError) one newer than this code's."""
    version = stored_rules_version(con)
    if version > RULES_VERSION:
        raise SchemaVersionError(
            f"{path}: its rows were judged by newer normaliser rules (version {version}) than"
            f" this asg_audit's ({RULES_VERSION}); upgrade asg_audit instead of writing to it"
            " with this one (reading it works)"
        )
    return version


def rules_note(con: duckdb.DuckDBPyConnection, path: Path) -> str | None:
    """Return a reader's one-line warning when the rows were judged by other rules, else None."""
    version = stored_rules_version(con)
    if version < RULES_VERSION:
        return (
            f"{path}: its rows were judged by older normaliser rules (version {version}; this"
            f" asg_audit's: {RULES_VERSION}): figures may count records today's rules reject or"
            " flag otherwise; the next command that writes to it (ingest, track, collect, ...)"
            " judges them again"
        )
    if version > RULES_VERSION:
        return (
            f"{path}: its rows were judged by newer normaliser rules (version {version}) than"
            f" this asg_audit's ({RULES_VERSION}); read as they are; upgrade asg_audit to"
            " write to it"
        )
    return None


def rejudge(
    con: duckdb.DuckDBPyConnection, path: Path, from_version: int, *, notify: bool = True
) -> RejudgeOutcome:
    """Judge the store's rows again by this code's rules, in one transaction; store the version.

    Prints a one-line notice on stderr (with `notify`) when the store held observations.
    """
    total, without_raw = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE raw IS NULL) FROM observations"
    ).fetchall()[0]
    if notify and total > _ANNOUNCE_ABOVE:
        print(
            f"asg-audit: {path}: judging {total:,} observations again by this asg_audit's"
            f" normaliser rules (version {RULES_VERSION}) ...",
            file=sys.stderr,
            flush=True,
        )
    con.execute("BEGIN TRANSACTION")
    try:
        outcome = _rejudge(con, path, from_version, int(without_raw)) if total else None
        write_setting(con, RULES_KEY, str(RULES_VERSION))
        write_setting(con, UNJUDGED_KEY, str(outcome.without_raw if outcome else 0))
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    if outcome is None:
        return RejudgeOutcome(from_version=from_version)
    if notify:
        print(outcome.notice(path), file=sys.stderr, flush=True)
    return outcome


def _rejudge(
    con: duckdb.DuckDBPyConnection, store: Path, from_version: int, without_raw: int
) -> RejudgeOutcome:
    started = datetime.now(UTC)
    # The records as the normaliser takes them. `origin_line` carries the observation's id
    # through the normaliser (which passes it on untouched); the real line is read back below.
    hinted = ", ".join(f"'{s}'" for s in _HINTED_SOURCES)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _rj_src AS SELECT raw, NULL::BLOB AS raw_bytes, source,"
        " observed_at, origin, obs_id AS origin_line, origin_hash,"
        f" CASE WHEN source IN ({hinted}) THEN task_id END AS task_id_hint, http_status"
        " FROM observations WHERE raw IS NOT NULL"
    )
    reread = _reread_files(con, store)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _rj AS {normalise_sql('_rj_src')}")
    judged = int(con.execute("SELECT count(*) FROM _rj").fetchall()[0][0])
    rejected = int(
        con.execute(
            "INSERT INTO rejects (run_id, source, observed_at, origin, origin_line, reason,"
            " field, detail, raw) SELECT o.run_id, o.source, o.observed_at, o.origin,"
            " o.origin_line, j.reject_reason, j.reject_field, j.reject_detail ||"
            f" ' (stored under older normaliser rules, version {from_version}; judged again by"
            f" version {RULES_VERSION})', j.reject_raw"
            " FROM _rj j JOIN observations o ON o.obs_id = j.origin_line"
            " WHERE j.reject_reason IS NOT NULL"
        ).fetchall()[0][0]
    )
    con.execute(
        "DELETE FROM observations WHERE obs_id IN"
        " (SELECT origin_line FROM _rj WHERE reject_reason IS NOT NULL)"
    )
    columns = list(NORMALISED_SCHEMA)
    assignments = ", ".join(f"{c} = j.{c}" for c in columns)
    differs = " OR ".join(f"o.{c} IS DISTINCT FROM j.{c}" for c in columns)
    changed = int(
        con.execute(
            f"UPDATE observations o SET {assignments} FROM _rj j"
            f" WHERE j.origin_line = o.obs_id AND j.reject_reason IS NULL AND ({differs})"
        ).fetchall()[0][0]
    )
    # Every task's result, derived again from what observations now hold.
    con.execute("CREATE OR REPLACE TEMP TABLE _rj_old AS SELECT * FROM results")
    con.execute("DELETE FROM results")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _touched AS SELECT DISTINCT task_id FROM observations"
    )
    con.execute(f"INSERT INTO results {RESULTS_SQL}")
    results_changed = int(
        con.execute(
            "SELECT count(*) FROM (SELECT task_id FROM (FROM _rj_old EXCEPT ALL FROM results)"
            " UNION SELECT task_id FROM (FROM results EXCEPT ALL FROM _rj_old))"
        ).fetchall()[0][0]
    )
    outcome = RejudgeOutcome(
        from_version=from_version,
        judged=judged,
        changed=changed,
        rejected=rejected,
        reread=reread,
        without_raw=without_raw - reread,
        results_changed=results_changed,
    )
    run_id = new_run_id(started)
    con.execute(
        "INSERT INTO runs VALUES (?, 'rejudge', ?, ?, 'ok', ?)",
        [
            run_id,
            started,
            datetime.now(UTC),
            json.dumps({"rules_version": RULES_VERSION, **_counts(outcome)}),
        ],
    )
    for table in ("_rj_src", "_rj", "_rj_old", "_touched"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return outcome


_READ_ERRORS: Final = (
    OSError,
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    ValueError,
    pa.ArrowException,
)
# Documents and arrays are read whole by DuckDB's JSON reader (in a separate engine): larger
# files of that layout are not read again.
_MAX_DOCUMENT_FILE_BYTES: Final = 256 << 20


_ESCAPED_BYTE: Final = re.compile(rb"\\x([89a-f][0-9a-f])")


def _candidates(origin: str, store: Path) -> list[Path]:
    """Return where the file an observation names may be, in order.

    The origin is the name as it was given to `ingest` (`model.path_text`): a relative name is
    looked for from the current folder, then from the store's folder (a scheduled job or a
    notebook may run elsewhere); a byte that was not UTF-8 is stored as `\\xNN` and is looked
    for as that byte too.
    """
    names = [Path(origin)]
    raw = origin.encode("utf-8", "surrogateescape")
    unescaped = _ESCAPED_BYTE.sub(lambda m: bytes([int(m.group(1), 16)]), raw)
    if unescaped != raw:
        names.append(Path(os.fsdecode(unescaped)))
    found: list[Path] = []
    for name in names:
        found.append(name)
        if not name.is_absolute():
            found.append(store.absolute().parent / name)
    return list(dict.fromkeys(found))


def _reread_files(con: duckdb.DuckDBPyConnection, store: Path) -> int:
    """Add to `_rj_src` the file observations whose record is still in their file; return how
    many.

    Accepted file records keep no raw text: the file and line are the evidence. Where the file
    is still there (its name as stored, a regular file), each line is read again, and taken
    only where its text is the record stored: the same line number and the same payload hash
    (md5 of the text). A file that cannot be read, or changed, is left: its observations stay
    as they were.
    """
    origins = [
        str(origin)
        for (origin,) in con.execute(
            f"SELECT DISTINCT origin FROM observations WHERE source = '{Source.FILE}'"
            " AND raw IS NULL AND origin IS NOT NULL ORDER BY origin"
        ).fetchall()
    ]
    found = 0
    store_files = store_file_ids(store)
    for origin in origins:
        if PROCESS_RELATIVE.match(origin):
            continue  # `<(...)`, /dev/stdin: another file in every process, read once
        for path in _candidates(origin, store):
            try:
                info = path.stat()
                if not stat.S_ISREG(info.st_mode):
                    continue  # a pipe or a device is read once, never again
                if (info.st_dev, info.st_ino) in store_files:
                    continue  # never the store itself: closing it would drop its lock
                matched = 0
                for batch in _file_batches(path, info.st_size):
                    matched += _match(con, origin, batch)
            except _READ_ERRORS:
                continue
            if matched:
                found += matched
                break
    return found


def _file_batches(path: Path, size: int) -> Iterator[pa.RecordBatch | pl.DataFrame]:
    """The records of a file as `raw`, `origin_line` (numbered as ingest numbers them)."""
    from asg_audit.ingest_staging import DOCUMENT_READERS  # it imports the store

    layout = file_layout(path)
    if layout == "lines":
        with open_binary(path) as fh:
            lines = LineBatches(
                HashingReader(fh),
                chunk_bytes=8 << 20,
                on_read=lambda: None,
                max_line_bytes=DEFAULT_MAX_RECORD_BYTES,
            )
            yield from lines.reader()
        return
    if size > _MAX_DOCUMENT_FILE_BYTES:
        return
    reader = engine.connect()  # its errors leave the store's transaction alone
    try:
        reader.execute("SET memory_limit = '512MB'")
        with duckdb_path(path) as name:
            frame: pl.DataFrame = reader.sql(
                f"SELECT json::VARCHAR AS raw, ordinality AS origin_line"
                f" FROM {DOCUMENT_READERS[layout]}",
                params={"path": name},
            ).pl()
    except duckdb.Error:
        return  # not readable as it was: left as it is
    finally:
        reader.close()
    yield frame


def _match(
    con: duckdb.DuckDBPyConnection, origin: str, batch: pa.RecordBatch | pl.DataFrame
) -> int:
    con.register("_rj_lines", batch)
    try:
        row = con.execute(
            "INSERT INTO _rj_src SELECT f.raw::VARCHAR, NULL::BLOB, o.source, o.observed_at,"
            " o.origin, o.obs_id, o.origin_hash, NULL::VARCHAR, o.http_status"
            " FROM _rj_lines f JOIN observations o ON o.origin_line = f.origin_line"
            f" WHERE o.source = '{Source.FILE}' AND o.raw IS NULL AND o.origin = ?"
            " AND f.raw IS NOT NULL AND o.payload_hash = md5(f.raw::VARCHAR)",
            [origin],
        ).fetchall()
    finally:
        con.unregister("_rj_lines")
    return int(row[0][0]) if row else 0


def _counts(outcome: RejudgeOutcome) -> dict[str, int]:
    return {f: getattr(outcome, f) for f in RejudgeOutcome.__dataclass_fields__}
