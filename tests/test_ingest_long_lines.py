"""Lines longer than the record size limit: a whole export on one line, a gzip bomb.

Such a line is cut at the limit while it is read (its bytes are counted, not held), becomes a
`too_large` reject that says it was cut and how long it was, and the lines after it are read
as usual; memory stays bounded whatever the line's length. DuckDB running out of memory on a
file fails that file only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import duckdb

from asg_audit.ingest_files import ingest_paths
from asg_audit.normalize import DEFAULT_MAX_RECORD_BYTES
from asg_audit.store import open_store

LIMIT = DEFAULT_MAX_RECORD_BYTES


def rec(task_id: str) -> bytes:
    return json.dumps({"task_id": task_id, "status": "pending"}).encode()


def rejects(db: Path) -> list[tuple[object, ...]]:
    with open_store(db, read_only=True) as store:
        return store.con.execute(
            "SELECT origin_line, reason, detail, raw FROM rejects ORDER BY origin_line"
        ).fetchall()


def stored_lines(db: Path) -> list[tuple[object, ...]]:
    with open_store(db, read_only=True) as store:
        return store.con.execute(
            "SELECT task_id, origin_line FROM observations ORDER BY origin_line"
        ).fetchall()


def test_ingest_long_line_in_a_gzip_bomb_is_a_cut_reject_in_bounded_memory(tmp_path: Path) -> None:
    # 256 MiB of one line in a gzip of a few hundred KB: the old reader grew a carry of the
    # whole line (quadratically copied) and handed it to DuckDB, which ran out of memory.
    length = 256 << 20
    path = tmp_path / "bomb.jsonl.gz"
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    with path.open("wb") as out:
        out.write(packer.compress(rec("before") + b"\n"))
        for _ in range(length >> 20):
            out.write(packer.compress(b"x" * (1 << 20)))
        out.write(packer.compress(b"\r\n" + rec("after") + b"\n"))
        out.write(packer.flush())
    db = tmp_path / "audit.duckdb"
    # Peak RSS of the CLI alone: measured in a fresh process that only runs it.
    probe = textwrap.dedent(
        """
        import resource, subprocess, sys
        done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(done.returncode, peak, repr(done.stdout), repr(done.stderr))
        """
    )
    cli = [sys.executable, "-m", "asg_audit", "ingest", "--db", str(db), "--quiet", str(path)]
    out = subprocess.run(
        [sys.executable, "-c", probe, *cli], capture_output=True, text=True, check=True
    ).stdout
    rc, peak_kib, stdout, stderr = out.split(" ", 3)
    assert rc == "0", (stdout, stderr)
    assert int(peak_kib) < 700 * 1024  # KiB; the line alone is 256 MiB
    assert stored_lines(db) == [("before", 1), ("after", 3)]
    [(line, reason, detail, raw)] = rejects(db)
    assert (line, reason) == (2, "too_large")
    assert detail == (
        f"record of {length} bytes is over the limit of {LIMIT}; cut at the limit while"
        f" reading: its raw holds its first {LIMIT} bytes"
    )
    assert raw == b"x" * LIMIT


def test_ingest_line_cut_across_reads_keeps_its_first_bytes_and_line_numbers(
    tmp_path: Path,
) -> None:
    # Small reads: the line spans many of them; its first bytes are not valid UTF-8 at the
    # cut, and it is still a too_large reject keeping those bytes as they were.
    head = b'{"task_id": "bigg", "label": "' + "é".encode() * (LIMIT // 2)
    path = tmp_path / "long.jsonl"
    path.write_bytes(
        rec("t1") + b"\n" + head + b'x"}\n' + rec("t3") + b"\n" + head  # no final newline
    )
    db = tmp_path / "audit.duckdb"
    summary = ingest_paths(db, [path], chunk_bytes=64 << 10)
    assert (summary.accepted, summary.rejected) == (2, 2)
    assert stored_lines(db) == [("t1", 1), ("t3", 3)]
    got = rejects(db)
    assert [(line, reason) for line, reason, _, _ in got] == [(2, "too_large"), (4, "too_large")]
    assert [raw for _, _, _, raw in got] == [head[:LIMIT], head[:LIMIT]]
    assert [detail for _, _, detail, _ in got] == [
        f"record of {n} bytes is over the limit of {LIMIT}; cut at the limit while reading:"
        f" its raw holds its first {LIMIT} bytes"
        for n in (len(head) + 3, len(head))
    ]


def test_ingest_line_at_the_limit_is_read_and_one_byte_more_is_too_large(tmp_path: Path) -> None:
    def padded(task_id: str, size: int) -> bytes:
        short = json.dumps({"task_id": task_id, "status": "pending", "note": ""}).encode()
        return short[:-2] + b"n" * (size - len(short)) + short[-2:]

    path = tmp_path / "edge.jsonl"
    path.write_bytes(padded("at", LIMIT) + b"\n" + padded("over", LIMIT + 1) + b"\n")
    db = tmp_path / "audit.duckdb"
    ingest_paths(db, [path], chunk_bytes=64 << 10)
    assert stored_lines(db) == [("at", 1)]
    [(line, reason, detail, _)] = rejects(db)
    assert (line, reason) == (2, "too_large")
    assert str(detail).startswith(f"record of {LIMIT + 1} bytes is over the limit of {LIMIT}")


def test_ingest_out_of_memory_fails_that_file_only_and_ends_the_run(tmp_path: Path) -> None:
    # DuckDB's memory cap lowered so that one file of 8 MB overflows it: that file fails by
    # name (no traceback), the files around it are stored, exit 2, the run is not `running`.
    small_a, small_c = tmp_path / "a.jsonl", tmp_path / "c.jsonl"
    small_a.write_bytes(rec("a1") + b"\n")
    small_c.write_bytes(rec("c1") + b"\n")
    big = tmp_path / "big.jsonl"
    pad = "x" * 80
    big.write_text(
        "".join(json.dumps({"task_id": f"b{i}", "status": "pending", "pad": pad}) + "\n"
                for i in range(60_000))
    )  # fmt: skip
    db = tmp_path / "audit.duckdb"
    run = textwrap.dedent(
        """
        import sys
        import asg_audit.ingest_files
        from asg_audit.cli import main
        asg_audit.ingest_files.DEFAULT_INGEST_MEMORY_LIMIT = "16MB"
        sys.exit(main(sys.argv[1:]))
        """
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            run,
            "ingest",
            "--db",
            str(db),
            str(small_a),
            str(big),
            str(small_c),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{big}: out of memory while storing it (Out of Memory Error" in done.stderr
    assert "nothing stored" in done.stderr
    assert stored_lines(db) == [("a1", 1), ("c1", 1)]
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT status FROM runs").fetchall() == [("failed",)]
        assert con.execute("SELECT count(*) FROM ingested_files").fetchall() == [(2,)]
    finally:
        con.close()
