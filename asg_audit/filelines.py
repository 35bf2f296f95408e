"""Reading export files: how a file holds its records, and its lines as Arrow batches.

A file is NDJSON (`.jsonl`, `.ndjson`, sniffed `.json`), a JSON array, or pretty-printed JSON
documents (`file_layout`); any of them may be gzip-compressed, and `-` is standard input.
NDJSON is split into lines without a Python object per line (`LineBatches`, `line_batch`); a
file's content hash is of its decompressed content. No store and no normaliser here: `ingest`
puts these together.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import gzip
import hashlib
import json
import json.scanner
import os
import re
import shutil
import stat
import sys
import tempfile
import zlib
from _json import scanstring as _scanstring  # what json uses for strings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Protocol, cast

import numpy as np
import polars as pl
import pyarrow as pa

from asg_audit.errors import InputError
from asg_audit.model import path_text

__all__ = [
    "BOM",
    "PROCESS_RELATIVE",
    "STDIN",
    "STDIN_ORIGIN",
    "BigElement",
    "ChangedFile",
    "CutLine",
    "Expected",
    "HashingReader",
    "LineBatches",
    "always_lines",
    "describe_read_error",
    "duckdb_path",
    "expand_paths",
    "file_content_hash",
    "file_id",
    "file_layout",
    "json_error_at",
    "line_batch",
    "locate_big_element",
    "locate_json_error",
    "open_binary",
    "open_expected",
    "raw_position",
    "sniff_layout",
    "special_file_kind",
    "store_file_ids",
]

# A UTF-8 byte order mark: dropped at the start of a file (Windows tools write one), an error
# anywhere else.
BOM: Final = b"\xef\xbb\xbf"

_SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")

# `-` as a path: NDJSON read from standard input (streamed, like a large file).
STDIN: Final = Path("-")
STDIN_ORIGIN: Final = "<stdin>"
# Names that mean another file in every process (`<(...)` is /dev/fd/63, `/dev/stdin`): what
# they name is read once, never again (in the writer that re-judges, /dev/fd/3 is the store).
PROCESS_RELATIVE: Final = re.compile(r"/dev/(fd/|std(in|out|err)$)|/proc/(self|thread-self|\d+)/")


def expand_paths(
    paths: Iterable[str | Path],
    *,
    on_error: Callable[[Path, OSError], None] | None = None,
    on_special: Callable[[Path, str], None] | None = None,
    on_outside: Callable[[Path, str], None] | None = None,
    pins: dict[Path, Expected] | None = None,
) -> list[Path]:
    """Return the files named by paths, folders (recursively) and globs, sorted and unique.

    In folders, files are taken by their suffix (`_SUFFIXES`, in any case). A folder that
    cannot be listed (permission denied) is passed to `on_error` with the error, and the others
    are still expanded; without `on_error` it raises InputError. A path that cannot be looked
    at is returned as it is, for the reader to report.

    Only a path named on its own is taken whatever it is. What a folder or a glob finds was not
    named, and may have been put there by anyone who can write to the folder:
    - only regular files are taken: opening a named pipe (FIFO), a socket or a device would
      block or never end, so each is passed to `on_special` with what it is (without it,
      InputError). Named on their own, they are returned (read as streams);
    - a symbolic link to a file or a folder (or a path through a linked folder) is followed
      only inside the folder scanned, or the folder a glob starts from (its part before the
      first wildcard), each real folder once: one leading elsewhere (`drop/passwd.ndjson ->
      /etc/passwd`, `drop/archive -> ../archive`) is passed to `on_outside` with why, naming
      where it leads (without it, InputError). Named on their own, links are followed.

    Each file found by a folder scan or a glob is put in `pins` (when given) with what it was
    when found (`Expected`): its reader opens it with `open_expected`, which refuses it if it
    has been swapped since (for a link, another file or a folder on its way).
    """
    found: list[Path] = []
    pinned: dict[Path, Expected] = {} if pins is None else pins

    def unlisted(exc: OSError) -> None:
        folder = Path(exc.filename) if exc.filename else Path(".")
        if on_error is None:
            raise InputError(
                f"{path_text(folder)}: cannot list the folder: {describe_read_error(exc)}"
            )
        on_error(folder, exc)

    def special(path: Path, what: str) -> None:
        if on_special is None:
            raise InputError(f"{path_text(path)}: {what}, not a file: not read")
        on_special(path, what)

    def outside(path: Path, why: str) -> None:
        if on_outside is None:
            raise InputError(f"{path_text(path)}: {why}")
        on_outside(path, why)

    for raw in paths:
        text = str(raw)
        if text == "-":
            found.append(STDIN)
            continue
        if not glob.has_magic(text):
            path = Path(text)
            try:
                folder = path.is_dir()
            except OSError:  # e.g. inside a folder that cannot be searched: the reader says why
                folder = False
            if folder:
                root = _Root(path, "folder")
                found.extend(_folder_files(path, root, unlisted, special, outside, pinned))
            else:
                found.append(path)  # named on its own: whatever it is, wherever it leads
            continue
        matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
        if not matches:
            raise InputError(f"{path_text(text)}: no file matches this pattern")
        root = _Root(_glob_base(text), "glob's folder")
        for path in matches:
            if (why := root.escape(path, always=True)) is not None:
                outside(path, why)
                continue
            try:
                folder = path.is_dir()
            except OSError:
                folder = False
            if folder:
                found.extend(_folder_files(path, root, unlisted, special, outside, pinned))
            elif (what := special_file_kind(path)) is not None:
                special(path, what)
            else:
                root.pin(path, pinned)
                found.append(path)
    return list(dict.fromkeys(found))


def _glob_base(pattern: str) -> Path:
    """The folder a glob pattern starts from: its parts before the first one with a wildcard."""
    parts = Path(pattern).parts
    base: list[str] = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


class _Root:
    """The folder a scan or a glob was given: what it finds may lead only inside it."""

    def __init__(self, folder: Path, what: str) -> None:
        self.folder = folder
        self.what = what
        self.real = os.path.realpath(folder)

    def holds(self, real: str) -> bool:
        """Whether the real path `real` is inside the root."""
        return real == self.real or real.startswith(self.real.rstrip(os.sep) + os.sep)

    def pin(self, path: Path, pins: dict[Path, Expected]) -> None:
        """Record what `path` (a file found, judged inside) is now, for its reader to check."""
        real = os.path.realpath(path)
        try:
            info = os.stat(real, follow_symlinks=False)
        except OSError:  # its reader says why (opening it now would be a change)
            pins[path] = Expected(real, None)
            return
        same = stat.S_ISREG(info.st_mode) and self.holds(real) and os.path.realpath(path) == real
        pins[path] = Expected(real, (info.st_dev, info.st_ino) if same else None)

    def escape(self, path: Path, *, always: bool = False, kind: str = "file") -> str | None:
        """Why `path` (a `kind`: file or folder) leads outside the root (None when it does not).

        Only a symbolic link is looked at unless `always` (a glob's matches may pass through a
        linked folder; a folder scan reaches a linked folder only through its link)."""
        if not always and not os.path.islink(path):
            return None
        target = os.path.realpath(path)
        if self.holds(target):
            return None
        how = "a symbolic link" if os.path.islink(path) else "reached through a symbolic link"
        return (
            f"{how} to {path_text(target)}, outside the {self.what} {path_text(self.folder)}:"
            " not read (a link found in a folder or by a glob is followed only inside it; name"
            f" the {kind} itself to read it)"
        )


def _folder_files(
    folder: Path,
    root: _Root,
    unlisted: Callable[[OSError], None],
    special: Callable[[Path, str], None],
    outside: Callable[[Path, str], None],
    pins: dict[Path, Expected],
) -> list[Path]:
    """The files in `folder` and its subfolders. A linked subfolder is followed when it leads
    inside `root` (each real folder once: a link back up ends no loop) and refused by name when
    it leads elsewhere, as a linked file is."""
    files: list[Path] = []
    seen: set[tuple[int, int]] = set()
    pending = [folder]
    while pending:
        where = pending.pop()
        try:
            info = os.stat(where)
            with os.scandir(where) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            unlisted(exc)
            continue
        if (info.st_dev, info.st_ino) in seen:
            continue  # already read, by another name (a link to it inside the folder)
        seen.add((info.st_dev, info.st_ino))
        subfolders: list[Path] = []
        for entry in entries:
            path = Path(where, entry.name)
            try:
                is_folder = entry.is_dir()  # through a link too
            except OSError:
                is_folder = False
            if is_folder:
                if (why := root.escape(path, kind="folder")) is not None:
                    outside(path, why)
                else:
                    subfolders.append(path)
                continue
            if not entry.name.lower().endswith(_SUFFIXES):
                continue
            if (why := root.escape(path)) is not None:
                outside(path, why)
            elif (what := special_file_kind(path)) is not None:
                special(path, what)
            else:
                root.pin(path, pins)
                files.append(path)
        pending.extend(reversed(subfolders))
    return sorted(files)


def special_file_kind(path: Path) -> str | None:
    """What `path` is when it is neither a regular file nor a folder ("a named pipe (FIFO)",
    ...); None for a file, a folder or a path that cannot be looked at (its reader says why)."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    for test, what in (
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return what
    return "not a regular file"


class HashingReader:
    """Reads a binary stream and hashes what it read (the file's content hash)."""

    def __init__(self, raw: _Reader, *, head: bytes = b"") -> None:
        self._raw = raw
        self._head = head  # the stream's first bytes, when they were read already (to sniff)
        self.hash = hashlib.sha256()

    def read(self, n: int) -> bytes:
        if self._head:
            data, self._head = self._head[:n], self._head[n:]
        else:
            data = self._raw.read(n)
        self.hash.update(data)
        return data


class _Reader(Protocol):
    def read(self, n: int, /) -> bytes: ...


_LINES_SCHEMA = pa.schema(
    [("raw", pa.string_view()), ("raw_bytes", pa.binary()), ("origin_line", pa.int64())]
)


@dataclass(frozen=True, slots=True)
class CutLine:
    """A line over the record size limit, cut at the limit while it was read."""

    line: int  # its line number (`origin_line`)
    length: int  # its length in bytes, without the line break
    kept: int  # the bytes kept of it (the reject's raw)


@dataclass(slots=True)
class _LongLine:
    prefix: bytes  # its first bytes (just over the limit)
    length: int  # the bytes read of it so far
    last: int  # its last byte read (a carriage return before the newline is no part of it)


class LineBatches:
    """The lines of an NDJSON stream as Arrow batches, for the store to normalise in place.

    Splitting is vectorised (numpy finds the newlines, the lines are views into the chunk
    read), so no Python object is made per line. A chunk that is not valid UTF-8 falls back to
    line-by-line decoding, where the bad lines keep their bytes. A read error is kept in
    `error` (DuckDB only sees that the stream failed) for the caller to report.

    A line carried over reads is held only up to `max_line_bytes` (a line within one read is
    held whole: it is at most `chunk_bytes`). Past that its bytes are counted and dropped up
    to the next newline, so a line of any length (a whole export on one line, a
    gzip bomb) takes bounded memory. It still gives a record just over the limit, whose raw
    bytes are its first `max_line_bytes` (so the normaliser rejects it as too large), and is
    listed in `cut` for the caller to say so.
    """

    def __init__(
        self,
        stream: _Reader,
        *,
        chunk_bytes: int,
        on_read: Callable[[], None],
        max_line_bytes: int | None = None,
    ) -> None:
        self._stream = stream
        self._chunk_bytes = chunk_bytes
        self._on_read = on_read
        self._max_line_bytes = max_line_bytes
        self.error: BaseException | None = None
        self.cut: list[CutLine] = []

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(_LINES_SCHEMA, self._batches())

    def _batches(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from self._split()
        except BaseException as exc:
            self.error = exc
            raise

    def _split(self) -> Iterator[pa.RecordBatch]:
        line_no = 0
        carry: list[bytes] = []  # the start of the line cut by the reads (joined once)
        carried = 0
        long: _LongLine | None = None  # a line over the limit, being skipped to its end
        start = True
        limit = self._max_line_bytes
        while True:
            data = self._stream.read(self._chunk_bytes)
            self._on_read()
            if not data:
                break
            if start:  # a byte order mark at the start of the file is not part of a record
                data, start = data.removeprefix(BOM), False
            if long is not None:
                end = data.find(b"\n")
                if end < 0:
                    long.length, long.last = long.length + len(data), data[-1]
                    continue
                if end:
                    long.length, long.last = long.length + end, data[end - 1]
                line_no += 1
                yield self._cut_line(long, line_no)
                long, data = None, data[end + 1 :]
            cut = data.rfind(b"\n")
            if cut < 0:
                carry.append(data)
                carried += len(data)
            else:
                first = data.find(b"\n")
                # The line cut by the previous read, then the whole lines of this one.
                head, body = b"".join([*carry, data[: first + 1]]), data[first + 1 : cut + 1]
                if limit is not None and carried and len(head) - 1 - head.endswith(b"\r\n") > limit:
                    # Carried over reads past the limit, then ended in this read: cut too.
                    line_no += 1
                    yield self._cut_line(
                        _LongLine(head[: limit + 1], len(head) - 1, head[-2]), line_no
                    )
                    head = b""
                carry = [data[cut + 1 :]]
                carried = len(carry[0])
                for block in (head, body):
                    if block:
                        batch, line_no = line_batch(block, line_no)
                        yield batch
            if limit is not None and carried > limit:  # stop holding it: skip to its end
                rest = b"".join(carry)
                long = _LongLine(prefix=rest[: limit + 1], length=len(rest), last=rest[-1])
                carry, carried = [], 0
        if long is not None:
            yield self._cut_line(long, line_no + 1)
        elif carried and (rest := b"".join(carry)).strip():
            batch, line_no = line_batch(rest + b"\n", line_no)
            yield batch

    def _cut_line(self, long: _LongLine, line: int) -> pa.RecordBatch:
        """Return the record of a line cut at the limit: just over it, so a `too_large` reject
        (however its first bytes decode), with the first `max_line_bytes` as its raw bytes."""
        length = long.length - (long.last == 13)  # without a carriage return before the newline
        kept = long.prefix[: self._max_line_bytes]
        self.cut.append(CutLine(line=line, length=length, kept=len(kept)))
        return pa.RecordBatch.from_pydict(
            {
                "raw": [long.prefix.decode("utf-8", "replace")],
                "raw_bytes": [kept],
                "origin_line": [line],
            },
            schema=_LINES_SCHEMA,
        )


def line_batch(block: bytes, first_line: int) -> tuple[pa.RecordBatch, int]:
    """Return the lines of `block` (which ends with a newline) and the last line number."""
    if not block.isascii():
        try:
            block.decode("utf-8")
        except UnicodeDecodeError:
            return _decoded_lines(block, first_line)
    ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
    n = len(ends)
    offsets = np.empty(n + 1, np.int64)
    offsets[0] = 0
    offsets[1:] = ends + 1
    lines = pl.Series(
        "raw", pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(block))
    ).str.head(-1)  # views into the block, without the newline
    frame = pl.DataFrame(
        {"raw": lines, "origin_line": pl.int_range(first_line + 1, first_line + n + 1, eager=True)}
    ).filter(pl.col("raw").str.len_bytes() > 0)  # empty lines are not records
    if frame.height and frame.get_column("raw").str.ends_with("\r").any():
        frame = frame.with_columns(
            raw=pl.when(pl.col("raw").str.ends_with("\r"))
            .then(pl.col("raw").str.head(-1))
            .otherwise(pl.col("raw"))
        )
    return _as_batch(_records_only(frame).with_columns(raw_bytes=pl.lit(None, pl.Binary))), (
        first_line + n
    )


def _records_only(frame: pl.DataFrame) -> pl.DataFrame:
    """Drop the lines of only whitespace (spaces, tabs, a carriage return): not records."""
    raw = frame.get_column("raw")
    other = ~raw.str.starts_with("{")  # almost every record starts with a brace
    if not other.any():
        return frame
    return frame.filter(raw.is_null() | ~other | raw.str.contains(r"[^ \t\r]"))


def _decoded_lines(block: bytes, first_line: int) -> tuple[pa.RecordBatch, int]:
    """Return the lines of a block that is not all UTF-8: bad lines keep only their bytes."""
    parts = block.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    texts: list[str | None] = []
    raw_bytes: list[bytes | None] = []
    for part in parts:
        try:
            texts.append(part.decode("utf-8"))
            raw_bytes.append(None)
        except UnicodeDecodeError:
            texts.append(None)
            raw_bytes.append(part)
    n = len(parts)
    frame = pl.DataFrame(
        {
            "raw": pl.Series(texts, dtype=pl.String).str.strip_suffix("\r"),
            "raw_bytes": pl.Series(raw_bytes, dtype=pl.Binary),
            "origin_line": pl.int_range(first_line + 1, first_line + n + 1, eager=True),
        }
    )
    return _as_batch(_records_only(frame)), first_line + n


def _as_batch(frame: pl.DataFrame) -> pa.RecordBatch:
    """Return a frame of lines as one Arrow batch of _LINES_SCHEMA (views into its buffers)."""
    table = frame.select("raw", "raw_bytes", "origin_line").to_arrow(
        compat_level=pl.CompatLevel.newest()
    )
    return (
        pa.RecordBatch.from_pylist([], schema=_LINES_SCHEMA)
        if not table.num_rows
        else (table.cast(_LINES_SCHEMA).combine_chunks().to_batches()[0])
    )


def file_layout(path: Path, expected: Expected | None = None) -> str:
    """How a file holds its records: "lines" (NDJSON), "array" or "documents".

    `.jsonl`/`.ndjson` (gzip-compressed or not) are line-delimited whatever their first line
    is (a line `[1]` is a record that is not an object); other files are sniffed (`sniff_layout`).
    """
    if always_lines(path):
        return "lines"
    with open_binary(path, expected) as fh:
        return sniff_layout(fh.read(4096))


def always_lines(path: Path) -> bool:
    name = path.name.lower()  # suffixes in any case: `.JSONL`, `.ndjson.GZ`
    return path == STDIN or name.removesuffix(".gz").endswith((".jsonl", ".ndjson"))


def sniff_layout(head: bytes) -> str:
    """The layout of a file from its first bytes: an array; pretty-printed documents (a first
    line that is a lone `{`, or an indented second line: what `jq` or `json.dumps(...,
    indent=2)` write); anything else is read as lines."""
    head = head.removeprefix(BOM).lstrip()
    if head.startswith(b"["):
        return "array"
    first, _, rest = head.partition(b"\n")
    if head.startswith(b"{") and (first.strip() == b"{" or rest.startswith((b" ", b"\t"))):
        return "documents"
    return "lines"


@dataclass(frozen=True, slots=True)
class Expected:
    """What a file found by a folder scan or a glob was when it was found: its real path (a
    link's target, judged inside the folder) and identity (st_dev, st_ino; None when it could
    not be looked at, or was no regular file). Its reader opens the real path, never following
    a link there, and checks the identity (`open_expected`)."""

    real: str
    identity: tuple[int, int] | None


class ChangedFile(InputError):
    """A file found by a folder scan or a glob is no longer what it was when found."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"{path_text(path)}: changed since the folder was read (now a link or another"
            " file): not read"
        )


def open_expected(path: Path, expected: Expected) -> int:
    """Open the file found as `path` and return its descriptor, refusing it (ChangedFile)
    unless it is still the file `expected` describes.

    Whoever can write the folder may swap the file, or a folder on its way, for a link to
    another file (or a pipe) after it was found: the real path is opened without following a
    link at its end and without blocking (a pipe swapped in would wait for a writer), and the
    file opened must be the one found (a folder swapped for a link leads to another file).
    """
    flags = (
        os.O_RDONLY
        | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_NONBLOCK", 0)
        | getattr(os, "O_NOCTTY", 0)
        | getattr(os, "O_CLOEXEC", 0)
    )
    try:
        fd = os.open(expected.real, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link now
            raise ChangedFile(path) from None
        raise
    try:
        info = os.fstat(fd)
        if (
            expected.identity is None
            or (info.st_dev, info.st_ino) != expected.identity
            or not stat.S_ISREG(info.st_mode)
        ):
            raise ChangedFile(path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _OwnGzip(gzip.GzipFile):
    """A gzip reader of a file object it closes with itself."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._own = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._own.close()


def open_binary(path: Path, expected: Expected | None = None) -> IO[bytes]:
    """Open `path` to read (decompressed when its name ends in `.gz`); a file found by a folder
    scan or a glob (`expected`) is opened by `open_expected` and read from that descriptor."""
    if path == STDIN:  # left open when the reader is closed
        return open(sys.stdin.fileno(), "rb", closefd=False)
    gz = path.name.lower().endswith(".gz")
    if expected is not None:
        raw = os.fdopen(open_expected(path, expected), "rb")
        return cast(IO[bytes], _OwnGzip(raw)) if gz else raw
    if gz:
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


@contextlib.contextmanager
def duckdb_path(path: Path, expected: Expected | None = None) -> Iterator[str]:
    """Yield a name DuckDB can open `path` by.

    DuckDB takes a file name as UTF-8 text; a name that is not UTF-8 (Latin-1 bytes, held by
    Python as surrogate escapes) is reached through a symbolic link of a plain name in a
    temporary folder (a copy where links cannot be made), keeping `.gz` for DuckDB to see.
    A file found by a folder scan or a glob (`expected`) is opened by `open_expected` first,
    and DuckDB reads that descriptor (`/proc/self/fd/N`, linked so; a copy where there is no
    such name), never the name again.
    """
    if expected is not None:
        with _descriptor_path(path, expected) as name:
            yield name
        return
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        yield name
        return
    with tempfile.TemporaryDirectory(prefix="asg-audit-") as folder:
        link = Path(folder, "file.json.gz" if path.name.lower().endswith(".gz") else "file.json")
        try:
            os.symlink(os.path.abspath(path), link)
        except OSError:
            shutil.copyfile(path, link)
        yield str(link)


@contextlib.contextmanager
def _descriptor_path(path: Path, expected: Expected) -> Iterator[str]:
    fd = open_expected(path, expected)
    try:
        with tempfile.TemporaryDirectory(prefix="asg-audit-") as folder:
            gz = path.name.lower().endswith(".gz")
            link = Path(folder, "file.json.gz" if gz else "file.json")
            held = f"/proc/self/fd/{fd}"
            try:
                if not os.path.isfile(held):
                    raise OSError(errno.ENOENT, "no /proc/self/fd", held)
                os.symlink(held, link)
            except OSError:
                with os.fdopen(os.dup(fd), "rb") as src, link.open("wb") as out:
                    shutil.copyfileobj(src, out, 8 * 1024 * 1024)
            yield str(link)
    finally:
        os.close(fd)


def raw_position(fh: IO[bytes]) -> int:
    inner = getattr(fh, "fileobj", None)  # gzip: progress in compressed bytes
    try:
        return int((inner or fh).tell())
    except (OSError, ValueError):
        return 0


def describe_read_error(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "truncated compressed file (ended before the end-of-stream marker); nothing stored"
    if isinstance(exc, gzip.BadGzipFile | zlib.error):
        return f"corrupt gzip data ({exc}); nothing stored"
    if isinstance(exc, PermissionError):
        return "permission denied; nothing stored"
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a folder"
    strerror = getattr(exc, "strerror", None)
    return f"cannot read: {strerror or exc}; nothing stored"


def file_content_hash(path: Path, expected: Expected | None = None) -> str:
    # The hash of the content (decompressed), as the line reader computes it for NDJSON.
    h = hashlib.sha256()
    with open_binary(path, expected) as fh:
        while chunk := fh.read(8 * 1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


# Files up to this size are scanned again to say where their JSON breaks.
_LOCATE_MAX_BYTES: Final = 256 * 1024 * 1024


def locate_json_error(path: Path, layout: str, expected: Expected | None = None) -> str | None:
    """Where a JSON array ("array") or a file of JSON documents ("documents") breaks:
    "<reason>: line L, column C" (and the document's number), in the file's own lines.

    None when Python's parser finds no error, or the file is too large to scan again (then
    DuckDB's own message stands: its byte offset counts from the start of the document).
    Nesting of any depth is followed (`json_error_at`): no recursion limit stops it.
    """
    try:
        with open_binary(path, expected) as fh:
            data = fh.read(_LOCATE_MAX_BYTES + 1)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile):
        return None
    if len(data) > _LOCATE_MAX_BYTES:
        return None
    bad_at: int | None = None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        bad_at = bad.start
    text = data.decode("utf-8", "replace").removeprefix("\ufeff")
    found = json_error_at(text, layout)
    if bad_at is not None:
        # a JSON error before the byte that is not UTF-8 comes first (review); else that byte:
        # DuckDB's own words count the value from 0 and the byte from the value's start
        # (tester T7: "at byte 15 in record/value 2" of the first element)
        before = len(data[:bad_at].decode("utf-8", "replace").removeprefix("\ufeff"))
        if found is None or found[0].pos >= before:
            return _bad_utf8_at(data, bad_at, layout)
    if found is None:
        return None
    exc, number = found
    where = f"{exc.msg.lower()}: line {exc.lineno}, column {exc.colno}"
    return where if layout == "array" else f"{where} (document {number})"


def _bad_utf8_at(data: bytes, start: int, layout: str) -> str:
    """Return where the first byte that is not UTF-8 is: "invalid UTF-8 (byte 0xff): line L,
    column C" (the column in characters of the line before it), and for documents the one it
    is in."""
    line_start = data.rfind(b"\n", 0, start) + 1
    column = len(data[line_start:start].decode("utf-8", "replace")) + 1
    line = data.count(b"\n", 0, start) + 1
    where = f"invalid UTF-8 (byte 0x{data[start]:02x}): line {line}, column {column}"
    if layout == "array":
        return where
    # the text before it, cut there: an unclosed `[` added breaks the document it is in
    before = data[:start].decode("utf-8", "replace").removeprefix("\ufeff")
    found = json_error_at(before + "[", layout)
    return where if found is None else f"{where} (document {found[1]})"


def json_error_at(
    text: str, layout: str, *, retry_levels: int = 256
) -> tuple[json.JSONDecodeError, int] | None:
    """The error Python's `json` reports for `text` read as one JSON value ("array") or as
    JSON values one after another ("documents"), and the number of the value it is in; None
    when there is none.

    The same error and position as `json.loads` (or `raw_decode`, document by document), but
    at any depth: a value is read by the C parser, and a container too deep for it (a
    RecursionError) is followed by hand, with an explicit stack, trying the C parser again on
    the values `retry_levels` further down.
    """
    pos, n, number = _ws_end(text, 0), len(text), 0
    try:
        if layout == "array":
            number = 1
            end = _ws_end(text, _scan_value(text, pos, retry_levels))
            return None if end == n else (json.JSONDecodeError("Extra data", text, end), number)
        while pos < n:
            number += 1
            pos = _ws_end(text, _scan_value(text, pos, retry_levels))
    except json.JSONDecodeError as exc:
        return exc, number
    return None


_WS: Final = re.compile(r"[ \t\n\r]*")  # JSON's whitespace
# json.loads's own parser (the C one): the same errors, at the same places.
_SCAN: Final = json.scanner.make_scanner(cast(Any, json.JSONDecoder()))
_OPEN: Final = {"[": "]", "{": "}"}


def _ws_end(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    return pos if match is None else match.end()


def _scan_one(text: str, pos: int) -> int:
    """The end of the value at `pos`, read by the C parser (RecursionError when too deep)."""
    try:
        return int(_SCAN(text, pos)[1])
    except StopIteration as stop:
        raise json.JSONDecodeError("Expecting value", text, stop.value) from None


def _scan_value(text: str, pos: int, retry_levels: int) -> int:
    """The end of the JSON value at `pos`; JSONDecodeError (as `json` words it) if it breaks."""
    try:
        return _scan_one(text, pos)
    except RecursionError:
        pass
    # Too deep for the C parser: follow its containers by hand. `closers` holds what closes
    # each open container; `failed`, the depths at which the C parser ran out of recursion (it
    # is tried again only `retry_levels` below the last of them, so as not to fail at each).
    closers: list[str] = []
    failed: list[int] = []
    expect = "value"  # or "key" (an object's member) or "next" (`,` or the closer)
    while True:
        if expect == "value":
            opener = text[pos : pos + 1]
            if opener not in _OPEN:
                pos, expect = _scan_one(text, pos), "next"
            else:
                if closers and (not failed or len(closers) - failed[-1] >= retry_levels):
                    try:
                        pos, expect = _scan_one(text, pos), "next"
                    except RecursionError:
                        failed.append(len(closers))
                    else:
                        continue
                elif not closers:
                    failed.append(0)  # the value itself: the C parser failed on it above
                closer = _OPEN[opener]
                pos = _ws_end(text, pos + 1)
                if text[pos : pos + 1] == closer:  # empty
                    pos += 1
                    if failed and failed[-1] == len(closers):
                        failed.pop()
                    expect = "next"
                else:
                    closers.append(closer)
                    expect = "key" if closer == "}" else "value"
            continue
        if expect == "key":
            if text[pos : pos + 1] != '"':
                raise json.JSONDecodeError(
                    "Expecting property name enclosed in double quotes", text, pos
                )
            pos = _ws_end(text, _scanstring(text, pos + 1, True)[1])
            if text[pos : pos + 1] != ":":
                raise json.JSONDecodeError("Expecting ':' delimiter", text, pos)
            pos, expect = _ws_end(text, pos + 1), "value"
            continue
        # after a value
        if not closers:
            return pos
        pos = _ws_end(text, pos)
        char = text[pos : pos + 1]
        if char == closers[-1]:
            pos += 1
            closers.pop()
            if failed and failed[-1] == len(closers):
                failed.pop()
        elif char == ",":
            pos = _ws_end(text, pos + 1)
            expect = "key" if closers[-1] == "}" else "value"
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)


@dataclass(frozen=True, slots=True)
class BigElement:
    """An element of a JSON array (or a JSON document of a file of them) over a size."""

    number: int  # its number in the file (its `origin_line`)
    line: int  # where it starts, in the file's own lines
    column: int
    size: int  # its length in bytes


# What the scanner stops at: structure, strings, escapes, line breaks.
_JSON_MARKS: Final = re.compile(rb'[][{}"\\\n]')


def locate_big_element(
    path: Path, layout: str, limit: int, expected: Expected | None = None
) -> BigElement | None:
    """The first element of a JSON array ("array"), or document of a file of JSON documents
    ("documents"), longer than `limit` bytes; None when there is none.

    The file is streamed once (bounded memory, whatever its size), following only brackets,
    braces and strings; a scalar document outside them is not measured.
    """
    top = 1 if layout == "array" else 0  # the depth of an element
    depth, number, line, line_at, offset = 0, 0, 1, 0, 0
    in_string, skip_to = False, -1  # skip_to: the byte after a backslash is escaped
    start: tuple[int, int, int] | None = None  # offset, line, column of the current element
    with open_binary(path, expected) as fh:
        first = True
        while chunk := fh.read(8 * 1024 * 1024):
            if first and chunk.startswith(BOM):
                offset, line_at = -len(BOM), -len(BOM)
            first = False
            for mark in _JSON_MARKS.finditer(chunk):
                pos = offset + mark.start()
                if pos < skip_to:
                    continue
                c = chunk[mark.start()]
                if c == 10:  # \n
                    line, line_at = line + 1, pos + 1
                elif in_string:
                    if c == 92:  # \\
                        skip_to = pos + 2
                    elif c == 34:  # "
                        in_string = False
                        if depth == top and start is not None:  # a string element ends
                            if (found := _over(start, pos, number, limit)) is not None:
                                return found
                            start = None
                elif c == 34:
                    in_string = True
                    if depth == top:
                        number += 1
                        start = (pos, line, pos - line_at + 1)
                elif c in b"[{":
                    if depth == top:
                        number += 1
                        start = (pos, line, pos - line_at + 1)
                    depth += 1
                else:  # ] or }
                    depth -= 1
                    if depth == top and start is not None:
                        if (found := _over(start, pos, number, limit)) is not None:
                            return found
                        start = None
            offset += len(chunk)
    return None


def _over(start: tuple[int, int, int], end: int, number: int, limit: int) -> BigElement | None:
    at, line, column = start
    size = end - at + 1
    return BigElement(number, line, column, size) if size > limit else None


def file_id(path: Path) -> tuple[int, int] | None:
    """Return a file's identity (device, inode), or None when it cannot be looked at."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def store_file_ids(db: Path) -> set[tuple[int, int]]:
    """Return the identities of the store's file and its write-ahead log (those that exist).

    Nothing in a process that holds the store may open these from Python: closing the handle
    would drop the store's lock (POSIX locks belong to the process and the file).
    """
    ids = {file_id(db)}
    if db.name:  # `.`, `/` (and `--db ""`, which is `.`) name a folder: no log beside it
        ids.add(file_id(db.with_name(db.name + ".wal")))
    return {i for i in ids if i is not None}
