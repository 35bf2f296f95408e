"""Submission exports (`asg-audit track`): what the customer submitted, for the checks.

CSV (`task_id, task_type, consensus_threshold, options, created_at[, data_url]`, options
`|`-separated) or NDJSON (`type` or `task_type`, `label_spec.options`), UTF-8 with or without a
byte order mark at the start. A file starting with a UTF-16 or UTF-32 byte order mark (what
Windows PowerShell 5 writes with `>`) is refused whole, naming its encoding. Good rows are stored
in `submissions`; every row that cannot be used is reported with its file, line and field (the
first MAX_LISTED_ERRORS in the summary) and
kept in `rejects` with its raw bytes.

A row missing a required value (only `data_url` may be left out; an empty CSV options cell means
no options) is a `bad_submission` reject naming the field: it never changes a stored task. A file
most of whose rows are such rejects is named as probably not submissions (`TrackSummary.hint`).

Every row is counted once: new, updated (a stored value changed), unchanged, duplicate (the same
task with the same values earlier in the file) or rejected. A task id repeated in one file with
other values is a `duplicate_task_id` reject naming the line that is kept (the first). An NDJSON
object repeating a key, at any depth, is ambiguous (parsers keep the first or the last value):
an `invalid_json` reject, as the webhook receiver makes it. A CSV quote never closed swallows
the rest of the file into one field: one reject saying so, naming the lines it covers.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import itertools
import json
import os
import sys
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final, cast

import duckdb
import polars as pl

from asg_audit.config import check_wait_seconds
from asg_audit.errors import InputError, StoreError
from asg_audit.filelines import describe_read_error
from asg_audit.interrupts import is_interrupt, sigint_interrupts
from asg_audit.model import (
    SUBMISSIONS_SCHEMA,
    RejectReason,
    is_safe_task_id,
    path_text,
    printable,
)
from asg_audit.normalize import DEFAULT_MAX_RECORD_BYTES
from asg_audit.stopsignals import note_stop
from asg_audit.store import BULK_MEMORY_LIMIT, Store, new_run_id, open_store
from asg_audit.timestamps import parse_timestamp
from asg_audit.webhook_writer import (
    MAX_JSON_DEPTH,
    DuplicateKeyError,
    TooDeepError,
    duplicate_key_reject,
    load_json_object,
)

__all__ = ["TrackSummary", "print_track_summary", "track_file"]

BOM: Final = b"\xef\xbb\xbf"
# The byte order marks of the encodings a text file may be in that are not UTF-8 (UTF-32's
# first: UTF-32LE's starts with UTF-16LE's).
WIDE_BOMS: Final = (
    (b"\xff\xfe\x00\x00", "UTF-32LE"),
    (b"\x00\x00\xfe\xff", "UTF-32BE"),
    (b"\xff\xfe", "UTF-16LE"),
    (b"\xfe\xff", "UTF-16BE"),
)
# Said of a row or header holding NUL bytes, which UTF-8 text does not (UTF-16/32 text does).
_NUL_HINT: Final = "NUL bytes: UTF-16 or UTF-32 text? track reads UTF-8"
# CSV header: the columns a submission row must have, and those it may have.
CSV_REQUIRED: Final = ("task_id", "task_type", "consensus_threshold", "options", "created_at")
CSV_OPTIONAL: Final = ("data_url",)
CSV_ALIASES: Final = {"type": "task_type"}
# The values that make a submission; the same task id with other values is a conflict.
VALUE_COLUMNS: Final = ("task_type", "consensus_threshold", "options", "created_at", "data_url")


@dataclass(slots=True)
class TrackSummary:
    """What `track` registered: every row is new, updated, unchanged, a duplicate or rejected."""

    path: str
    rows: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    rejected: int = 0
    # `file:line: field: reason` of the first MAX_LISTED_ERRORS rejected rows (all are in
    # `rejects`)
    errors: list[str] = field(default_factory=list)
    # rows rejected for a missing required field (all counted in `rejected` too)
    missing_fields: int = 0
    # Said when most rows lack required fields: the file is likely not a submissions export
    # (a webhook log or results export passed by mistake), else None.
    hint: str | None = None


class _RowError(ValueError):
    """A row that cannot be used: its reject reason, field and what is wrong."""

    def __init__(
        self,
        field: str | None,
        message: str,
        *,
        reason: str = RejectReason.BAD_SUBMISSION,
    ) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = reason


class _MissingError(_RowError):
    """A row without one of the required values (a `bad_submission` reject)."""


def _parse_created_at(value: Any, *, csv_cell: bool) -> datetime | None:
    """Return the instant of a `created_at` value by the normaliser's rules, or None if empty.

    A CSV cell has no types: digits are integer epoch seconds, and blanks around it are dropped.
    """
    if _blank(value):
        return None
    if csv_cell and isinstance(value, str):
        value = value.strip()
        if value.isascii() and value.isdigit():
            value = int(value)
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise _RowError("created_at", f"{exc}: {str(value)[:60]!r}") from None


def _parse_options(value: Any) -> list[str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if value.startswith("["):
            try:
                value = json.loads(value)
            except (ValueError, RecursionError):
                raise _RowError("options", "not a JSON list of strings") from None
        else:
            value = value.split("|")
    if not isinstance(value, list) or not all(isinstance(o, str) for o in value):
        raise _RowError("options", "expected a list of strings")
    seen: set[str] = set()
    for option in value:
        if not option.strip():
            raise _RowError("options", f"an empty option in {'|'.join(value)!r}")
        if option in seen:
            raise _RowError("options", f"{option!r} is listed twice")
        seen.add(option)
    return value or None


def _optional_text(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _RowError(name, f"expected a string, got {type(value).__name__}")
    return value


def _blank(value: Any) -> bool:
    """Whether a value is not given: absent, null, or a string of nothing but blanks."""
    return value is None or (isinstance(value, str) and not value.strip())


# How a missing required field is named in an NDJSON row (which also takes these aliases).
_NDJSON_NAMES: Final = {
    "task_type": "task_type (or type)",
    "options": "options (or label_spec.options)",
}


def _missing(rec: dict[str, Any], options: Any, *, csv_row: bool) -> _MissingError | None:
    """The reject of a row without one of the required values (None when it has them all).

    Only `data_url` may be left out. An empty CSV options cell means no options (so does an
    empty NDJSON list or string); an options key absent or null is missing. Without this a row
    with only a task id was stored with nulls over the task's stored values.
    """
    values = {
        "task_type": _first_given(rec, "task_type", "type"),
        "consensus_threshold": rec.get("consensus_threshold"),
        "options": options,
        "created_at": rec.get("created_at"),
    }
    missing = [
        name
        for name, value in values.items()
        if (value is None if name == "options" else _blank(value))
    ]
    if not missing:
        return None
    others = _and(missing[1:])
    if csv_row:
        empty = "cells are" if len(missing) > 2 else "cell is"
        what = f"an empty cell; the {others} {empty} empty too" if others else "an empty cell"
        needs = _and(list(CSV_REQUIRED[1:]))
    else:
        are = "are" if len(missing) > 2 else "is"
        what = f"{others} {are} missing too" if others else ""
        needs = _and([_NDJSON_NAMES.get(name, name) for name in CSV_REQUIRED[1:]])
    return _MissingError(
        missing[0],
        f"missing{f' ({what})' if what else ''}: a submission needs {needs};"
        " only data_url may be left out",
    )


def _and(names: list[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _first_given(rec: dict[str, Any], *names: str) -> Any:
    """The value of the first of `names` the record gives (not null), else None."""
    for name in names:
        if rec.get(name) is not None:
            return rec[name]
    return None


def _submission_row(rec: dict[str, Any], *, csv_row: bool) -> dict[str, Any]:
    task_id = rec.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        raise _RowError("task_id", "missing or not a string")
    if not is_safe_task_id(task_id):
        raise _RowError("task_id", "unsafe task id (letters, digits and _ . : - only)")
    options: Any = rec.get("options")
    spec = rec.get("label_spec")
    if options is None and isinstance(spec, dict):
        options = spec.get("options")
    # The values given are checked first (a wrong one is named even when another is missing).
    threshold = rec.get("consensus_threshold")
    threshold_v = None if _blank(threshold) else _parse_threshold(threshold)
    row = {
        "task_id": task_id,
        "task_type": _optional_text("task_type", _first_given(rec, "task_type", "type")),
        "consensus_threshold": threshold_v,
        "options": _parse_options(options),
        "created_at": _parse_created_at(rec.get("created_at"), csv_cell=csv_row),
        "data_url": _optional_text("data_url", rec.get("data_url")),
    }
    missing = _missing(rec, options, csv_row=csv_row)
    if missing is not None:
        raise missing
    return row


def _parse_threshold(value: Any) -> int:
    try:
        threshold = int(str(value))
    except ValueError:
        raise _RowError("consensus_threshold", f"not an integer: {value!r}") from None
    if not 2 <= threshold <= 10:
        raise _RowError("consensus_threshold", f"{threshold} is outside 2..10")
    return threshold


class _WideTextError(Exception):
    """The file starts with the byte order mark of UTF-16 or UTF-32, not UTF-8."""

    def __init__(self, encoding: str) -> None:
        super().__init__(encoding)
        self.encoding = encoding


class _Lines:
    """A binary file's lines as text (for csv.reader), keeping the raw bytes of the current row.

    A leading UTF-8 BOM is dropped; a leading UTF-16/32 one raises `_WideTextError`. A line
    that is not valid UTF-8 is decoded with surrogate escapes (so the CSV reader keeps its
    place) and marked, and its row becomes an `invalid_utf8` reject.
    """

    def __init__(self, fh: IO[bytes], limit: int = DEFAULT_MAX_RECORD_BYTES) -> None:
        self._fh = fh
        self._limit = limit
        self.line_no = 0
        self._raw: list[bytes] = []
        self._held = 0  # bytes of the row held in `_raw` (at most `limit` + 1)
        self._length = 0  # bytes of the row read, held or not
        self._break = 0  # bytes of the line break ending the last line read (\n or \r\n)
        self._row_start = 1
        self._bad: str | None = None
        self.ended = False  # the file's end was read

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = self._fh.readline(self._limit + 1)
        if not raw:
            self.ended = True
            raise StopIteration
        if self.line_no == 0:
            raw = raw.removeprefix(BOM)
            for mark, encoding in WIDE_BOMS:
                if raw.startswith(mark):
                    raise _WideTextError(encoding)
        self.line_no += 1
        length = len(raw)
        if not raw.endswith(b"\n") and length > self._limit:
            # A line over the limit: its first bytes are kept, the rest counted and dropped
            # up to its end, so a line of any length (a gzip bomb) takes bounded memory. The
            # row is a `too_large` reject (`take_too_large`).
            end, quotes = raw, raw.count(b'"')
            while chunk := self._fh.readline(_SKIP_BYTES):
                length += len(chunk)
                end, quotes = end[-1:] + chunk, quotes + chunk.count(b'"')
                if chunk.endswith(b"\n"):
                    break
            self._hold(raw, length, end)
            # the reader sees a line opening or closing a quoted field as the dropped one did
            # (a CSV line cut inside a multi-line quoted field must not swallow the rows after
            # it: review R2)
            return '"\n' if quotes % 2 else "\n"
        self._hold(raw, length, raw)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if self._bad is None:
                where = "the line" if self.line_no == self._row_start else f"line {self.line_no}"
                self._bad = f"byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of {where}"
            return raw.decode("utf-8", "surrogateescape")

    def _hold(self, raw: bytes, length: int, end: bytes) -> None:
        """Count `length` bytes of the row (its line ending with `end`); hold its first
        `limit` + 1 at most."""
        self._length += length
        self._break = 2 if end.endswith(b"\r\n") else 1 if end.endswith(b"\n") else 0
        room = self._limit + 1 - self._held
        if room > 0:
            self._raw.append(raw[:room])
            self._held += min(room, len(raw))

    def take_row(self) -> tuple[int, bytes, str | None]:
        """Return the row just read: its first line, raw bytes (no final line break), bad bytes."""
        raw = b"".join(self._raw).removesuffix(b"\n").removesuffix(b"\r")
        taken = (self._row_start, raw, self._bad)
        self._raw, self._bad, self._row_start = [], None, self.line_no + 1
        self._held = self._length = 0
        return taken

    def take_too_large(self) -> tuple[int, bytes, str] | None:
        """Return the row just read if it is over the limit (its first line, its first `limit`
        bytes, the reject's detail), else None (then `take_row`)."""
        length = self._length - self._break  # without the line break ending it
        if length <= self._limit:
            return None
        line_no, raw, _ = self.take_row()
        kept = raw[: self._limit]
        detail = (
            f"record of {length} bytes is over the limit of {self._limit}; cut at the limit"
            f" while reading: its raw holds its first {len(kept)} bytes"
        )
        return line_no, kept, detail


_Record = tuple[int, dict[str, Any] | _RowError, bytes]
# A line over the limit is skipped to its end this many bytes at a time.
_SKIP_BYTES: Final = 1 << 20


def _csv_header(path: Path, row: list[str], bad: str | None) -> list[str]:
    if bad is not None:
        raise InputError(
            f"{path_text(path)}: the header (line 1) is not valid UTF-8 ({bad}); nothing stored"
        )
    if any("\x00" in name for name in row):
        raise InputError(
            f"{path_text(path)}: the header (line 1) is not readable ({_NUL_HINT}); nothing stored"
        )
    names = [name.strip() for name in row]
    header = [CSV_ALIASES.get(name, name) for name in names]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise InputError(
            f"{path_text(path)}: the header names "
            f"{'; '.join(_repeated_column(name, header, names) for name in repeated)}:"
            " which of its columns counts is ambiguous; nothing stored"
        )
    missing = [name for name in CSV_REQUIRED if name not in header]
    if missing:
        nor = f" (nor {', '.join(missing[1:])})" if len(missing) > 1 else ""
        raise InputError(
            f"{path_text(path)}: the header has no {missing[0]} column{nor}; expected "
            f"{', '.join(CSV_REQUIRED)}[, {', '.join(CSV_OPTIONAL)}]; nothing stored"
        )
    return header


def _repeated_column(name: str, header: list[str], names: list[str]) -> str:
    """How a column named more than once is named: `task_id twice (columns 1 and 3)`,
    `task_type twice (as type and task_type, columns 2 and 5)`."""
    columns = [i for i, h in enumerate(header, 1) if h == name]
    spelled = list(dict.fromkeys(names[i - 1] for i in columns))
    times = "twice" if len(columns) == 2 else f"{len(columns)} times"
    shown = name or "an empty name"
    spelling = f"as {' and '.join(spelled)}, " if len(spelled) > 1 else ""
    at = ", ".join(str(c) for c in columns[:-1]) + f" and {columns[-1]}"
    return f"{shown} {times} ({spelling}columns {at})"


def _unterminated(start: int, end: int) -> str:
    """What a row ended by the end of the file inside a quoted field is (lines start..end)."""
    if end <= start:
        return f"unterminated quoted field on line {start}, the last line of the file"
    swallowed = (
        f"line {end} is read as part of it, not as a row"
        if end == start + 1
        else f"lines {start + 1}-{end} are read as part of it, not as rows"
    )
    return (
        f"unterminated quoted field from line {start} to the end of the file (lines {start}-{end}):"
        f" a quote opens a field that no quote closes, so {swallowed}"
    )


def _csv_records(path: Path, fh: IO[bytes]) -> Iterator[_Record]:
    lines = _Lines(fh)
    header: list[str] | None = None
    reader = csv.reader(lines)
    while True:
        ended = lines.ended
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # A row the reader cannot parse (a carriage return inside an unquoted field, a
            # field over its size limit): that row is a reject, the reader goes on with the next.
            if header is None:
                raise InputError(
                    f"{path_text(path)}:{lines.line_no}: the header is not readable as CSV ({exc});"
                    " nothing stored"
                ) from None
            line_no, raw, _ = lines.take_row()
            yield line_no, _RowError(None, f"not readable as CSV ({exc})"), raw
            continue
        # A row is ended by the end of the file only inside a quoted field never closed (the
        # reader then takes the rest of the file as its field).
        unterminated = lines.ended and not ended
        if (too_large := lines.take_too_large()) is not None:
            line_no, raw, detail = too_large
            if header is None:
                raise InputError(
                    f"{path_text(path)}:{line_no}: the header: {detail}; nothing stored"
                )
            yield line_no, _RowError(None, detail, reason=RejectReason.TOO_LARGE), raw
            continue
        line_no, raw, bad = lines.take_row()
        if not row:  # a blank line
            continue
        if header is None:
            if unterminated:
                raise InputError(
                    f"{path_text(path)}: the header: {_unterminated(line_no, lines.line_no)};"
                    " nothing stored"
                )
            header = _csv_header(path, row, bad)
            continue
        if unterminated:
            column = header[len(row) - 1] if len(row) <= len(header) else None
            yield line_no, _RowError(column, _unterminated(line_no, lines.line_no)), raw
        elif bad is not None:
            yield (
                line_no,
                _RowError(None, f"invalid_utf8: {bad}", reason=RejectReason.INVALID_UTF8),
                raw,
            )
        elif b"\x00" in raw:
            # UTF-8 text holds no NUL (tester T7: a NUL inside a cell was stored as the type)
            yield line_no, _RowError(None, f"not readable ({_NUL_HINT})"), raw
        elif len(row) > len(header):
            yield line_no, _RowError(None, f"{len(row)} fields, the header has {len(header)}"), raw
        else:
            absent = [name for name in header[len(row) :] if name in CSV_REQUIRED]
            if absent:
                message = f"missing (the row has {len(row)} of the header's {len(header)} fields)"
                yield line_no, _RowError(absent[0], message), raw
            else:
                yield line_no, dict(zip(header, row, strict=False)), raw


def _ndjson_records(fh: IO[bytes]) -> Iterator[_Record]:
    lines = _Lines(fh)
    for text in lines:
        if (too_large := lines.take_too_large()) is not None:
            line_no, raw, detail = too_large
            yield line_no, _RowError(None, detail, reason=RejectReason.TOO_LARGE), raw
            continue
        line_no, raw, bad = lines.take_row()
        if not raw.strip():
            continue
        if bad is not None:
            yield (
                line_no,
                _RowError(None, f"invalid_utf8: {bad}", reason=RejectReason.INVALID_UTF8),
                raw,
            )
            continue
        if text.startswith("\ufeff"):
            message = "not valid JSON (a byte order mark; only the file may start with one)"
            yield line_no, _RowError(None, message, reason=RejectReason.INVALID_JSON), raw
            continue
        try:
            # As the webhook receiver reads a body: a repeated key and deep nesting refused.
            rec = load_json_object(raw)
        except DuplicateKeyError as exc:
            # the field is the key's path (`label_spec.options`), as the receiver names it
            where, detail = duplicate_key_reject(raw, exc)
            error = _RowError(where, detail, reason=RejectReason.INVALID_JSON)
            yield line_no, error, raw
            continue
        except TooDeepError as exc:
            deep = f"{exc.depth} levels" if exc.depth is not None else "too deeply"
            message = f"not valid JSON (arrays/objects nested {deep}, over {MAX_JSON_DEPTH})"
            yield line_no, _RowError(None, message, reason=RejectReason.INVALID_JSON), raw
            continue
        except ValueError as exc:  # JSONDecodeError, or anything else the parser refuses
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            if b"\x00" in raw:
                why = f"{why}; {_NUL_HINT}"
            message = f"not valid JSON ({why})"
            yield line_no, _RowError(None, message, reason=RejectReason.INVALID_JSON), raw
            continue
        if not isinstance(rec, dict):
            message = "expected a JSON object"
            yield line_no, _RowError(None, message, reason=RejectReason.NOT_OBJECT), raw
            continue
        yield line_no, rec, raw


def _is_csv(path: Path) -> bool:
    return path.name.removesuffix(".gz").endswith(".csv")


def _submission_records(path: Path) -> Iterator[_Record]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with cast(IO[bytes], opener(path, "rb")) as fh:
        if _is_csv(path):
            yield from _csv_records(path, fh)
        else:
            yield from _ndjson_records(fh)


# Rows are staged in the store's connection this many at a time: the file is never held whole
# in memory, whatever its size (DuckDB spills a large stage to disk).
_CHUNK_ROWS: Final = 50_000
_STAGE: Final = "_track_stage"  # every accepted row: its values, line and raw bytes
_FIRST: Final = "_track_first"  # the first row of each task id: what is stored
_BAD: Final = "_track_bad"  # every row that cannot be used: what `rejects` gets
# The rejected rows a TrackSummary lists (the rest are counted, and all are in `rejects`).
MAX_LISTED_ERRORS: Final = 1_000
_STAGE_SCHEMA: Final[dict[str, pl.DataType]] = {
    **SUBMISSIONS_SCHEMA,
    "origin_line": pl.Int64(),
    "raw": pl.Binary(),
}
_BAD_SCHEMA: Final[dict[str, pl.DataType]] = {
    "origin_line": pl.Int64(),
    "reason": pl.String(),
    "field": pl.String(),
    "detail": pl.String(),
    "raw": pl.Binary(),
}
_SQL_TYPES: Final = {  # the stage tables' columns
    "task_id": "VARCHAR",
    "task_type": "VARCHAR",
    "consensus_threshold": "INTEGER",
    "options": "VARCHAR[]",
    "created_at": "TIMESTAMPTZ",
    "data_url": "VARCHAR",
    "origin_line": "BIGINT",
    "raw": "BLOB",
    "reason": "VARCHAR",
    "field": "VARCHAR",
    "detail": "VARCHAR",
}


def _checked_records(path: Path, summary: TrackSummary) -> Generator[_Record]:
    """The file's records; a file that cannot be read (at its start or further on) raises
    InputError naming it and why."""
    try:
        yield from _submission_records(path)
    except FileNotFoundError:
        raise InputError(f"{summary.path}: no such file") from None
    except _WideTextError as exc:
        raise InputError(
            f"{summary.path}: the file is {exc.encoding} text (it starts with a {exc.encoding}"
            " byte order mark); track reads UTF-8: save it as UTF-8 (PowerShell:"
            " Out-File -Encoding utf8); nothing stored"
        ) from None
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{summary.path}: {describe_read_error(exc)}") from None


def _stage_rows(
    con: duckdb.DuckDBPyConnection,
    records: Iterator[_Record],
    summary: TrackSummary,
    *,
    csv_rows: bool,
) -> None:
    """Parse every record into the stage table, or the rejects table if it cannot be used."""
    for table, schema in ((_STAGE, _STAGE_SCHEMA), (_BAD, _BAD_SCHEMA)):
        columns = ", ".join(f"{name} {_SQL_TYPES[name]}" for name in schema)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} ({columns})")
    good: list[tuple[Any, ...]] = []
    bad: list[tuple[Any, ...]] = []
    result_like = 0  # rows rejected for a missing field that hold a result's keys
    for line_no, rec, raw in records:
        summary.rows += 1
        try:
            if isinstance(rec, _RowError):
                raise rec
            row = _submission_row(rec, csv_row=csv_rows)
        except _RowError as exc:
            bad.append((line_no, exc.reason, exc.field, str(exc), raw))
            if isinstance(exc, _MissingError):
                summary.missing_fields += 1
                result_like += isinstance(rec, dict) and not _RESULT_KEYS.isdisjoint(rec)
        except (ValueError, TypeError) as exc:  # a value no check above foresaw
            bad.append((line_no, RejectReason.BAD_SUBMISSION, None, str(exc), raw))
        else:
            good.append((*row.values(), line_no, raw))
        if len(good) == _CHUNK_ROWS:
            good = _append(con, _STAGE, _STAGE_SCHEMA, good)
        if len(bad) == _CHUNK_ROWS:
            bad = _append(con, _BAD, _BAD_SCHEMA, bad)
    _append(con, _STAGE, _STAGE_SCHEMA, good)
    _append(con, _BAD, _BAD_SCHEMA, bad)
    summary.hint = _hint(summary.rows, summary.missing_fields, result_like)


# Keys of a result or a `task.settled` delivery that a submission does not have.
_RESULT_KEYS: Final = frozenset(
    {
        "event",
        "status",
        "consensus_label",
        "label",
        "confidence",
        "settlement",
        "settled_at",
        "bsv_txid",
        "txid",
        "agreement_count",
        "worker_count",
        "total_cost_sats",
        "cost_sats",
    }
)


def _hint(rows: int, missing: int, result_like: int) -> str | None:
    """What to say of a file most of whose rows lack required fields (None otherwise)."""
    if not missing or missing * 2 <= rows:
        return None
    most = (
        "its row lacks"
        if rows == 1
        else "every row lacks"
        if missing == rows
        else f"{missing:,} of {rows:,} rows lack"
    )
    kept = "these rows are rejects and change nothing stored"
    if result_like * 2 > missing:
        return (
            f"{most} required submission fields; they look like results or webhook deliveries"
            f" (event, status, consensus_label, ...), not submissions ({kept}): results are"
            " stored by `asg-audit ingest`"
        )
    return (
        f"{most} required submission fields ({kept}): is this a submissions export? track"
        f" needs {', '.join(CSV_REQUIRED)}[, {', '.join(CSV_OPTIONAL)}]"
    )


def _append(
    con: duckdb.DuckDBPyConnection,
    table: str,
    schema: dict[str, pl.DataType],
    rows: list[tuple[Any, ...]],
) -> list[tuple[Any, ...]]:
    """Insert `rows` into `table`; return a new empty list for the next ones."""
    if rows:
        frame = pl.DataFrame(rows, schema=schema, orient="row")
        con.register("_track_chunk", frame)
        try:
            con.execute(f"INSERT INTO {table} SELECT * FROM _track_chunk")
        finally:
            con.unregister("_track_chunk")
    return []


def _shown(table: str, name: str) -> str:
    """SQL for a submission value as a conflict's message shows it (`none` for no value)."""
    column = f"{table}.{name}"
    if name == "options":
        text = f"array_to_string({column}, '|')"
    elif name == "created_at":  # ISO 8601 in UTC, microseconds only when there are some
        utc = f"timezone('UTC', {column})"
        micros = f"strftime({utc}, '%f')"
        text = (
            f"strftime({utc}, '%Y-%m-%dT%H:%M:%S') || CASE WHEN {micros} = '000000' THEN ''"
            f" ELSE '.' || {micros} END || '+00:00'"
        )
    else:
        text = f"CAST({column} AS VARCHAR)"
    return f"coalesce({text}, 'none')"


def _sort_repeats(con: duckdb.DuckDBPyConnection, summary: TrackSummary) -> int:
    """Keep the first row of each task id (the `_track_first` table); count the later rows
    with the same values as duplicates, and reject those with other values, naming the line
    kept and each value that differs. Return how many tasks the file holds."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_FIRST} AS SELECT * EXCLUDE (raw), ? AS origin"
        f" FROM {_STAGE} QUALIFY row_number() OVER (PARTITION BY task_id ORDER BY origin_line) = 1",
        [summary.path],
    )
    differs = " OR ".join(f"s.{name} IS DISTINCT FROM f.{name}" for name in VALUE_COLUMNS)
    repeats = (
        f"FROM {_STAGE} s JOIN {_FIRST} f ON s.task_id = f.task_id"
        " AND s.origin_line <> f.origin_line"
    )
    counts = con.execute(
        f"SELECT count(*) FILTER (WHERE NOT ({differs})), (SELECT count(*) FROM {_FIRST}) {repeats}"
    ).fetchone()
    assert counts is not None
    summary.duplicates = int(counts[0])
    diffs = ", ".join(
        f"CASE WHEN s.{name} IS DISTINCT FROM f.{name} THEN '{name}: ' || {_shown('f', name)}"
        f" || ' there, ' || {_shown('s', name)} || ' here' END"
        for name in VALUE_COLUMNS
    )
    first = "CAST(f.origin_line AS VARCHAR)"
    con.execute(
        f"INSERT INTO {_BAD} SELECT s.origin_line, ?, 'task_id', 'task_id: ' || s.task_id ||"
        f" ' is also on line ' || {first} || ' with other values (' || concat_ws('; ', {diffs})"
        f" || '); line ' || {first} || ' is kept', s.raw {repeats} WHERE {differs}",
        [RejectReason.DUPLICATE_TASK_ID],
    )
    return int(counts[1])


def track_file(db: str | Path, path: str | Path, *, wait_seconds: float = 0.0) -> TrackSummary:
    """Register submitted tasks from a CSV or NDJSON export; return what was registered.

    Rows that cannot be used are listed in `errors` (file, line, field and reason) and go to
    `rejects`; the good rows are stored. Tracking the same file again changes nothing: its tasks
    are unchanged and its rejects are already stored. A file that cannot be read at all (or a CSV
    header without the required columns) raises `InputError` and stores nothing; so does one
    that cannot be read to its end (a truncated gzip), its run recorded as failed. The file is
    read in chunks, never held whole in memory.

    `db` is a path (str or Path) and `path` one file (str, bytes or Path); another type is a
    TypeError naming it, and a `wait_seconds` that is not a finite number, 0 or more, a
    ConfigError naming it, before the file is read.
    """
    if not isinstance(db, str | os.PathLike):
        raise TypeError(
            f"track_file db: expected a path (str or Path) to the store, got {type(db).__name__}"
        )
    if not isinstance(path, str | bytes | os.PathLike):
        raise TypeError(
            "track_file path: expected the path (str, bytes or Path) of one CSV or NDJSON"
            f" file, got {type(path).__name__}"
        )
    check_wait_seconds(wait_seconds, "track_file wait_seconds")
    path = Path(os.fsdecode(path))
    summary = TrackSummary(path=path_text(path))  # the file's name as stored and shown
    records = _checked_records(path, summary)
    # The start of the file is read before the store is opened: a file missing, in another
    # encoding or with a bad CSV header is refused without a run.
    head = list(itertools.islice(records, 1))
    with (
        contextlib.closing(records),
        open_store(db, wait_seconds=wait_seconds, memory_limit=BULK_MEMORY_LIMIT) as store,
    ):
        # The run's id is known before it is recorded: an interruption as it starts still ends
        # it (a run never recorded is ended as a no-op), never leaving it `running`.
        run_id = new_run_id()
        interrupted = None
        try:
            # A stop signal interrupts DuckDB's statement and is known as one however DuckDB
            # reports it ("Current transaction is aborted" was shown as a write error).
            with sigint_interrupts(store.con) as interrupted:
                store.start_run("track", run_id=run_id)
                _stage_rows(
                    store.con, itertools.chain(head, records), summary, csv_rows=_is_csv(path)
                )
                tasks = _sort_repeats(store.con, summary)
                _store_submissions(store, run_id, summary, tasks)
        except BaseException as exc:
            # Not left `running`: the run ended, on an error (or interruption) the caller sees.
            stopped = (interrupted is not None and interrupted.is_set()) or is_interrupt(exc)
            with contextlib.suppress(duckdb.Error, StoreError):
                error = None if stopped else printable(str(exc), one_line=True)
                store.finish_run(
                    run_id,
                    status="interrupted" if stopped else "failed",
                    stats=None if error is None else {"rows": summary.rows, "error": error},
                )
            if stopped:
                raise KeyboardInterrupt from None
            raise
        finally:
            for table in (_STAGE, _FIRST, _BAD):
                with contextlib.suppress(duckdb.Error):
                    store.con.execute(f"DROP TABLE IF EXISTS {table}")
    return summary


def _store_submissions(store: Store, run_id: str, summary: TrackSummary, tasks: int) -> None:
    """Store the first row of each task and the rejects of one file, and end its run `ok`, in
    one transaction: the rows are stored if and only if the run says so.

    The summary is complete before the transaction starts. Its last step, before the commit,
    notes the stop (`note_stop`): a signal from then on comes after the command's work and
    leaves its summary and exit code as they are, and one before it rolls everything back. (The
    run used to be ended in a transaction of its own after the rows were committed: a signal
    between the two printed "interrupted" and exited 3 over a store already updated.)
    """
    rejected = store.con.execute(f"SELECT count(*) FROM {_BAD}").fetchone()
    summary.rejected = int(rejected[0]) if rejected else 0
    listed = store.con.execute(
        f"SELECT origin_line, detail FROM {_BAD} ORDER BY origin_line LIMIT {MAX_LISTED_ERRORS}"
    ).fetchall()
    summary.errors = [f"{summary.path}:{line}: {detail}" for line, detail in listed]
    with store.transaction() as con:
        summary.new, summary.updated = store.write_staged_submissions(_FIRST)
        summary.unchanged = tasks - summary.new - summary.updated
        # a reject already stored for this file (tracked before) is not stored again
        con.execute(
            "INSERT INTO rejects SELECT ?, 'submissions', ?, ?, b.origin_line, b.reason,"
            f" b.field, b.detail, b.raw FROM {_BAD} b WHERE NOT EXISTS ("
            " SELECT 1 FROM rejects r WHERE r.source = 'submissions' AND r.origin = ?"
            " AND r.origin_line = b.origin_line AND r.reason = b.reason"
            " AND r.field IS NOT DISTINCT FROM b.field"
            " AND r.detail IS NOT DISTINCT FROM b.detail"
            " AND r.raw IS NOT DISTINCT FROM b.raw) ORDER BY b.origin_line",
            [run_id, datetime.now(UTC), summary.path, summary.path],
        )
        store.finish_run(  # nested: part of this transaction
            run_id,
            status="ok",
            stats={
                "rows": summary.rows,
                "new": summary.new,
                "updated": summary.updated,
                "unchanged": summary.unchanged,
                "duplicates": summary.duplicates,
                "errors": summary.rejected,
            },
        )
        note_stop()


def print_track_summary(summary: TrackSummary, *, file: IO[str] | None = None) -> None:
    """Print what `track` registered and every row it could not use."""
    out = file or sys.stdout
    print(
        f"{printable(summary.path, one_line=True)}: {summary.rows:,} rows:"
        f" {summary.new:,} new tasks, "
        f"{summary.updated:,} updated, {summary.unchanged:,} unchanged, "
        f"{summary.duplicates:,} duplicates, {summary.rejected:,} rejected",
        file=out,
    )
    for err in summary.errors[:20]:
        print(f"  {printable(err, one_line=True)}", file=sys.stderr)
    if summary.rejected > 20:
        print(f"  ... and {summary.rejected - 20:,} more (see the rejects table)", file=sys.stderr)
    if summary.hint is not None:
        print(
            f"asg-audit: warning: {printable(summary.path, one_line=True)}: {summary.hint}",
            file=sys.stderr,
        )
