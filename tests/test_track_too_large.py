"""`track`: a row over the record limit (1,000,000 bytes, as `ingest` takes) is a `too_large`
reject holding its first bytes, read in bounded memory (tester T5: one 200 MB row in a 200 KB
gzip took 2.2 GB and was stored whole); the rows around it are stored."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from asg_audit.errors import InputError
from asg_audit.normalize import DEFAULT_MAX_RECORD_BYTES
from asg_audit.track import track_file

_ROW = {
    "task_id": "tsk_1",
    "type": "image",
    "consensus_threshold": 2,
    "label_spec": {"options": ["a", "b"]},
    "created_at": "2026-10-01T00:00:00Z",
}
_BIG = 30 << 20
_PEAK = """
import sys, tracemalloc
from asg_audit.track import track_file
tracemalloc.start()
summary = track_file(sys.argv[1], sys.argv[2])
print(tracemalloc.get_traced_memory()[1], summary.new, summary.rejected)
"""


def _rejects(db: Path) -> list[tuple[int, str, str, int]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return [
            (int(line), reason, detail, int(size))
            for line, reason, detail, size in con.execute(
                "SELECT origin_line, reason, detail, octet_length(raw) FROM rejects"
            ).fetchall()
        ]


def test_an_ndjson_row_over_the_limit_is_cut_in_bounded_memory(tmp_path: Path) -> None:
    export = tmp_path / "subs.ndjson.gz"
    big = b'{"task_id":"tsk_2","pad":"' + b"x" * _BIG + b'"}'
    with gzip.open(export, "wb", compresslevel=1) as fh:
        fh.write(json.dumps(_ROW).encode() + b"\n" + big + b"\r\n")
        fh.write(json.dumps({**_ROW, "task_id": "tsk_3"}).encode() + b"\n")
    db = tmp_path / "s.duckdb"
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, str(db), str(export)],
        capture_output=True,
        text=True,
        check=True,
    )
    peak, new, rejected = (int(v) for v in done.stdout.split())
    assert (new, rejected) == (2, 1)
    assert peak < 12 << 20, f"peak {peak:,} bytes of Python memory for a {_BIG:,}-byte row"
    [(line, reason, detail, size)] = _rejects(db)
    assert (line, reason, size) == (2, "too_large", DEFAULT_MAX_RECORD_BYTES)
    assert f"record of {len(big)} bytes is over the limit of 1000000" in detail


def test_a_csv_row_over_the_limit_is_a_too_large_reject(tmp_path: Path) -> None:
    export = tmp_path / "subs.csv"
    cell = b"y" * (DEFAULT_MAX_RECORD_BYTES + 10)
    export.write_bytes(
        b"task_id,task_type,consensus_threshold,options,created_at\n"
        b"tsk_1,image,2,a|b,2026-10-01T00:00:00Z\n"
        b"tsk_2,image,2," + cell + b",2026-10-01T00:00:00Z\n"
        b"tsk_3,image,2,a|b,2026-10-01T00:00:00Z\n"
    )
    db = tmp_path / "s.duckdb"
    summary = track_file(db, export)
    assert (summary.new, summary.rejected) == (2, 1)
    [(line, reason, detail, size)] = _rejects(db)
    assert (line, reason, size) == (3, "too_large", DEFAULT_MAX_RECORD_BYTES)
    assert f"record of {len(cell) + 35} bytes" in detail
    assert summary.errors == [f"{export}:3: {detail}"]


def test_a_csv_header_over_the_limit_stores_nothing(tmp_path: Path) -> None:
    export = tmp_path / "subs.csv"
    export.write_bytes(b"task_id," + b"z" * DEFAULT_MAX_RECORD_BYTES + b"\ntsk_1\n")
    db = tmp_path / "s.duckdb"
    with pytest.raises(InputError, match=r"subs\.csv:1: the header: record of 1000008 bytes"):
        track_file(db, export)


def test_a_csv_line_over_the_limit_inside_a_quoted_field_keeps_the_rows_after_it(
    tmp_path: Path,
) -> None:
    # review R2: the cut line was given to the CSV reader as an empty line, losing the quote it
    # opened, so the field's closing quote opened a new one that swallowed the rest of the file
    export = tmp_path / "subs.csv"
    export.write_bytes(
        b"task_id,task_type,consensus_threshold,options,created_at\n"
        b"tsk_1,image,2,a|b,2026-10-01T00:00:00Z\n"
        b'tsk_2,image,2,"' + b"y" * (DEFAULT_MAX_RECORD_BYTES + 100) + b"\n"
        b'",2026-10-01T00:00:00Z\n'
        b"tsk_3,image,2,a|b,2026-10-01T00:00:00Z\n"
        b"tsk_4,image,2,a|b,2026-10-01T00:00:00Z\n"
    )
    db = tmp_path / "s.duckdb"
    summary = track_file(db, export)
    assert (summary.new, summary.rejected) == (3, 1), summary.errors
    [(line, reason, _, _)] = _rejects(db)
    assert (line, reason) == (3, "too_large")
