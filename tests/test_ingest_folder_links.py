"""A linked folder found by a folder scan is judged as a glob judges it.

Found by a tester: `ingest drop` silently skipped `drop/archive -> ../archive` (outside) and
`drop/current -> 2026-10` (inside): rc 0, no message, while `'drop/**/*.ndjson'` followed the
inside link and refused the outside one by name. Now the scan follows a linked folder leading
inside the folder scanned (each real folder once: a link back up is no loop) and refuses one
leading elsewhere by name, exit 2 after the others. Real folders and links, the real command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from asg_audit.errors import InputError
from asg_audit.ingest_files import expand_paths


def rec(task_id: str) -> str:
    return json.dumps({"task_id": task_id, "status": "pending"}) + "\n"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", "ingest", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def task_ids(db: Path) -> list[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [
            str(r[0]) for r in con.execute("SELECT task_id FROM observations ORDER BY 1").fetchall()
        ]
    finally:
        con.close()


def make_drop(tmp_path: Path) -> Path:
    """The tester's layout: a real month folder, an inside link to it, an outside link."""
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "b.ndjson").write_text(rec("from-archive"))
    drop = tmp_path / "drop"
    (drop / "2026-10").mkdir(parents=True)
    (drop / "2026-10" / "a.ndjson").write_text(rec("a1"))
    os.symlink("../archive", drop / "archive")
    os.symlink("2026-10", drop / "current")
    return drop


def test_a_linked_folder_outside_fails_by_name_and_an_inside_one_is_read(tmp_path: Path) -> None:
    drop = make_drop(tmp_path)
    db = tmp_path / "t.duckdb"
    done = cli("--db", str(db), str(drop))
    assert done.returncode == 2, done.stderr
    assert (
        f"{drop / 'archive'}: a symbolic link to {os.path.realpath(tmp_path / 'archive')},"
        f" outside the folder {drop}: not read"
    ) in done.stderr
    assert task_ids(db) == ["a1"]  # the archive's record is not read


def test_a_linked_folder_inside_is_followed(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / "months" / "2026-10").mkdir(parents=True)
    (drop / "months" / "2026-10" / "a.ndjson").write_text(rec("a1"))
    (drop / "hidden.d").mkdir()  # reached only through the link below (scanned on its own too)
    (drop / "hidden.d" / "h.ndjson").write_text(rec("h1"))
    os.symlink("months/2026-10", drop / "current")
    os.symlink("../hidden.d", drop / "months" / "more")
    files = expand_paths([drop])
    # each real folder once: 2026-10 under its own name or the link's, never both
    assert sorted(os.path.realpath(f) for f in files) == sorted(
        os.path.realpath(p)
        for p in (drop / "months" / "2026-10" / "a.ndjson", drop / "hidden.d" / "h.ndjson")
    )
    assert len(files) == 2
    db = tmp_path / "t.duckdb"
    done = cli("--db", str(db), str(drop))
    assert done.returncode == 0, done.stderr
    assert task_ids(db) == ["a1", "h1"]


def test_a_folder_link_only_inside_the_scan_is_read_through_it(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "real").mkdir(parents=True)
    (base / "real" / "r.ndjson").write_text(rec("r1"))
    drop = base / "drop"
    drop.mkdir()
    os.symlink("../real", drop / "linked")  # inside base, outside drop
    db = tmp_path / "t.duckdb"
    done = cli("--db", str(db), str(base))  # scanning base: the link leads inside it
    assert done.returncode == 0, done.stderr
    assert task_ids(db) == ["r1"]
    with pytest.raises(InputError, match=r"linked: a symbolic link to .*real, outside the folder"):
        expand_paths([drop])


def test_a_link_loop_ends(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / "sub").mkdir(parents=True)
    (drop / "sub" / "s.ndjson").write_text(rec("s1"))
    os.symlink("..", drop / "sub" / "up")  # back to drop
    os.symlink(".", drop / "self")
    files = expand_paths([drop])
    assert [os.path.realpath(f) for f in files] == [os.path.realpath(drop / "sub" / "s.ndjson")]
