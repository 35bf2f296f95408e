"""File ingest: exported results, webhook delivery logs and submission exports.

A large file is streamed in its own transaction: NDJSON in chunks (never loaded whole), JSON
arrays and pretty-printed documents element by element by DuckDB. Small files are read whole
and stored in groups, one transaction a group (`_SmallFiles`). Either way each file is all or
nothing: a file that cannot be read leaves the store as it was, and the others go on. Records
go through the one normaliser and the one store writer; reading files is `asg_audit.filelines`,
staging a large file's records in the store is `asg_audit.ingest_staging`, what the user is
told (outcomes, summary, progress bar) is `asg_audit.ingest_summary`.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import stat
import sys
import tempfile
import threading
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

import duckdb
import numpy as np
import polars as pl

from asg_audit import engine
from asg_audit.config import check_wait_seconds
from asg_audit.errors import ConfigError, InputError, StoreError
from asg_audit.filelines import (
    BOM,
    PROCESS_RELATIVE,
    STDIN,
    STDIN_ORIGIN,
    Expected,
    always_lines,
    describe_read_error,
    duckdb_path,
    expand_paths,
    file_content_hash,
    file_id,
    file_layout,
    line_batch,
    open_binary,
    sniff_layout,
    store_file_ids,
)
from asg_audit.ingest_staging import (
    DOCUMENT_READERS,
    first_line,
    stage_documents,
    stage_lines,
    stage_stream,
    unreadable_documents,
)
from asg_audit.ingest_summary import (
    FileOutcome,
    IngestSummary,
    ProgressBar,
    ProgressFn,
    print_ingest_summary,
)
from asg_audit.interrupts import is_interrupt, sigint_interrupts
from asg_audit.model import Source, new_run_id, path_text
from asg_audit.normalize import NormalisedBatch, normalise_batch
from asg_audit.progress import is_terminal
from asg_audit.redaction import error_text
from asg_audit.stopsignals import StopHold, held_stops
from asg_audit.store import BULK_MEMORY_LIMIT, Store, WriteStats, open_store

__all__ = [  # track_file & co. live in asg_audit.track; re-exported here for callers
    "DEFAULT_CHUNK_BYTES",
    "IngestSummary",
    "TrackSummary",
    "expand_paths",
    "ingest",
    "ingest_paths",
    "print_ingest_summary",
    "print_track_summary",
    "track_file",
]

DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024
# DuckDB's share of memory during a bulk ingest: beyond it the store spills to disk, so a file
# of any size is ingested in bounded memory.
DEFAULT_INGEST_MEMORY_LIMIT = BULK_MEMORY_LIMIT
# Files up to this size are read whole and committed in groups of up to _GROUP_BYTES
# (decompressed) or _GROUP_FILES files: one normalising query and one commit for many files,
# each file still all or nothing. Planning those queries costs about 50 ms a commit, which
# made a folder of one-result files take minutes. A group of 4 MiB commits in a fraction of a
# second, so an interrupted or killed ingest loses little, and holds little memory.
SMALL_FILE_BYTES = 1 << 20
_GROUP_BYTES = 4 << 20
_GROUP_FILES = 1_000


def _ingest_file(
    store: Store,
    run_id: str,
    path: Path,
    summary: IngestSummary,
    *,
    chunk_bytes: int,
    on_bytes: ProgressFn | None,
    hold: StopHold,
    expected: Expected | None = None,
) -> FileOutcome:
    # expected: a file found by a folder scan or a glob; each open of it checks it is unchanged
    # hold: begun as the file's transaction commits; the caller's block ends once the file is
    # counted (a stop then waits for it)
    origin = STDIN_ORIGIN if path == STDIN else path_text(path)
    # standard input, `/dev/stdin` or `<(...)` is another stream in every run, even when it is
    # a regular file: its rejects are not "already stored" (store.stage_raw's rejects_once)
    readable_again = path != STDIN and not PROCESS_RELATIVE.match(origin)
    observed_at = datetime.now(UTC)
    try:
        info = None if path == STDIN else path.stat()
        streamed = info is not None and not stat.S_ISREG(info.st_mode)
        size = info.st_size if info is not None and not streamed else 0
        if (
            size
            and store.ingested_from(origin, size)
            and store.file_ingested(file_content_hash(path, expected))
        ):
            # The file a drop folder offers every run: the same path and size as one already
            # ingested, and its content hash says it is that file. Hashing it costs a fifth of
            # reading and staging it (a 152 MB export: 0.18 s, not 1.47 s), so an `audit` run does
            # only new work however much its drop folders hold.
            return FileOutcome(path=origin, status="already ingested")
        with store.transaction():
            if streamed:
                # A pipe (`<(...)`) or a device: opened once, never again.
                records, rejected, content_hash = stage_stream(
                    store,
                    run_id,
                    path,
                    origin=origin,
                    observed_at=observed_at,
                    chunk_bytes=chunk_bytes,
                    on_bytes=on_bytes,
                    expected=expected,
                )
            elif (layout := file_layout(path, expected)) != "lines":
                records, rejected, content_hash = stage_documents(
                    store,
                    run_id,
                    path,
                    layout,
                    origin=origin,
                    observed_at=observed_at,
                    on_bytes=on_bytes,
                    expected=expected,
                    readable_again=readable_again,
                )
            else:
                records, rejected, content_hash = stage_lines(
                    store,
                    run_id,
                    path,
                    origin=origin,
                    observed_at=observed_at,
                    chunk_bytes=chunk_bytes,
                    on_bytes=on_bytes,
                    expected=expected,
                    readable_again=readable_again,
                )
            if store.file_ingested(content_hash):
                raise _AlreadyIngested
            totals = WriteStats(rejects=rejected.total()) + store.commit_staged()
            store.record_ingested_file(
                content_hash=content_hash,
                path=origin,
                size_bytes=size,
                records=records,
                run_id=run_id,
            )
            hold.begin()  # from the commit until the file is counted, a stop waits
    except _AlreadyIngested:
        return FileOutcome(path=origin, status="already ingested")
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        reason = describe_read_error(exc)
        return FileOutcome(path=origin, status="failed", error=f"{origin}: {reason}")
    except InputError as exc:
        return FileOutcome(path=origin, status="failed", error=str(exc))
    except duckdb.OutOfMemoryException as exc:  # rolled back; the connection goes on
        error = f"{origin}: out of memory while storing it ({first_line(exc)}); nothing stored"
        return FileOutcome(path=origin, status="failed", error=error)
    summary.add(records, rejected, totals)
    return _stored(origin, records, rejected)


def _stored(origin: str, records: int, rejected: Counter[str]) -> FileOutcome:
    """Return the outcome of a file stored with `records` records, `rejected` by reason."""
    return FileOutcome(
        path=origin,
        status="ingested",
        records=records,
        accepted=records - rejected.total(),
        rejected=rejected.total(),
    )


@dataclass(slots=True)
class _SmallFile:
    slot: int  # its place in summary.files
    path: Path
    origin: str  # its name as stored and shown (`path_text`)
    size: int
    observed_at: datetime
    content_hash: str
    data: bytes  # NDJSON: its whole content, decompressed, ending with a newline unless empty
    documents: pl.DataFrame | None = None  # arrays and documents: `raw`, `origin_line`


class _SmallFiles:
    """Small files read whole, waiting to be committed together.

    A file that cannot be read is reported at once and leaves nothing behind; the files read
    are normalised together and stored in one transaction, so each is all or nothing, and
    files are stored in the order they were given.
    """

    def __init__(self, store: Store, summary: IngestSummary) -> None:
        self._store = store
        self._summary = summary
        self._files: list[_SmallFile] = []
        self._hashes: set[str] = set()
        self._bytes = 0
        self._reader: duckdb.DuckDBPyConnection | None = None  # splits arrays and documents
        self._scratch: Path | None = None  # the one file DuckDB's reader reads them from
        self._scratch_fh: IO[bytes] | None = None  # held open: rewritten in place for each file

    def close(self) -> None:
        try:
            if self._reader is not None:
                self._reader.close()
        finally:
            self._drop_scratch()

    def _drop_scratch(self) -> None:
        if self._scratch_fh is not None:
            with contextlib.suppress(OSError):
                self._scratch_fh.close()
        if self._scratch is not None:
            shutil.rmtree(self._scratch.parent, ignore_errors=True)
        self._scratch, self._scratch_fh = None, None

    def _documents(
        self, data: bytes, layout: str, path: Path, expected: Expected | None
    ) -> pl.DataFrame:
        """Split the content of a small array or documents file, already read whole (and, for
        a file found by a scan, from the file found), with DuckDB's JSON reader.

        The bytes are written to one scratch file of this group, rewritten for each file:
        cheaper than a temporary link per file to the file itself. When the scratch file
        cannot be written (no room in the temporary folder), DuckDB reads the file instead,
        as a large one is read (`duckdb_path`: a file found by a scan is checked unchanged).
        """
        if self._reader is None:
            self._reader = engine.connect()
            self._reader.execute("SET memory_limit = '256MB'")
        try:
            name = self._write_scratch(data)
        except OSError:
            self._drop_scratch()
            with duckdb_path(path, expected) as name:
                return self._split(name, layout)
        return self._split(name, layout)

    def _write_scratch(self, data: bytes) -> str:
        if self._scratch is None or self._scratch_fh is None:
            folder = Path(tempfile.mkdtemp(prefix="asg-audit-"))
            try:
                self._scratch_fh = (folder / "small.json").open("w+b")
            except OSError:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            self._scratch = folder / "small.json"
        fh = self._scratch_fh
        fh.seek(0)
        fh.write(data)
        fh.truncate()
        fh.flush()
        return str(self._scratch)

    def _split(self, name: str, layout: str) -> pl.DataFrame:
        assert self._reader is not None
        frame: pl.DataFrame = self._reader.sql(
            f"SELECT json::VARCHAR AS raw, ordinality AS origin_line"
            f" FROM {DOCUMENT_READERS[layout]}",
            params={"path": name},
        ).pl()
        return frame

    def _named(self, exc: duckdb.Error, origin: str) -> duckdb.Error:
        """Return DuckDB's error with the scratch file's name replaced by the file's own."""
        if self._scratch is None or str(self._scratch) not in str(exc):
            return exc
        return type(exc)(str(exc).replace(str(self._scratch), origin))

    def add(self, path: Path, expected: Expected | None = None) -> bool:
        """Take the file if it is small (and report it if it cannot be read).

        Whatever goes wrong while reading one file (even an error nothing foresaw) fails that
        file alone: the files of the group are still stored, and the command goes on.
        `expected`: a file found by a folder scan or a glob, checked as each open of it is.
        """
        if path == STDIN:  # of unknown size: streamed
            return False
        origin = path_text(path)
        if PROCESS_RELATIVE.match(origin):
            return False  # `/dev/stdin` < a file: read on its own, its rejects kept every run
        try:
            taken = self._add(path, origin, expected)
        except InputError as exc:  # e.g. changed since the folder was read
            self._summary.files.append(FileOutcome(path=origin, status="failed", error=str(exc)))
            return True
        except Exception as exc:
            if is_interrupt(exc):
                raise
            error = (
                f"{origin}: cannot be read: unexpected {type(exc).__name__}: {first_line(exc)};"
                " nothing stored"
            )
            self._summary.files.append(FileOutcome(path=origin, status="failed", error=error))
            return True
        if self._bytes >= _GROUP_BYTES or len(self._files) >= _GROUP_FILES:
            self.commit()  # the group's errors are not one file's
        return taken

    def _add(self, path: Path, origin: str, expected: Expected | None) -> bool:
        observed_at = datetime.now(UTC)
        try:
            info = path.stat()
            size = info.st_size
            if size > SMALL_FILE_BYTES or not stat.S_ISREG(info.st_mode):
                return False  # a pipe or a device (named on its own) is read once, as a stream
            with open_binary(path, expected) as fh:
                data = fh.read(_GROUP_BYTES + 1)
        except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            error = f"{origin}: {describe_read_error(exc)}"
            self._summary.files.append(FileOutcome(path=origin, status="failed", error=error))
            return True
        if len(data) > _GROUP_BYTES:  # a small gzip file of much data: streamed instead
            return False
        content_hash = hashlib.sha256(data).hexdigest()
        if content_hash in self._hashes:  # the same content earlier in this group
            self._summary.files.append(FileOutcome(path=origin, status="already ingested"))
            return True
        layout = "lines" if always_lines(path) else sniff_layout(data[:4096])
        size_read = len(data)  # decompressed: what the group holds in memory
        documents = None
        if layout != "lines":
            try:
                documents = self._documents(data, layout, path, expected)
            except duckdb.Error as read_error:
                named = self._named(read_error, origin)
                error = unreadable_documents(path, origin, layout, named, expected)
                self._summary.files.append(FileOutcome(path=origin, status="failed", error=error))
                return True
            data = b""
        else:
            data = data.removeprefix(BOM)
            if data and not data.endswith(b"\n"):
                data += b"\n"
        self._summary.files.append(FileOutcome(path=origin, status="already ingested"))
        slot = len(self._summary.files) - 1
        self._files.append(
            _SmallFile(slot, path, origin, size, observed_at, content_hash, data, documents)
        )
        self._hashes.add(content_hash)
        self._bytes += size_read
        return True

    def commit(self) -> None:
        """Store the files taken so far (but those already ingested), in one transaction."""
        if not self._files:
            return
        files, self._files, self._hashes, self._bytes = self._files, [], set(), 0
        store, summary = self._store, self._summary
        known = store.ingested_hashes([f.content_hash for f in files])
        files = [f for f in files if f.content_hash not in known]  # their outcome stands
        if not files:
            return
        batch = normalise_batch(_group_lines(files))
        accepted = Counter(batch.accepted.get_column("origin").to_list())
        rejected = Counter(batch.rejects.get_column("origin").to_list())
        # from the commit until the files are counted, a stop waits (`held_stops`)
        with held_stops() as hold:
            with store.transaction():
                store.stage_batch(summary.run_id, batch)
                totals = store.commit_staged()
                store.record_ingested_files(
                    [
                        (
                            f.content_hash,
                            f.origin,
                            f.size,
                            accepted[f.origin] + rejected[f.origin],
                        )
                        for f in files
                    ],
                    run_id=summary.run_id,
                )
                hold.begin()
            self._count(files, batch, accepted, rejected, totals)

    def _count(
        self,
        files: list[_SmallFile],
        batch: NormalisedBatch,
        accepted: Counter[str],
        rejected: Counter[str],
        totals: WriteStats,
    ) -> None:
        """Count the files of a group just stored in the summary."""
        summary = self._summary
        for f in files:
            origin = f.origin
            summary.files[f.slot] = FileOutcome(
                path=origin,
                status="ingested",
                records=accepted[origin] + rejected[origin],
                accepted=accepted[origin],
                rejected=rejected[origin],
            )
        summary.add(
            batch.accepted.height + batch.rejects.height,
            Counter(batch.rejects.get_column("reason").to_list()),
            totals,
        )


def _group_lines(files: list[_SmallFile]) -> pl.DataFrame:
    """Return the records of the files as RAW_SCHEMA columns, in file and line order.

    The NDJSON files are split in one pass over their joined content; arrays and documents
    were split when they were read.
    """
    parts = []
    texts = [i for i, f in enumerate(files) if f.documents is None]
    if texts:
        counts = np.array([files[i].data.count(b"\n") for i in texts], np.int64)
        ends = np.cumsum(counts)  # text k holds the lines ends[k-1]+1 .. ends[k] of the join
        joined = b"".join(files[i].data for i in texts)
        lines = cast(pl.DataFrame, pl.from_arrow(line_batch(joined, 0)[0]))
        line = lines.get_column("origin_line").to_numpy()
        which = np.searchsorted(ends, line, side="left")
        parts.append(
            lines.with_columns(
                raw=pl.col("raw").cast(pl.String),
                origin_line=pl.Series(line - (ends - counts)[which]),
                file=pl.Series(np.array(texts, np.int64)[which]),
            )
        )
    parts.extend(
        f.documents.with_columns(file=pl.lit(i, pl.Int64))
        for i, f in enumerate(files)
        if f.documents is not None
    )
    frame = pl.concat(parts, how="diagonal_relaxed").sort("file", "origin_line")
    which_file = frame.get_column("file")
    return frame.drop("file").with_columns(
        source=pl.lit(str(Source.FILE)),
        observed_at=pl.Series([f.observed_at for f in files]).gather(which_file),
        origin=pl.Series([f.origin for f in files], dtype=pl.String).gather(which_file),
    )


class _AlreadyIngested(Exception):
    """Internal: the file's content was ingested before; roll back and report it."""


PathArg = str | bytes | os.PathLike[str] | os.PathLike[bytes]


def ingest_paths(
    db: str | Path,
    paths: PathArg | Iterable[PathArg],
    *,
    progress: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    wait_seconds: float = 0.0,
) -> IngestSummary:
    """Ingest files, folders and globs into the store at `db`; return the summary.

    `paths` is one path (str, bytes or os.PathLike) or an iterable of them. A file that cannot
    be read is reported in `summary.failed_files` and leaves the store as it was; the other
    files are still ingested. Raises TypeError naming `db` or `paths` for anything else (or
    `chunk_bytes` unless an int), and ConfigError naming `wait_seconds` unless it is a finite
    number of seconds, 0 or more, or `chunk_bytes` under 1 (before anything is read or the
    store opened).
    """
    _check_db(db, "ingest_paths")
    names = _path_list(paths, "ingest_paths")
    check_wait_seconds(wait_seconds, "ingest_paths wait_seconds")
    _check_chunk_bytes(chunk_bytes)
    summary = IngestSummary()

    def unlisted(folder: Path, exc: OSError) -> None:
        name = path_text(folder)
        error = f"{name}: cannot list the folder: {describe_read_error(exc)}"
        summary.files.append(FileOutcome(path=name, status="failed", error=error))

    def special(path: Path, what: str) -> None:
        name = path_text(path)
        error = f"{name}: {what}, not a file: not read"
        summary.files.append(FileOutcome(path=name, status="failed", error=error))

    def outside(path: Path, why: str) -> None:
        name = path_text(path)
        summary.files.append(FileOutcome(path=name, status="failed", error=f"{name}: {why}"))

    # What each file found by a folder scan or a glob was when found: it is read only if it is
    # still that file (a swap for a link while earlier files are read is refused).
    pins: dict[Path, Expected] = {}
    files = expand_paths(
        names, on_error=unlisted, on_special=special, on_outside=outside, pins=pins
    )
    store_files = store_file_ids(Path(db))
    # by name too: the .wal may not exist yet (this run's own writes make it)
    store_names = {os.path.realpath(db), os.path.realpath(db) + ".wal"}
    for path in [
        p for p in files if file_id(p) in store_files or os.path.realpath(p) in store_names
    ]:
        # Reading it would be garbage, and closing it would drop the store's lock (POSIX locks
        # belong to the process and the file: any handle closed on it releases them).
        files.remove(path)
        error = f"{path_text(path)}: the store itself (--db), not an export: not read"
        summary.files.append(FileOutcome(path=path_text(path), status="failed", error=error))
    with open_store(
        db, wait_seconds=wait_seconds, memory_limit=DEFAULT_INGEST_MEMORY_LIMIT
    ) as store:
        # Records are ordered by their staged sequence, not by insertion: let DuckDB write in
        # parallel without keeping the order of the rows it inserts.
        store.con.execute("SET preserve_insertion_order = false")
        # The run's id is known before it is recorded, and everything from its start on is
        # inside the `try`: an interruption that lands as the run starts still ends it (a run
        # never recorded is ended as a no-op), never leaving it `running`.
        summary.run_id = new_run_id()
        bar: ProgressBar | None = None
        group: _SmallFiles | None = None
        interrupted: threading.Event | None = None
        try:
            store.start_run("ingest", run_id=summary.run_id)
            bar = ProgressBar(files) if progress and is_terminal(sys.stderr) else None
            group = _SmallFiles(store, summary)
            with sigint_interrupts(store.con) as interrupted:
                _ingest_all(
                    store, files, pins, summary, group, bar, interrupted, chunk_bytes=chunk_bytes
                )
            summary.without_status = _without_status(store, summary.run_id)
            status = "failed" if summary.failed_files else "ok"
            store.finish_run(summary.run_id, status=status, stats=summary.run_stats())
        except BaseException as exc:
            if not ((interrupted is not None and interrupted.is_set()) or is_interrupt(exc)):
                # Not left `running`: the run ended, on an error the caller is told of and
                # `asg-audit runs` shows (a full disk: the first error, as collect records it).
                _end_run(store, summary, "failed", error=exc)
                raise
            # What was committed stays (the transaction of the file being read was rolled
            # back, whatever form the interruption took); the run says it stopped early, and a
            # run again skips the files already stored.
            _end_run(store, summary, "interrupted")
            raise KeyboardInterrupt from None
        finally:
            if group is not None:
                group.close()
            if bar is not None:
                bar.stop()
    return summary


def _without_status(store: Store, run_id: str) -> int:
    """Count the records this run stored that have no status (no result is made of them)."""
    row = store.con.execute(
        "SELECT count(*) FROM observations WHERE run_id = ? AND status IS NULL", [run_id]
    ).fetchone()
    return int(row[0]) if row else 0


def _end_run(
    store: Store, summary: IngestSummary, status: str, *, error: BaseException | None = None
) -> None:
    """Record the end of an ingest that did not finish, never leaving it `running`: with its
    counters and the error that ended it, or without them when they cannot be stored (the
    error that ended it stands)."""
    stats = summary.run_stats()
    if error is not None:
        stats["error"] = error_text(error)
    try:
        store.finish_run(summary.run_id, status=status, stats=stats)
    except (duckdb.Error, StoreError):
        with contextlib.suppress(duckdb.Error, StoreError):
            store.finish_run(summary.run_id, status=status)


def _ingest_all(
    store: Store,
    files: list[Path],
    pins: dict[Path, Expected],
    summary: IngestSummary,
    group: _SmallFiles,
    bar: ProgressBar | None,
    interrupted: threading.Event,
    *,
    chunk_bytes: int,
) -> None:
    """Ingest `files` in order: small ones in groups, the others one transaction each."""
    for path in files:
        if interrupted.is_set():  # an interruption a reader took for a bad file
            raise KeyboardInterrupt
        if bar is not None:
            bar.start_file(path)
        expected = pins.get(path)
        if group.add(path, expected):
            if bar is not None:
                bar.end_file()
            continue
        group.commit()  # commits keep the order of the files
        with held_stops() as hold:
            outcome = _ingest_file(
                store,
                summary.run_id,
                path,
                summary,
                chunk_bytes=chunk_bytes,
                on_bytes=bar.advance if bar is not None else None,
                hold=hold,
                expected=expected,
            )
            summary.files.append(outcome)
        if bar is not None:
            bar.end_file()
    group.commit()


def ingest(db: str | Path, *paths: PathArg | Iterable[PathArg], **kwargs: Any) -> IngestSummary:
    """Ingest files into the store at `db` (library form of `asg-audit ingest`); return the
    summary.

    Each of `paths` is a path (str, bytes or os.PathLike; a folder or a glob as on the command
    line) or an iterable of them: `ingest(db, "a.ndjson", "b.ndjson")` and
    `ingest(db, ["a.ndjson", "b.ndjson"])` are the same. A `wait_seconds` that is not a
    finite number of seconds, 0 or more, is a ConfigError naming it.
    """
    _check_db(db, "ingest")
    flat: list[str] = []
    for item in paths:
        flat += _path_list(item, "ingest")
    if "wait_seconds" in kwargs:
        check_wait_seconds(kwargs["wait_seconds"], "ingest wait_seconds")
    return ingest_paths(db, flat, **kwargs)


def _check_chunk_bytes(chunk_bytes: object) -> None:
    """Raise TypeError unless `chunk_bytes` is an int, ConfigError unless it is 1 or more (0
    read nothing of a large file and called it ingested, tester T10)."""
    if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int):
        raise TypeError(
            f"ingest_paths chunk_bytes: expected a number of bytes (an int), got"
            f" {type(chunk_bytes).__name__}"
        )
    if chunk_bytes < 1:
        raise ConfigError(f"ingest_paths chunk_bytes: expected 1 or more bytes, got {chunk_bytes}")


def _check_db(db: object, caller: str) -> None:
    """Raise TypeError unless `db` is a path (a library caller's slip)."""
    if not isinstance(db, str | os.PathLike):
        raise TypeError(
            f"{caller} db: expected a path (str or Path) to the store, got {type(db).__name__}"
        )


def _path_list(paths: object, caller: str) -> list[str]:
    """Return `paths` (one path or an iterable of them) as a list of str paths.

    One str, bytes or os.PathLike is one path, never a sequence of one-character names; bytes
    are decoded as file names are (`os.fsdecode`). Raises TypeError naming `paths` otherwise.
    """
    if isinstance(paths, str | bytes | os.PathLike):
        return [os.fsdecode(paths)]
    if isinstance(paths, Mapping):  # its keys are no list of paths (tester T3: {"a": 1})
        got = type(paths).__name__
    elif isinstance(paths, Iterable):
        items = list(paths)
        bad = [p for p in items if not isinstance(p, str | bytes | os.PathLike)]
        if not bad:
            return [os.fsdecode(p) for p in items]
        got = f"an iterable holding {type(bad[0]).__name__}"
    else:
        got = type(paths).__name__
    raise TypeError(
        f"{caller} paths: expected a path (str, bytes or Path) or an iterable of them, got {got}"
    )


from asg_audit.track import TrackSummary, print_track_summary, track_file  # noqa: E402
