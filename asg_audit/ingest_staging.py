"""Staging a large file's records in the store, in the transaction of `asg_audit.ingest`.

Each `stage_*` function returns (records, rejects by reason, content hash) and leaves the commit
or the rollback to its caller. NDJSON is streamed in chunks (never loaded whole); the elements
of a JSON array and pretty-printed documents are read by DuckDB's JSON reader inside the store
(an element too big for it is located in the file, as DuckDB's message does not say where);
a pipe or a device named on its own is read once: NDJSON as it comes, anything else copied to a
temporary file first for DuckDB's reader.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import re
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO

import duckdb

from asg_audit import engine
from asg_audit.errors import InputError
from asg_audit.filelines import (
    CutLine,
    Expected,
    HashingReader,
    LineBatches,
    always_lines,
    duckdb_path,
    file_content_hash,
    locate_big_element,
    locate_json_error,
    open_binary,
    raw_position,
    sniff_layout,
)
from asg_audit.ingest_summary import ProgressFn
from asg_audit.interrupts import is_interrupt
from asg_audit.model import RejectReason, Source
from asg_audit.normalize import DEFAULT_MAX_RECORD_BYTES
from asg_audit.store import Store

__all__ = [
    "DOCUMENT_READERS",
    "first_line",
    "query_progress",
    "stage_documents",
    "stage_lines",
    "stage_stream",
    "unreadable_documents",
]


def _file_records(raw: str, raw_bytes: str, line: str, relation: str, where: str = "") -> str:
    """Return a query giving a file's records as the normaliser's RAW_SCHEMA columns."""
    return f"""(SELECT {raw} AS raw, {raw_bytes} AS raw_bytes, '{Source.FILE}' AS source,
    $observed_at AS observed_at, $origin AS origin, {line} AS origin_line,
    NULL::VARCHAR AS origin_hash, NULL::VARCHAR AS task_id_hint, NULL::SMALLINT AS http_status
  FROM {relation} {where})"""


# File lines (the registered Arrow stream `_file_lines`).
_FILE_SOURCE = _file_records("raw", "raw_bytes", "origin_line", "_file_lines")
# The elements of a JSON array file, or the documents of a file of pretty-printed JSON values
# (plain or gzip-compressed), read by DuckDB's JSON reader; an element's or document's number is
# its line.
DOCUMENT_READERS = {
    "array": "read_json_objects($path, format = 'array') WITH ORDINALITY",
    "documents": "read_json_objects($path, format = 'unstructured') WITH ORDINALITY",
}
# ... streamed inside the store
_DOCUMENT_SOURCES = {
    layout: _file_records("json::VARCHAR", "NULL::BLOB", "ordinality", reader)
    for layout, reader in DOCUMENT_READERS.items()
}


def stage_documents(
    store: Store,
    run_id: str,
    path: Path,
    layout: str,
    *,
    origin: str,
    observed_at: datetime,
    on_bytes: ProgressFn | None,
    expected: Expected | None = None,
    readable_again: bool = True,
) -> tuple[int, Counter[str], str]:
    """Stage the elements of a JSON array file or the documents of a file of pretty-printed
    JSON; return (records, rejects by reason, content hash). `readable_again`: `origin` names
    the same file in a later run (not a copy of a stream: its rejects are then kept once).

    DuckDB reads the file while another thread hashes it (reading, decompressing and hashing
    release the GIL), so the second read costs little time of its own. A file that cannot be
    read fails with the hashing thread's error, which names the cause (e.g. a truncated gzip).
    """
    with (
        concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ingest-hash") as pool,
        duckdb_path(path, expected) as name,
    ):
        params = {"observed_at": observed_at, "origin": origin, "path": name}
        hashing = pool.submit(file_content_hash, path, expected)
        try:
            with query_progress(store.con, path.stat().st_size, on_bytes):
                records, rejected = store.stage_raw(
                    run_id, _DOCUMENT_SOURCES[layout], params, rejects_once=readable_again
                )
        except duckdb.Error as exc:
            if is_interrupt(exc) or isinstance(exc, duckdb.OutOfMemoryException):
                raise
            hashing.result()  # a read error of the file itself comes first
            raise InputError(unreadable_documents(path, origin, layout, exc, expected)) from None
        return records, rejected, hashing.result()


def unreadable_documents(
    path: Path, origin: str, layout: str, exc: duckdb.Error, expected: Expected | None = None
) -> str:
    """Return why DuckDB's JSON reader refused a file, and where in it (a too-big element
    located), as the one-line error of the file (`expected`: as `open_binary` takes it)."""
    what = "JSON array" if layout == "array" else "JSON document"
    try:
        return _describe_unreadable(path, origin, layout, exc, what, expected)
    except Exception as failure:  # locating it failed: the file still fails, on its own
        if is_interrupt(failure):
            raise
        return (
            f"{origin}: not a readable {what}: {first_line(exc)} (where it breaks could not be"
            f" located: {type(failure).__name__}: {first_line(failure)}); nothing stored"
        )


def _describe_unreadable(
    path: Path, origin: str, layout: str, exc: duckdb.Error, what: str, expected: Expected | None
) -> str:
    if (too_big := _TOO_BIG.search(str(exc))) is not None:
        limit = int(too_big.group(1))
        big = locate_big_element(path, layout, limit, expected)
        if big is not None:  # DuckDB's message names neither the element nor where it is
            element, jq = ("element", ".[]") if layout == "array" else ("document", ".")
            return (
                f"{origin}: {element} {big.number} (from line {big.line}, column {big.column})"
                f" is {big.size:,} bytes, over the {limit:,} bytes DuckDB's JSON reader takes"
                f" for one {element}; nothing stored (as NDJSON, e.g. `jq -c '{jq}'`, it would"
                " be a too_large reject and the other records stored)"
            )
    where = locate_json_error(path, layout, expected)
    if where is not None:
        return f"{origin}: not a readable {what}: {where}; nothing stored"
    return f"{origin}: not a readable {what}: {first_line(exc)}"


# DuckDB's error for an element over its `maximum_object_size`.
_TOO_BIG = re.compile(r'"maximum_object_size" of (\d+) bytes exceeded')


def first_line(exc: BaseException) -> str:
    """Return the first line of the message of `exc` (its type's name if it has none)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()


@contextlib.contextmanager
def query_progress(
    con: duckdb.DuckDBPyConnection, size: int, on_bytes: ProgressFn | None
) -> Iterator[None]:
    """Report the progress of the query run inside the block as bytes of a file of `size`."""
    if on_bytes is None or not engine.bar_settable(con):
        # (a Jupyter kernel without ipywidgets: DuckDB refuses the settings, and a refused SET
        # would abort the caller's transaction: no estimate)
        yield
        return
    con.execute("SET enable_progress_bar_print = false")
    con.execute("SET enable_progress_bar = true")
    stop = threading.Event()
    reported = 0

    def poll() -> None:
        nonlocal reported
        while not stop.wait(0.25):
            try:
                share = con.query_progress()  # -1 until DuckDB has an estimate
            except duckdb.Error:
                continue
            if share > 0:
                done = min(size, int(size * share / 100))
                if done > reported:
                    on_bytes(done - reported)
                    reported = done

    poller = threading.Thread(target=poll, name="ingest-progress", daemon=True)
    poller.start()
    try:
        yield
    finally:
        stop.set()
        poller.join()
        with contextlib.suppress(duckdb.Error):  # a failed transaction: the caller rolls back
            con.execute("SET enable_progress_bar = false")


def stage_lines(
    store: Store,
    run_id: str,
    path: Path,
    *,
    origin: str,
    observed_at: datetime,
    chunk_bytes: int,
    on_bytes: ProgressFn | None,
    expected: Expected | None = None,
    readable_again: bool = True,
) -> tuple[int, Counter[str], str]:
    """Stage the lines of an NDJSON file; return (records, rejects by reason, content hash).
    `expected`: a file found by a folder scan or a glob, as `open_binary` takes it;
    `readable_again`: as in `stage_documents` (False for standard input)."""
    with open_binary(path, expected) as fh:
        return _stage_line_stream(
            store,
            run_id,
            fh,
            origin=origin,
            observed_at=observed_at,
            chunk_bytes=chunk_bytes,
            on_bytes=on_bytes,
            readable_again=readable_again,
        )


def stage_stream(
    store: Store,
    run_id: str,
    path: Path,
    *,
    origin: str,
    observed_at: datetime,
    chunk_bytes: int,
    on_bytes: ProgressFn | None,
    expected: Expected | None = None,
) -> tuple[int, Counter[str], str]:
    """Stage what a pipe or a device named on its own holds, reading it once (it cannot be
    read again): NDJSON as it comes; an array or JSON documents copied to a temporary file
    first, for DuckDB's reader. Return (records, rejects by reason, content hash).
    `expected`: a file found by a folder scan or a glob (then never a pipe: refused)."""
    with open_binary(path, expected) as fh:
        head = fh.read(4096)
        if always_lines(path) or sniff_layout(head) == "lines":
            return _stage_line_stream(
                store,
                run_id,
                fh,
                head=head,
                origin=origin,
                observed_at=observed_at,
                chunk_bytes=chunk_bytes,
                on_bytes=on_bytes,
                readable_again=False,
            )
        with tempfile.TemporaryDirectory(prefix="asg-audit-") as folder:
            copy = Path(folder, "stream.json")
            with copy.open("wb") as out:
                out.write(head)
                shutil.copyfileobj(fh, out, chunk_bytes)
            return stage_documents(
                store,
                run_id,
                copy,
                sniff_layout(head),
                origin=origin,
                observed_at=observed_at,
                on_bytes=on_bytes,
                readable_again=False,
            )


def _stage_line_stream(
    store: Store,
    run_id: str,
    fh: IO[bytes],
    *,
    head: bytes = b"",
    origin: str,
    observed_at: datetime,
    chunk_bytes: int,
    on_bytes: ProgressFn | None,
    readable_again: bool = True,
) -> tuple[int, Counter[str], str]:
    """Stage the NDJSON lines of `fh` (after `head`, its first bytes when they were read
    already); return (records, rejects by reason, content hash). `readable_again`: as in
    `stage_documents` (a pipe's name, `<stdin>` or `/dev/fd/63`, is another stream each run)."""
    reader = HashingReader(fh, head=head)
    last_pos = 0

    def on_read() -> None:
        nonlocal last_pos
        if on_bytes is not None:
            pos = raw_position(fh)
            on_bytes(pos - last_pos)
            last_pos = pos

    lines = LineBatches(
        reader,
        chunk_bytes=chunk_bytes,
        on_read=on_read,
        max_line_bytes=DEFAULT_MAX_RECORD_BYTES,
    )
    store.con.register("_file_lines", lines.reader())
    try:
        records, rejected = store.stage_raw(
            run_id,
            _FILE_SOURCE,
            {"observed_at": observed_at, "origin": origin},
            rejects_once=readable_again,
        )
        _say_cut(store, run_id, origin, lines.cut)
    except duckdb.Error:
        if lines.error is not None:
            raise lines.error from None
        raise
    finally:
        with contextlib.suppress(duckdb.Error):  # the failed transaction
            store.con.unregister("_file_lines")
    return records, rejected, reader.hash.hexdigest()


def _say_cut(store: Store, run_id: str, origin: str, cut: list[CutLine]) -> None:
    """Say in their rejects that these lines were cut at the limit, and how long they were
    (the normaliser only saw their first bytes)."""
    if not cut:
        return
    store.con.execute(
        "UPDATE rejects SET detail = 'record of ' || c.length || ' bytes is over the limit of '"
        " || $limit || '; cut at the limit while reading: its raw holds its first '"
        " || c.kept || ' bytes' FROM (SELECT unnest($lines) AS line, unnest($lengths) AS length,"
        " unnest($kept) AS kept) AS c WHERE rejects.run_id = $run_id"
        " AND rejects.origin = $origin AND rejects.origin_line = c.line"
        f" AND rejects.reason = '{RejectReason.TOO_LARGE}'",
        {
            "limit": DEFAULT_MAX_RECORD_BYTES,
            "lines": [c.line for c in cut],
            "lengths": [c.length for c in cut],
            "kept": [c.kept for c in cut],
            "run_id": run_id,
            "origin": origin,
        },
    )
