"""`track` streams its file: the rows are staged in the store a chunk at a time (DuckDB spills
a large stage to disk), so the Python memory it holds does not grow with the file (it used to
hold every row as a dict, about 1.5 KB a row: 4.3 GB for 3 million rows). A file that cannot be
read to its end stores nothing and its run is recorded as failed, with the reason."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from asg_audit.errors import InputError
from asg_audit.track import MAX_LISTED_ERRORS, track_file

# The stage's chunk made small (2,000 rows for 50,000) so that files of a few chunks are quick to
# write and read under tracemalloc: what is measured is that memory stays at a chunk's.
_PEAK = """
import sys, tracemalloc
import asg_audit.track
from asg_audit.track import MAX_LISTED_ERRORS, track_file
asg_audit.track._CHUNK_ROWS = 2_000
tracemalloc.start()
summary = track_file(sys.argv[1], sys.argv[2])
print(tracemalloc.get_traced_memory()[1], summary.new, summary.duplicates, summary.rejected)
"""


def _export(path: Path, rows: int, *, tasks: int | None = None) -> Path:
    """`rows` rows of `tasks` tasks (default: one a row); a task's later rows have other values."""
    with path.open("w") as fh:
        for i in range(rows):
            record = {
                "task_id": f"tsk_{i % (tasks or rows):08d}",
                "data_url": f"https://example.com/{i}",
                "type": "image_classification",
                "consensus_threshold": 3,
                "label_spec": {"options": ["cat", "dog", "bird"]},
                "created_at": f"2026-10-{1 + i % 28:02d}T12:00:00Z",
            }
            fh.write(json.dumps(record) + "\n")
        fh.write(json.dumps({**record, "consensus_threshold": 5}) + "\n")  # a conflict
        fh.write(json.dumps(record) + "\n")  # a duplicate
    return path


def _python_peak(tmp_path: Path, rows: int, tasks: int | None) -> int:
    export = _export(tmp_path / f"subs{rows}.ndjson", rows, tasks=tasks)
    db = tmp_path / f"s{rows}.duckdb"
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, str(db), str(export)],
        capture_output=True,
        text=True,
        check=True,
    )
    peak, new, duplicates, rejected = (int(v) for v in done.stdout.split())
    if tasks is None:  # the two rows added at the end: a conflict and a duplicate
        assert (new, duplicates, rejected) == (rows, 1, 1)
    else:  # every row after a task's first conflicts with it, the two added too
        assert (new, duplicates, rejected) == (tasks, 0, rows - tasks + 2)
    return peak


@pytest.mark.parametrize("tasks", [None, 1_000], ids=["good-rows", "conflicting-rows"])
def test_python_memory_does_not_grow_with_the_file(tmp_path: Path, tasks: int | None) -> None:
    small = _python_peak(tmp_path, 6_000, tasks)
    large = _python_peak(tmp_path, 24_000, tasks)
    # 4x the rows (each file a few chunks): the old reader held 4x the memory (about 1.5 KB a
    # row), and so did the first streaming one for the rows it rejected
    assert large < 1.5 * small, (small, large)
    assert large < 40 * 2**20, large


def test_a_file_cut_short_stores_nothing_and_its_run_says_why(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    good = tmp_path / "first.ndjson"
    good.write_text(
        '{"task_id": "kept", "type": "image", "consensus_threshold": 3,'
        ' "options": ["cat", "dog"], "created_at": "2026-10-01T12:00:00Z"}\n'
    )
    track_file(db, good)
    body = gzip.compress(_export(tmp_path / "big.ndjson", 120_000).read_bytes())
    cut = tmp_path / "cut.ndjson.gz"
    cut.write_bytes(body[: len(body) * 3 // 4])  # past the first staged chunks
    with pytest.raises(InputError, match=r"cut\.ndjson\.gz: .*nothing stored|cut\.ndjson\.gz"):
        track_file(db, cut)
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT task_id FROM submissions").fetchall() == [("kept",)]
        assert con.execute("SELECT count(*) FROM rejects").fetchone() == (0,)
        status, stats = con.execute(
            "SELECT status, stats FROM runs WHERE command = 'track' ORDER BY started_at DESC"
            " LIMIT 1"
        ).fetchone() or (None, None)
        tables = con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '\\_track%' ESCAPE '\\'"
        ).fetchall()
    finally:
        con.close()
    assert status == "failed"
    stats = json.loads(stats)
    assert "cut.ndjson.gz" in stats["error"] and stats["rows"] > 50_000, stats
    assert tables == []


def test_the_summary_lists_the_first_rejects_and_counts_them_all(tmp_path: Path) -> None:
    export = tmp_path / "bad.ndjson"
    export.write_text("".join(f'{{"task_id": "bad id {i}"}}\n' for i in range(1_500)))
    db = tmp_path / "s.duckdb"
    summary = track_file(db, export)
    assert (summary.rows, summary.rejected) == (1_500, 1_500)
    assert len(summary.errors) == MAX_LISTED_ERRORS == 1_000
    assert summary.errors[0].startswith(f"{export}:1: task_id: unsafe task id")
    assert summary.errors[-1].startswith(f"{export}:1000: ")
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM rejects").fetchone() == (1_500,)
    finally:
        con.close()
    done = subprocess.run(
        [sys.executable, "-m", "asg_audit", "track", str(export), "--db", str(db)],
        capture_output=True,
        text=True,
    )
    assert "0 new tasks" in done.stdout and "1,500 rejected" in done.stdout, done.stdout
    assert "... and 1,480 more (see the rejects table)" in done.stderr, done.stderr


def test_conflict_messages_show_values_as_written_before_and_rejects_keep_line_order(
    tmp_path: Path,
) -> None:
    export = tmp_path / "subs.ndjson"
    rows = [
        {"task_id": "x1", "type": "a", "consensus_threshold": 3, "options": ["p", "q"],
         "created_at": "2026-10-01T12:00:00.123456Z", "data_url": "u"},
        {"task_id": "x1", "type": "a", "consensus_threshold": 4, "options": ["q", "p"],
         "created_at": "2026-10-01T14:00:00.5+02:00"},
        {"task_id": "x2", "type": "it's %s", "consensus_threshold": 3, "options": [],
         "created_at": 1790000000},
        {"task_id": "x2", "type": "b", "consensus_threshold": 3, "options": [],
         "created_at": "2026-09-21T14:13:20Z"},
        {"task_id": "bad id"},
    ]  # fmt: skip
    export.write_text("".join(json.dumps(row) + "\n" for row in rows))
    db = tmp_path / "s.duckdb"
    summary = track_file(db, export)
    unsafe = "task_id: unsafe task id (letters, digits and _ . : - only)"
    assert summary.errors == [
        f"{export}:2: task_id: x1 is also on line 1 with other values (consensus_threshold: 3"
        " there, 4 here; options: p|q there, q|p here; created_at: 2026-10-01T12:00:00.123456+00:00"
        " there, 2026-10-01T12:00:00.500000+00:00 here; data_url: u there, none here);"
        " line 1 is kept",
        f"{export}:4: task_id: x2 is also on line 3 with other values (task_type: it's %s there,"
        " b here); line 3 is kept",
        f"{export}:5: {unsafe}",
    ]
    con = duckdb.connect(str(db), read_only=True)
    try:
        stored = [line for (line,) in con.execute("SELECT origin_line FROM rejects").fetchall()]
    finally:
        con.close()
    assert stored == [2, 4, 5]  # in the file's order, as they were before rejects were staged
