"""The DuckDB evidence store: the one writer, and readers returning polars frames.

One file (default `./asg_audit.duckdb`). DuckDB allows one writing process at a time: a second
writer gets `StoreBusyError` (or waits up to `wait_seconds`). Readers open read-only.
`open_store` opens it through `asg_audit.storefile` (the checks of the file, the connection,
the migrations); `asg_audit.storeinfo` describes it for `db info` and `runs`.

`results` is derived from `observations` by `refresh_results`, for the tasks a write touched,
by the rules and query of `asg_audit.results_sql`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import duckdb
import polars as pl

from asg_audit import storefile
from asg_audit.config import check_wait_seconds
from asg_audit.errors import (
    ConfigError,
    StoreBusyError,
    StoreError,
    StoreFileError,
)
from asg_audit.filelines import special_file_kind
from asg_audit.model import (
    EXACT_DIFFERENCE,
    FINDINGS_SCHEMA,
    NORMALISED_SCHEMA,
    OBSERVATION_META_SCHEMA,
    Source,
    new_run_id,
    path_text,
)
from asg_audit.normalize import (
    NORMALISED_COLUMNS,
    RULES_VERSION,
    NormalisedBatch,
    normalise_sql,
    split_chunks,
)
from asg_audit.rejudge import (
    check_writable_rules,
    rejudge,
    stored_rules_version,
)
from asg_audit.results_sql import RESULTS_SQL, SINGLE_RESULT_COLUMNS
from asg_audit.stopsignals import run_ended
from asg_audit.storefile import SCHEMA_VERSION

__all__ = [
    "BULK_MEMORY_LIMIT",
    "SCHEMA_VERSION",
    "Store",
    "WriteStats",
    "collect_claim",
    "new_run_id",
    "open_store",
]

TABLES = (
    "runs",
    "observations",
    "results",
    "submissions",
    "rejects",
    "ingested_files",
    "poll_state",
    "findings",
)
_OBS_COLUMNS = ["obs_id", *OBSERVATION_META_SCHEMA, *NORMALISED_SCHEMA]
_STAGED_COLUMNS = ["seq", *_OBS_COLUMNS[1:]]
# What a record says about its task: two file records that agree on all of these are the same
# evidence (a duplicate), whatever their bytes or shape. Their flags too: a record that also
# states its cost under a second name with another value (`aliases_disagree`), or its time as
# epoch seconds, is other evidence of the same facts, and dropping it as a duplicate lost its
# flag (and a fail finding) or kept it, by the order the files were read in (tester T4).
_FACT_COLUMNS: Final = tuple(
    c for c in NORMALISED_SCHEMA if c not in ("task_id", "shape", "payload_hash")
)
# Up to this many staged records, results are refreshed by the full rules alone (one query);
# beyond it, first-seen single tasks take their observation directly (bulk ingest).
_SMALL_BATCH = 5_000


@dataclass(frozen=True, slots=True)
class WriteStats:
    """What one write added to the store."""

    observations: int = 0
    duplicates: int = 0
    rejects: int = 0
    new_results: int = 0
    updated_results: int = 0
    new_conflicts: int = 0

    def __add__(self, other: WriteStats) -> WriteStats:
        return WriteStats(
            **{f: getattr(self, f) + getattr(other, f) for f in WriteStats.__dataclass_fields__}
        )


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _new_reject(reason: str, field: str, raw: str) -> str:
    """Return the condition that a staged reject `b` (its columns so named) is not a file's
    reject already stored: the same line of the same file with the same bytes (a grown export
    read again) is not stored twice (tester T4), as `track` does with its rejects. Only for
    regular files: a pipe's name is another stream in every run."""
    return (
        f"(b.source <> '{Source.FILE}' OR NOT EXISTS (SELECT 1 FROM rejects r"
        f" WHERE r.source = '{Source.FILE}' AND r.origin = b.origin"
        f" AND r.origin_line = b.origin_line AND r.reason = b.{reason}"
        f" AND r.field IS NOT DISTINCT FROM b.{field} AND r.raw IS NOT DISTINCT FROM b.{raw}))"
    )


# A writer that may create a file, one at a time per file in this process (`open_store`).
_CREATING: dict[Path, threading.Lock] = {}

# One collect run per file in this process (`collect_claim`).
_COLLECT_CLAIMS: dict[Path, threading.Lock] = {}


@contextlib.contextmanager
def collect_claim(
    path: Path, wait_seconds: float, *, stopped: Callable[[], bool] | None = None
) -> Iterator[None]:
    """Hold the file's collect claim of this process while the block runs.

    Two collect runs on one store in two processes cannot both write (DuckDB's file lock: the
    second is `StoreBusyError` after its wait). In one process, DuckDB shares the file between
    connections, so two runs (two threads, or `asyncio.gather` of two `collect` calls) would
    poll the same tasks twice and store each answer twice. The second waits for the first up
    to `wait_seconds`, then is refused the same way; a wait `stopped()` ends (a stop signal
    handled by the collector's event loop, on another thread) is refused at once.
    """
    claim = storefile.file_lock(_COLLECT_CLAIMS, path, threading.Lock)
    started = time.monotonic()
    deadline = started + wait_seconds
    while not claim.acquire(timeout=min(storefile.STOP_POLL_S, wait_seconds)):
        if time.monotonic() >= deadline or (stopped is not None and stopped()):
            raise StoreBusyError(
                f"{path}: database busy: another collect run of this process writes to it"
                + storefile.waited(wait_seconds, started, stopped)
            )
    try:
        yield
    finally:
        claim.release()


class Store:
    """An open store. Use `open_store`; writes go through the methods below only.

    A Store (its connection) belongs to one thread: open one per thread. Write transactions on
    the same file are serialised within the process (DuckDB allows one writing process, and
    concurrent transactions touching the same results rows would conflict).
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, *, read_only: bool) -> None:
        self._con = con
        self._closed = False
        self.path = path
        self.read_only = read_only
        self._lock = storefile.write_lock(path)
        self._depth = 0
        self._staged_seq = 0  # the order of the last staged record
        self._staging_ready = False

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection; a StoreError once the store is closed (every read and write
        goes through it, so none of them fails with DuckDB's 'Connection already closed')."""
        self._require_open()
        return self._con

    @property
    def closed(self) -> bool:
        """Whether the store was closed (its `with` block ended)."""
        return self._closed

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "writer"
        state = "closed" if self._closed else "open"
        return f"<Store {str(self.path)!r} {mode}, {state}>"

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (checkpointing the WAL of a writer); closing again does
        nothing."""
        self._closed = True
        storefile.disconnect(self._con, self.path)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run a block in one transaction: all of it is stored, or none of it."""
        self._require_writer()
        with self._lock:
            if self._depth:  # nested: part of the enclosing transaction
                self._depth += 1
                try:
                    yield self.con
                finally:
                    self._depth -= 1
                return
            self.con.execute("BEGIN TRANSACTION")
            self._depth = 1
            try:
                yield self.con
            except (duckdb.IOException, duckdb.TransactionException) as exc:
                # The file cannot be written (read-only folder, full disk): roll back and say
                # so in one line; what was committed before stays.
                self._rollback()
                raise StoreError(f"{self.path}: cannot write the database: {exc}") from None
            except BaseException:
                self._rollback()
                raise
            else:
                try:
                    self.con.execute("COMMIT")
                except duckdb.Error as exc:
                    # A full disk or a lost file surfaces here; DuckDB has rolled back, so
                    # what was committed before stays: one clear error, not a traceback.
                    self._staging_ready = False
                    raise StoreError(f"{self.path}: cannot write the database: {exc}") from None
            finally:
                self._depth = 0
                self._staged_seq = 0  # staged rows were committed or rolled back

    def _rollback(self) -> None:
        self._staging_ready = False  # the temp tables may have been created by this transaction
        # The failed statement may have ended the transaction already; a store closed inside
        # the block has nothing to roll back (closing did): the block's own error is the one
        # its caller is told of, not that the store is closed.
        if self._closed:
            return
        with contextlib.suppress(duckdb.Error):
            self._con.execute("ROLLBACK")

    def _require_open(self) -> None:
        if self._closed:
            raise StoreError(
                f"{self.path}: the store is closed (its `with open_store(...)` block ended, or"
                " close() was called): open it again with asg_audit.open_store to use it"
            )

    def _require_writer(self) -> None:
        self._require_open()  # a closed store says so first, read-only or not
        if self.read_only:
            raise StoreError(f"{self.path}: opened read-only; this operation writes")

    # -- readers -------------------------------------------------------------------------------

    def frame(self, table: str, *, where: str = "", params: Sequence[Any] = ()) -> pl.DataFrame:
        """Return a whole table (or the rows matching a parameterised `where`) as polars.

        A `where` DuckDB cannot parse or bind (a misspelt column, a missing parameter) is a
        ConfigError naming the table, the condition and DuckDB's reason."""
        if table not in self.tables():
            raise StoreError(f"{self.path}: no table named {table!r}")
        sql = f'SELECT * FROM "{table}"' + (f" WHERE {where}" if where else "")
        try:
            frame: pl.DataFrame = self.con.sql(sql, params=list(params) or None).pl()
        except (
            duckdb.ParserException,
            duckdb.BinderException,
            duckdb.InvalidInputException,
        ) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(
                f"{self.path}: frame({table!r}, where={where!r}): not a condition DuckDB can"
                f" run on the table: {reason}"
            ) from None
        return frame

    def tables(self) -> list[str]:
        """Return the names of the tables in the store."""
        rows = self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
        return sorted(r[0] for r in rows)

    def schema_version(self) -> int:
        """Return the migration version this file is at."""
        return storefile.schema_version(self.con)

    def count(self, table: str) -> int:
        """Return the number of rows of a table."""
        if table not in self.tables():
            raise StoreError(f"{self.path}: no table named {table!r}")
        row = self.con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0]
        return int(row[0]) if row else 0

    def file_ingested(self, content_hash: str) -> bool:
        """Return whether a file with this content hash was already ingested."""
        return bool(self.ingested_hashes([content_hash]))

    def ingested_from(self, path: str, size_bytes: int) -> bool:
        """Return whether a file was ingested from `path` at this size (likely the same file:
        its content hash, not this, decides)."""
        row = self.con.execute(
            "SELECT 1 FROM ingested_files WHERE path = ? AND size_bytes = ? LIMIT 1",
            [path, size_bytes],
        ).fetchone()
        return row is not None

    def ingested_hashes(self, content_hashes: Sequence[str]) -> set[str]:
        """Return those of the content hashes whose files were already ingested."""
        rows = self.con.execute(
            "SELECT content_hash FROM ingested_files WHERE content_hash IN (SELECT unnest(?))",
            [list(content_hashes)],
        ).fetchall()
        return {str(h) for (h,) in rows}

    # -- runs ----------------------------------------------------------------------------------

    def start_run(self, command: str, *, run_id: str | None = None) -> str:
        """Record the start of a run; return its id.

        The run keeps its process (host and pid) while it runs. Runs left `running` by a
        process of this host that no longer exists (killed, the machine restarted) are
        recorded as `abandoned` first: `asg-audit runs` never shows a dead run as running.
        """
        self._require_writer()
        run_id = run_id or new_run_id()
        host = socket.gethostname()
        owner = {"host": host, "pid": os.getpid()}
        with self.transaction():
            self._close_abandoned_runs(host)
            self.con.execute(
                "INSERT INTO runs VALUES (?, ?, ?, NULL, 'running', ?)",
                [run_id, command, datetime.now(UTC), json.dumps(owner)],
            )
        return run_id

    def _close_abandoned_runs(self, host: str) -> None:
        rows = self.con.execute(
            "SELECT run_id, stats FROM runs WHERE status = 'running'"
        ).fetchall()
        for run_id, stats in rows:
            try:
                owner = json.loads(stats) if stats is not None else None
                pid = int(owner["pid"]) if isinstance(owner, dict) else None
            except (ValueError, TypeError, KeyError):
                pid = None
            if pid is None:
                # Started by an asg_audit from before runs kept their process (142bf98): it
                # stored no host and pid. This process holds DuckDB's write lock (one writing
                # process at a time), and every writer of such an old version has ended, so
                # the run cannot be going on: it was killed, or crashed, long ago.
                note: dict[str, Any] = {
                    "abandoned": "started by an older asg_audit that kept no process id, and"
                    " no process writes to the store now: it ended without finishing the run"
                }
            elif not isinstance(owner, dict) or owner.get("host") != host or _process_exists(pid):
                continue
            else:
                note = {
                    **owner,
                    "abandoned": f"its process (pid {pid}) ended without finishing the run",
                }
            note["stored"] = stored = self._stored_by(run_id)
            if any(stored.values()):
                # what it committed before it died stays, and is said (its own stats never were)
                note["abandoned"] += (
                    " (stored before: "
                    + ", ".join(f"{what} {n:,}" for what, n in stored.items() if n)
                    + ")"
                )
            self.con.execute(
                "UPDATE runs SET status = 'abandoned', stats = ? WHERE run_id = ?",
                [json.dumps(note), run_id],
            )

    def _stored_by(self, run_id: str) -> dict[str, int]:
        """Count the rows a run committed: files, observations and rejects."""
        row = self.con.execute(
            "SELECT (SELECT count(*) FROM ingested_files WHERE run_id = $r),"
            " (SELECT count(*) FROM observations WHERE run_id = $r),"
            " (SELECT count(*) FROM rejects WHERE run_id = $r)",
            {"r": run_id},
        ).fetchone()
        files, observations, rejects = row if row is not None else (0, 0, 0)
        return {"files": files, "observations": observations, "rejects": rejects}

    def finish_run(self, run_id: str, *, status: str, stats: dict[str, Any] | None = None) -> None:
        """Record the end of a run with its outcome and counters (a one-run command's stop
        signals are left alone from here on: `stopsignals.run_ended`)."""
        self._require_writer()
        if self._invalidated():
            self._reconnect()
        if status != "interrupted":
            ended = self.con.execute("SELECT command FROM runs WHERE run_id = ?", [run_id])
            if (row := ended.fetchone()) is not None:
                run_ended(row[0])  # the command line's command may be over: see run_ended
        with self.transaction():
            self.con.execute(
                "UPDATE runs SET finished_at = ?, status = ?, stats = ? WHERE run_id = ?",
                [datetime.now(UTC), status, json.dumps(stats or {}, default=str), run_id],
            )

    def _invalidated(self) -> bool:
        """Whether DuckDB invalidated this connection's database after a FATAL error (a
        checkpoint it could not write: a full disk, a file size limit). Outside a transaction
        only: within one, the block's own error is the one its caller is told of."""
        if self._depth:
            return False
        try:
            self._con.execute("SELECT 1").fetchall()
        except duckdb.FatalException:
            return True
        except duckdb.Error:
            return False
        return False

    def _reconnect(self) -> None:
        """Replace an invalidated connection with a new one to the file, which reads what was
        committed from the file and its log again: the end of the run can still be recorded
        (tester T1: an ingest stopped by a full disk at a checkpoint stayed `running`, as
        every later statement on the old connection failed). Raises StoreError when the file
        cannot be opened either."""
        storefile.disconnect(self._con, self.path)
        self._staging_ready = False
        self._con = storefile.connect(self.path, read_only=False, wait_seconds=0)

    # -- the writer ----------------------------------------------------------------------------

    def write_batch(
        self, run_id: str, batch: NormalisedBatch, *, refresh: bool = True
    ) -> WriteStats:
        """Store a normalised batch: observations, rejects, and the results they change.

        Call inside `transaction()` to make it atomic with other writes (e.g. poll state).
        A file record identical to one already stored for the same task is not stored again.
        Returns the counts; with `refresh=False` the caller refreshes results itself.
        """
        with self.transaction():
            return self._write_batch(run_id, batch, refresh=refresh)

    def _write_batch(self, run_id: str, batch: NormalisedBatch, *, refresh: bool) -> WriteStats:
        staged = self.stage_batch(run_id, batch)
        return staged + self.commit_staged(refresh=refresh)

    def _ensure_staging(self) -> None:
        # Staged records (a sequence, the run and the normaliser's output columns) live in a
        # temp table of this connection until `commit_staged`; it outlives transactions
        # unless one that created it rolls back.
        if self._staging_ready:
            return
        self.con.execute(
            "CREATE TEMP TABLE IF NOT EXISTS _staged AS SELECT 0::BIGINT AS seq,"
            " * EXCLUDE (obs_id), NULL::VARCHAR AS reject_reason, NULL::VARCHAR AS reject_field,"
            " NULL::VARCHAR AS reject_detail, NULL::BLOB AS reject_raw"
            " FROM observations WITH NO DATA"
        )
        self._staging_ready = True

    def stage_batch(self, run_id: str, batch: NormalisedBatch) -> WriteStats:
        """Write a batch's rejects and stage its records; `commit_staged` stores them.

        Call both inside one `transaction()`.
        """
        self._require_writer()
        con = self.con
        self._ensure_staging()
        accepted = batch.accepted
        start = self._staged_seq + 1
        self._staged_seq += accepted.height
        obs = accepted.with_columns(
            seq=pl.int_range(start, start + accepted.height, dtype=pl.Int64),
            run_id=pl.lit(run_id, pl.String),
        ).select(_STAGED_COLUMNS)
        con.register("_batch_obs", split_chunks(obs))
        try:
            cols = ", ".join(_STAGED_COLUMNS)
            con.execute(f"INSERT INTO _staged ({cols}) SELECT {cols} FROM _batch_obs")
        finally:
            con.unregister("_batch_obs")
        if batch.rejects.height:
            rej = batch.rejects.with_columns(run_id=pl.lit(run_id, pl.String))
            # only file rejects are kept once (a batch of small files: regular files only); a
            # poll's or a delivery's batch skips the look at the stored file rejects
            from_files = bool(rej["source"].eq(Source.FILE).any())
            con.register("_batch_rej", rej)
            try:
                con.execute(
                    "INSERT INTO rejects (run_id, source, observed_at, origin, origin_line,"
                    " reason, field, detail, raw) SELECT run_id, source, observed_at, origin,"
                    " origin_line, reason, field, detail, raw FROM _batch_rej b"
                    + (f" WHERE {_new_reject('reason', 'field', 'raw')}" if from_files else "")
                )
            finally:
                con.unregister("_batch_rej")
        return WriteStats(rejects=batch.rejects.height)

    def stage_raw(
        self,
        run_id: str,
        source: str,
        params: dict[str, Any] | None = None,
        *,
        rejects_once: bool = True,
    ) -> tuple[int, Counter[str]]:
        """Normalise the raw records of `source` inside the store and stage them.

        `source` is a query over RAW_SCHEMA columns (e.g. a registered Arrow stream of file
        lines), with its named `params`. The one normaliser runs as a query in this connection:
        in parallel, with no copy through Python. Rejects go to `rejects` now; accepted
        records wait for `commit_staged`. `origin_line` orders the records and must be unique
        within one commit. `rejects_once`: the records' origin names the same file in every
        run (not a pipe), so a reject already stored for its line is not stored again. Return
        (records read, rejects by reason).
        """
        self._require_writer()
        con = self.con
        self._ensure_staging()
        base = self._staged_seq
        cols = ", ".join(NORMALISED_COLUMNS)
        con.execute(
            f"INSERT INTO _staged (seq, run_id, {cols}) SELECT {base} + origin_line, $run_id,"
            f" {cols} FROM ({normalise_sql(source)})",
            {**(params or {}), "run_id": run_id},
        )
        # One pass over what was staged: records, the last sequence, rejects by reason.
        groups = con.execute(
            "SELECT reject_reason, count(*), max(seq) FROM _staged WHERE seq > ? GROUP BY ALL",
            [base],
        ).fetchall()
        records = sum(int(n) for _, n, _ in groups)
        self._staged_seq = max([base, *(int(last) for _, _, last in groups)])
        reasons = Counter({str(r): int(n) for r, n, _ in groups if r is not None})
        if reasons:
            con.execute(
                "INSERT INTO rejects (run_id, source, observed_at, origin, origin_line, reason,"
                " field, detail, raw) SELECT run_id, source, observed_at, origin, origin_line,"
                " reject_reason, reject_field, reject_detail, reject_raw FROM _staged b"
                " WHERE seq > ? AND reject_reason IS NOT NULL"
                + (
                    f" AND {_new_reject('reject_reason', 'reject_field', 'reject_raw')}"
                    if rejects_once
                    else ""
                ),
                [base],
            )
        return records, reasons

    def commit_staged(self, *, refresh: bool = True) -> WriteStats:
        """Store the staged records (file duplicates dropped) and refresh their results."""
        self._require_writer()
        con = self.con
        self._ensure_staging()
        try:
            stats = self._commit_staged(refresh=refresh)
        except BaseException:
            # The transaction is rolled back, the staged rows with it. Emptying the table may
            # fail too (an aborted transaction refuses every statement): the first error,
            # say a full disk, is the one the caller is told of.
            self._staged_seq = 0
            with contextlib.suppress(duckdb.Error):
                con.execute("DELETE FROM _staged")
            raise
        con.execute("DELETE FROM _staged")
        self._staged_seq = 0
        return stats

    def _commit_staged(self, *, refresh: bool) -> WriteStats:
        con = self.con
        staged, file_rows = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE source = '{Source.FILE}')"
            " FROM _staged WHERE reject_reason IS NULL"
        ).fetchall()[0]
        if not staged:
            return WriteStats()
        base = int(
            con.execute("SELECT coalesce(max(obs_id), 0) FROM observations").fetchall()[0][0]
        )
        bulk = staged > _SMALL_BATCH
        multi = 0
        if bulk or file_rows:
            # Tasks staged more than once: rare in bulk ingest, and the only ones that can
            # repeat a payload within the batch or need the full result rules because of it.
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _multi AS SELECT task_id FROM _staged"
                " WHERE reject_reason IS NULL GROUP BY task_id HAVING count(*) > 1"
            )
            multi = int(con.execute("SELECT count(*) FROM _multi").fetchall()[0][0])
        keep = "b.reject_reason IS NULL"
        if file_rows:
            # File records: the same facts about the same task are the same evidence, whether
            # already stored or repeated within the batch, however the export was formatted
            # (key order, spacing, an array or lines, flat or nested).
            same = " AND ".join(f"o.{c} IS NOT DISTINCT FROM b.{c}" for c in _FACT_COLUMNS)
            # (a store with no file records yet, as a first bulk ingest finds it, skips the
            # look: probing it with every staged record cost 0.8 s per 2M, flags compared)
            if con.execute(
                f"SELECT 1 FROM observations WHERE source = '{Source.FILE}' LIMIT 1"
            ).fetchall():
                keep += (
                    f" AND (b.source <> '{Source.FILE}' OR NOT EXISTS ("
                    "SELECT 1 FROM observations o"
                    f" WHERE o.source = '{Source.FILE}' AND o.task_id = b.task_id AND {same}))"
                )
            if multi:
                keep += (
                    f" AND (b.source <> '{Source.FILE}' OR b.seq IN (SELECT min(seq) FROM _staged"
                    f" WHERE reject_reason IS NULL AND source = '{Source.FILE}'"
                    f" GROUP BY task_id, {', '.join(_FACT_COLUMNS)}))"
                )
        cols = ", ".join(_OBS_COLUMNS)
        added = int(
            con.execute(
                f"INSERT INTO observations ({cols}) SELECT {base} + b.seq,"
                f" {', '.join('b.' + c for c in _OBS_COLUMNS[1:])} FROM _staged b WHERE {keep}"
            ).fetchall()[0][0]
        )
        stats = WriteStats(observations=added, duplicates=int(staged) - added)
        if refresh and added:
            if bulk:
                stats = stats + self._refresh_since(base)
            else:  # a few polls or deliveries: the full rules on their tasks cost less
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE _touched AS SELECT DISTINCT task_id"
                    " FROM _staged WHERE reject_reason IS NULL"
                )
                stats = stats + self.refresh_results()
        return stats

    def _refresh_since(self, base: int) -> WriteStats:
        """Refresh the results of the tasks observed with an obs_id above `base`.

        A task seen for the first time, once, takes its observation as its result directly
        (most tasks of a bulk ingest); the others go through the full rules of RESULTS_SQL.
        """
        con = self.con
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _touched AS SELECT task_id FROM _multi UNION"
            " SELECT task_id FROM results WHERE task_id IN"
            " (SELECT task_id FROM _staged WHERE reject_reason IS NULL)"
        )
        first = int(
            con.execute(
                f"INSERT INTO results SELECT {SINGLE_RESULT_COLUMNS} FROM observations o"
                f" WHERE o.obs_id > {base} AND o.status IS NOT NULL"
                " AND NOT EXISTS (SELECT 1 FROM _touched t WHERE t.task_id = o.task_id)"
            ).fetchall()[0][0]
        )
        return WriteStats(new_results=first) + self.refresh_results()

    def refresh_results(self) -> WriteStats:
        """Recompute `results` for the tasks in the temp table `_touched`; return the changes."""
        self._require_writer()
        con = self.con
        con.execute("CREATE TEMP TABLE IF NOT EXISTS _touched (task_id VARCHAR)")
        con.execute(f"CREATE OR REPLACE TEMP TABLE _fresh AS {RESULTS_SQL}")
        row = con.execute(
            """SELECT
                count(*) FILTER (WHERE r.task_id IS NULL),
                count(*) FILTER (WHERE r.task_id IS NOT NULL AND (
                    f.status IS DISTINCT FROM r.status
                    OR f.observation_count IS DISTINCT FROM r.observation_count)),
                coalesce(sum(f.conflict_count - coalesce(r.conflict_count, 0)), 0)
            FROM _fresh f LEFT JOIN results r USING (task_id)"""
        ).fetchall()[0]
        con.execute("DELETE FROM results WHERE task_id IN (SELECT task_id FROM _fresh)")
        con.execute("INSERT INTO results SELECT * FROM _fresh")
        con.execute("DROP TABLE _fresh")
        con.execute("DROP TABLE _touched")
        assert row is not None
        return WriteStats(
            new_results=int(row[0]), updated_results=int(row[1]), new_conflicts=int(row[2])
        )

    def record_ingested_file(
        self, *, content_hash: str, path: str, size_bytes: int, records: int, run_id: str
    ) -> None:
        """Remember a fully ingested file so that ingesting it again changes nothing."""
        self.record_ingested_files([(content_hash, path, size_bytes, records)], run_id=run_id)

    def record_ingested_files(
        self, files: Sequence[tuple[str, str, int, int]], *, run_id: str
    ) -> None:
        """Remember fully ingested files: (content hash, path, size in bytes, records) each."""
        self._require_writer()
        frame = pl.DataFrame(
            files,
            schema={"h": pl.String, "p": pl.String, "b": pl.Int64, "n": pl.Int64},
            orient="row",
        )
        self.con.register("_ingested", frame)
        try:
            self.con.execute(
                "INSERT OR REPLACE INTO ingested_files SELECT h, p, b, n, ?, ? FROM _ingested",
                [run_id, datetime.now(UTC)],
            )
        finally:
            self.con.unregister("_ingested")

    def write_staged_submissions(self, source: str) -> tuple[int, int]:
        """Store the submissions in `source`, a table or view of this connection (one row per
        task: the SUBMISSIONS_SCHEMA columns, `origin` and `origin_line`), which may be larger
        than memory; return the (new, changed) counts.

        A task whose values (type, threshold, options, created_at, data_url) are the ones already
        stored is left as it is, its origin and `tracked_at` too: storing the same records again
        changes nothing and counts nothing.
        """
        self._require_writer()
        if not source.isidentifier():
            raise ValueError(f"write_staged_submissions: not a table name: {source!r}")
        con = self.con
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _subs_changed AS"
            " SELECT n.task_id, s.task_id IS NULL AS is_new"
            f" FROM {source} n LEFT JOIN submissions s ON s.task_id = n.task_id"
            " WHERE s.task_id IS NULL"
            " OR n.task_type IS DISTINCT FROM s.task_type"
            " OR n.consensus_threshold IS DISTINCT FROM s.consensus_threshold"
            " OR n.options IS DISTINCT FROM s.options"
            " OR n.created_at IS DISTINCT FROM s.created_at"
            " OR n.data_url IS DISTINCT FROM s.data_url"
        )
        try:
            row = con.execute(
                "SELECT count(*) FILTER (WHERE is_new), count(*) FILTER (WHERE NOT is_new)"
                " FROM _subs_changed"
            ).fetchone()
            con.execute(
                "DELETE FROM submissions WHERE task_id IN"
                " (SELECT task_id FROM _subs_changed WHERE NOT is_new)"
            )
            con.execute(
                "INSERT INTO submissions (task_id, task_type, consensus_threshold, options,"
                " created_at, data_url, origin, origin_line, tracked_at)"
                " SELECT task_id, task_type, consensus_threshold, options, created_at, data_url,"
                f" origin, origin_line, ? FROM {source}"
                " WHERE task_id IN (SELECT task_id FROM _subs_changed)",
                [datetime.now(UTC)],
            )
        finally:
            # after a failed statement the transaction refuses every other one: the error that
            # failed it is the one to report (a rollback drops the table anyway)
            with contextlib.suppress(duckdb.Error):
                con.execute("DROP TABLE IF EXISTS _subs_changed")
        assert row is not None
        return int(row[0]), int(row[1])

    def write_findings(self, run_id: str, findings: pl.DataFrame) -> None:
        """Store the findings of a run (FINDINGS_SCHEMA columns, and `difference_exact`).

        `difference_exact` (`run_checks` gives it) is the difference as an exact integer when
        it is a whole number, stored as DECIMAL(38, 0) so that every digit is kept; `difference`
        is the same figure as a float. Without the column (a frame built by hand) it is null.
        A whole difference too large for 38 digits is stored as null there (the float stays).
        """
        self._require_writer()
        exact = (
            pl.col(EXACT_DIFFERENCE).cast(pl.Decimal(38, 0), strict=False)
            if EXACT_DIFFERENCE in findings.columns
            else pl.lit(None, dtype=pl.Decimal(38, 0))
        )
        floats = [pl.col(n).cast(d) for n, d in FINDINGS_SCHEMA.items() if n != EXACT_DIFFERENCE]
        frame = findings.select(*floats, exact.alias(EXACT_DIFFERENCE)).with_columns(
            run_id=pl.lit(run_id, pl.String)
        )
        self.con.register("_findings", frame)
        try:
            cols = ", ".join(["run_id", *frame.columns[:-1]])
            self.con.execute(f"INSERT INTO findings ({cols}) SELECT {cols} FROM _findings")
        finally:
            self.con.unregister("_findings")

    def read_findings(self, run_id: str | None = None) -> pl.DataFrame:
        """Return the stored findings (of one run, or all), `run_id` first, then the columns
        `run_checks` gives: `difference_exact` an exact DECIMAL(38, 0) (null for a fractional
        difference, and for rows stored before the store kept exact differences)."""
        if run_id is None:
            frame = self.frame("findings")
        else:
            frame = self.frame("findings", where="run_id = ?", params=[run_id])
        schema = {"run_id": pl.String(), **FINDINGS_SCHEMA}
        return frame.select(pl.col(n).cast(d) for n, d in schema.items())


# DuckDB's share of memory during a bulk write (`ingest`, `track`): beyond it the store spills
# to disk, so a file of any size is written in bounded memory.
BULK_MEMORY_LIMIT = "768MB"


@contextlib.contextmanager
def open_store(
    path: str | Path,
    *,
    read_only: bool = False,
    wait_seconds: float = 0.0,
    memory_limit: str | None = None,
    stopped: Callable[[], bool] | None = None,
) -> Iterator[Store]:
    """Open the store at `path` (creating and migrating it for a writer) and close it after.

    A reader of a file at an older schema version gets it upgraded first when no one else
    writes. `memory_limit` (e.g. "1GB") caps DuckDB's memory for this process; it spills to
    disk beyond it. `StoreBusyError` when another process writes and `wait_seconds` runs out;
    `SchemaVersionError` for a file from a newer asg_audit. `stopped()` true ends that wait
    early (the same error): a stop handled on another thread, which cannot interrupt it.
    """
    _check_open_arguments(path, wait_seconds, memory_limit)
    if not isinstance(read_only, bool):  # DuckDB's own message named no argument (tester T3)
        raise TypeError(f"open_store read_only: expected a bool, got {type(read_only).__name__}")
    path = Path(path)
    if (name := path_text(path)) != str(path):
        raise StoreFileError(
            f"{name}: the database file name is not valid UTF-8, and DuckDB opens only UTF-8"
            " names; rename it (or give --db another name)"
        )
    if (kind := special_file_kind(path)) is not None:  # DuckDB would wait on a FIFO forever
        raise StoreFileError(f"{path}: {kind}, not a database file")
    if path.is_dir():
        raise StoreFileError(f"{path}: a folder, not a database file")
    if (problem_above := storefile.not_a_folder_above(path)) is not None:
        # a store under a file: for a writer, as a missing folder (exit 3); for a reader, as a
        # missing store (exit 2)
        refusal = StoreFileError if read_only else StoreError
        raise refusal(f"{path}: cannot be the store: {problem_above}")
    # A writer that may create the file holds this process's creation lock of it until it is
    # connected: a thread finding the file another thread's DuckDB has just made (0 bytes for
    # a moment) took it for an empty file and deleted it under that connection (tester T3).
    creating = None if read_only else storefile.file_lock(_CREATING, path, threading.Lock)
    if creating is not None:
        creating.acquire()
    try:
        empty = path.is_file() and path.stat().st_size == 0
        if read_only:
            if not path.exists() or empty:
                raise StoreFileError(storefile.no_database_yet(path))
        elif empty:
            # A new empty file (`--db "$(mktemp)"`) becomes a store: DuckDB refuses a 0-byte file
            # as "not a valid DuckDB database file", so it is made anew.
            path.unlink()
        elif path.parent and not path.parent.exists():
            raise StoreError(f"{path}: folder {path.parent} does not exist")
        if not read_only:
            storefile.refuse_planted_files(path)
        if creating is not None and path.is_file() and path.stat().st_size > 0:
            creating.release()  # a store there already: nothing is created
            creating = None
        con = storefile.connect(
            path, read_only=read_only, wait_seconds=wait_seconds, stopped=stopped
        )
    finally:
        if creating is not None:
            creating.release()
    # Until the store is handed over, anything raised (a Ctrl-C included) closes the
    # connection: a traceback kept by IPython (`sys.last_traceback`) must not hold the file
    # open, which would lock every other process out of it. A plain `try`, not a helper
    # context manager: entering one is a call where a Ctrl-C could land before its `try`.
    try:
        try:
            if read_only:
                con = storefile.upgraded_reader(con, path, wait_seconds)
                storefile.check_intact(con, path)
                storefile.warn_rules(con, path)
            else:
                # Threads of this process share the file: one creates or upgrades the store,
                # the others then find it done (tester T3: four threads ingesting into a new
                # store met DuckDB's catalog conflicts, and one was told the store was damaged)
                # (the lock only then: a writer opening a current store does not wait here for
                # another thread's transaction)
                if storefile.schema_version(con) != SCHEMA_VERSION:
                    with storefile.write_lock(path):
                        storefile.migrate(con, path)
                storefile.check_intact(con, path)
                if memory_limit is not None:
                    # DuckDB spills to disk beyond this (bulk ingest keeps the process small);
                    # set before a re-judge of the whole store, which is bulk work too
                    con.execute("SET memory_limit = ?", [memory_limit])
                # Before anything else is written: a store judged by newer rules is refused,
                # one judged by older rules is judged again (asg_audit.rejudge).
                if check_writable_rules(con, path) < RULES_VERSION:
                    # Threads of this process share the file: one judges, the others see it.
                    with storefile.write_lock(path):
                        if (rules := stored_rules_version(con)) < RULES_VERSION:
                            rejudge(con, path, rules)
        except duckdb.Error as exc:
            # A file damaged in a way its size does not show, a disk that fails: one line
            # (other DuckDB errors are bugs, and keep their traceback).
            error = storefile.store_io_error(path, exc)
            if isinstance(exc, duckdb.IOException) or isinstance(error, StoreFileError):
                raise error from None
            raise
        if memory_limit is not None and read_only:
            con.execute("SET memory_limit = ?", [memory_limit])
        store = Store(con, path, read_only=read_only)
    except BaseException:
        storefile.disconnect(con, path)  # a no-op on a connection already closed
        raise
    try:
        yield store
    except duckdb.Error as exc:
        if (damaged := storefile.damaged_in_use(path, exc)) is not None:
            raise damaged from exc
        raise
    finally:
        store.close()


def _check_open_arguments(path: object, wait_seconds: object, memory_limit: object) -> None:
    """Raise TypeError or ConfigError naming a bad argument of `open_store` (a library
    caller's slip), before anything is opened: DuckDB's parser error for a memory limit it
    cannot read named neither the argument nor its form."""
    if not isinstance(path, str | os.PathLike):
        given = type(path).__name__
        raise TypeError(f"open_store path: expected a path (str or Path), got {given}")
    check_wait_seconds(wait_seconds, "open_store wait_seconds")
    if memory_limit is None:
        return
    if not isinstance(memory_limit, str):
        raise TypeError(
            "open_store memory_limit: expected a size such as '1GB' or '512MB', got"
            f" {type(memory_limit).__name__}"
        )
    if not _readable_memory_limit(memory_limit):
        raise ConfigError("open_store memory_limit: expected a size such as '1GB' or '512MB'")


@functools.lru_cache(maxsize=64)
def _readable_memory_limit(size: str) -> bool:
    """Return whether DuckDB reads `size` as a memory limit: its own reading, on a database of
    nothing (about 15 ms, so once per value: ingest and track pass the same one every time)."""
    probe = duckdb.connect()
    try:
        probe.execute("SET memory_limit = ?", [size])
    except duckdb.Error:
        return False
    finally:
        probe.close()
    return True
