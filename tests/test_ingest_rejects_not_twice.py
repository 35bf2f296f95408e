"""A file's rejects are not stored twice when the file is read again grown (an export appended
to): tester T4 found `rejects` holding one row per run for the same line of the same file,
while the file's good records were counted as duplicates (`track` already kept its rejects once)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _records import settled_record

import asg_audit
from asg_audit.ingest_files import SMALL_FILE_BYTES
from asg_audit.store import open_store


def _record(i: int) -> str:
    return json.dumps(settled_record(f"t{i}", bsv_txid=f"{i:064x}"))


@pytest.mark.parametrize("big", [False, True], ids=["small file", "file over 1 MiB"])
def test_a_grown_file_read_again_keeps_its_rejects_once(tmp_path: Path, big: bool) -> None:
    n = 6_000 if big else 3
    lines = [_record(i) for i in range(n)]
    lines[1] = '{"task_id": "broken'  # invalid_json
    lines.append('{"task_id": "neg", "status": "settled", "total_cost_sats": -5}')  # bad_sats
    export = tmp_path / "export.ndjson"
    export.write_text("\n".join(lines) + "\n")
    assert (export.stat().st_size > SMALL_FILE_BYTES) == big
    db = tmp_path / "a.duckdb"
    first = asg_audit.ingest(db, export)
    with export.open("a") as out:  # the export grows by one good record
        out.write(_record(n + 1) + "\n")
    again = asg_audit.ingest(db, export)
    assert first.rejected == again.rejected == 2  # read and refused both times
    assert again.duplicates == n - 1 and again.accepted == n
    with open_store(db, read_only=True) as store:
        rows = store.con.sql(
            "SELECT origin_line, reason, count(*) FROM rejects GROUP BY ALL ORDER BY 1"
        ).fetchall()
        assert rows == [(2, "invalid_json", 1), (n + 1, "bad_sats", 1)]
        assert store.count("results") == n


def test_another_file_with_the_same_bad_line_still_keeps_its_own(tmp_path: Path) -> None:
    # the evidence is the file and line: a copy's reject points at the copy
    for i, name in enumerate(("a.ndjson", "b.ndjson")):
        (tmp_path / name).write_text(_record(i) + '\n{"task_id": "broken\n')
    db = tmp_path / "s.duckdb"
    asg_audit.ingest(db, tmp_path / "a.ndjson", tmp_path / "b.ndjson")
    with open_store(db, read_only=True) as store:
        origins = store.con.sql("SELECT origin FROM rejects ORDER BY 1").fetchall()
    assert [Path(o).name for (o,) in origins] == ["a.ndjson", "b.ndjson"]


@pytest.mark.parametrize(
    ("name", "origin", "piped"),
    [("-", "<stdin>", True), ("/dev/stdin", "/dev/stdin", False)],
    ids=["stdin piped", "/dev/stdin redirected from a file"],
)
def test_a_stream_read_twice_keeps_the_rejects_of_each(
    tmp_path: Path, name: str, origin: str, piped: bool
) -> None:
    # review: `<stdin>` (or `/dev/fd/63`) names another stream in every run: its line 2 now
    # is not its line 2 then, so its reject is stored again; review 2: so does `/dev/stdin`
    # redirected from a regular file (another file each run)
    db = tmp_path / "a.duckdb"
    for i in range(2):
        export = tmp_path / f"{i}.ndjson"
        export.write_text(_record(i) + '\n{"task_id": "broken\n')
        with export.open("rb") as stdin:
            feed: dict[str, Any] = {"input": export.read_bytes()} if piped else {"stdin": stdin}
            done = subprocess.run(
                [sys.executable, "-m", "asg_audit", "ingest", "--quiet", "--db", str(db), name],
                capture_output=True,
                timeout=120,
                cwd=tmp_path,
                **feed,
            )
        assert done.returncode == 0, done.stderr
    with open_store(db, read_only=True) as store:
        rows = store.con.sql("SELECT origin, origin_line FROM rejects ORDER BY run_id").fetchall()
    assert rows == [(origin, 2), (origin, 2)]
