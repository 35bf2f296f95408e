"""What a folder scan or a glob finds is not named on its own: it is taken only as a regular file
inside the folder (or the folder the glob starts from).

Found by a security tester: `ingest 'drop/*.ndjson'` opened a named pipe the glob matched and
hung for ever (the same pipe found by `ingest drop` was refused), and a symbolic link planted in
a drop folder (`drop/passwd.ndjson -> /etc/passwd`) was followed, copying the file's lines into
the store as rejects. Now a glob's matches are refused like a folder's (a pipe, socket or device
by what it is; exit 2 after the other files), and a link found by a folder scan or a glob is
followed only to a file inside that folder: one leading elsewhere fails by name, naming where it
leads. A path named on its own is still taken whatever it is and wherever it leads. Real files,
real pipes, the real command line with a timeout (a hang fails the test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _hardening_procs import query

from asg_audit.errors import InputError
from asg_audit.ingest_files import expand_paths

SECRET = "root:x:0:0:the-secret-line-of-another-file"


def rec(task_id: str) -> str:
    return json.dumps({"task_id": task_id, "status": "pending"})


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", "ingest", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,  # the old code blocked for ever opening a pipe a glob matched
    )


def task_ids(db: Path) -> list[str]:
    return [str(r[0]) for r in query(db, "SELECT task_id FROM observations ORDER BY 1")]


def stored_text(db: Path) -> str:
    """Everything the store holds of records and rejects, as text."""
    return repr(query(db, "SELECT * FROM rejects")) + repr(query(db, "SELECT * FROM observations"))


@pytest.fixture
def outside_file(tmp_path: Path) -> Path:
    """A readable file outside every folder ingested: what a planted link points to."""
    private = tmp_path / "private"
    private.mkdir()
    secret = private / "passwd"
    secret.write_text(SECRET + "\n" + rec("from-outside") + "\n")
    return secret


def test_a_glob_matching_a_pipe_refuses_it_and_reads_the_rest(tmp_path: Path) -> None:
    drop = tmp_path / "sp6"
    drop.mkdir()
    os.mkfifo(drop / "x.ndjson")
    (drop / "y.ndjson").write_text(rec("y1") + "\n")
    db = tmp_path / "a.duckdb"
    done = cli("--db", str(db), str(drop / "*.ndjson"), timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"{drop / 'x.ndjson'}: a named pipe (FIFO), not a file: not read" in done.stderr
    assert task_ids(db) == ["y1"]
    assert query(db, "SELECT status FROM runs") == [("failed",)]


def test_a_glob_matching_a_link_to_a_device_or_a_pipe_never_opens_it(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    os.symlink("/dev/zero", drop / "zero.ndjson")
    os.mkfifo(drop / "pipe.data")  # not taken by its suffix; reached through the link
    os.symlink("pipe.data", drop / "pipe.ndjson")
    (drop / "ok.ndjson").write_text(rec("ok1") + "\n")
    db = tmp_path / "a.duckdb"
    done = cli("--db", str(db), str(drop / "*.ndjson"), timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"{drop / 'zero.ndjson'}: a symbolic link to /dev/zero, outside the glob's folder" in (
        done.stderr
    )
    assert f"{drop / 'pipe.ndjson'}: a named pipe (FIFO), not a file: not read" in done.stderr
    assert task_ids(db) == ["ok1"]


def test_a_link_in_a_folder_to_a_file_outside_it_is_refused(
    tmp_path: Path, outside_file: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    os.symlink(outside_file, drop / "passwd.ndjson")
    (drop / "real.ndjson").write_text(rec("r1") + "\n")
    db = tmp_path / "a.duckdb"
    done = cli("--db", str(db), str(drop), timeout=60)
    assert done.returncode == 2, done.stderr
    assert (
        f"{drop / 'passwd.ndjson'}: a symbolic link to {os.path.realpath(outside_file)}, outside"
        f" the folder {drop}: not read"
    ) in done.stderr
    assert task_ids(db) == ["r1"]
    assert "the-secret-line" not in stored_text(db)  # nothing of it copied into the store
    assert query(db, "SELECT count(*) FROM rejects") == [(0,)]


def test_a_link_found_by_a_glob_to_a_file_outside_its_folder_is_refused(
    tmp_path: Path, outside_file: Path
) -> None:
    drop = tmp_path / "drop"
    (drop / "sub").mkdir(parents=True)
    os.symlink(outside_file, drop / "sub" / "passwd.ndjson")
    os.symlink(outside_file.parent, drop / "linked")  # a folder link leading out
    (drop / "sub" / "real.ndjson").write_text(rec("r1") + "\n")
    db = tmp_path / "a.duckdb"
    done = cli("--db", str(db), str(drop / "**" / "*"), timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"{drop / 'sub' / 'passwd.ndjson'}: a symbolic link to" in done.stderr
    assert f"{drop / 'linked'}: a symbolic link to" in done.stderr
    assert f"outside the glob's folder {drop}: not read" in done.stderr
    assert task_ids(db) == ["r1"]
    assert "the-secret-line" not in stored_text(db)


def test_a_link_inside_the_folder_is_followed(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / "sub").mkdir(parents=True)
    (drop / "data.txt").write_text(rec("via-link") + "\n")  # not taken by its own suffix
    os.symlink("../data.txt", drop / "sub" / "link.ndjson")
    db = tmp_path / "a.duckdb"
    done = cli("--db", str(db), str(drop), timeout=60)
    assert done.returncode == 0, done.stderr
    assert task_ids(db) == ["via-link"]
    db2 = tmp_path / "b.duckdb"
    done = cli("--db", str(db2), str(drop / "sub" / "*.ndjson"), timeout=60)
    assert done.returncode == 2, done.stderr  # the glob starts from sub: data.txt is outside it
    assert "outside the glob's folder" in done.stderr
    done = cli("--db", str(db2), str(drop / "*" / "*.ndjson"), timeout=60)
    assert done.returncode == 0, done.stderr  # this one starts from drop: inside
    assert task_ids(db2) == ["via-link"]


def test_a_link_named_on_its_own_and_a_linked_folder_named_are_followed(
    tmp_path: Path, outside_file: Path
) -> None:
    link = tmp_path / "named.ndjson"
    os.symlink(outside_file, link)
    real_drop = tmp_path / "elsewhere" / "drop"
    real_drop.mkdir(parents=True)
    (real_drop / "a.ndjson").write_text(rec("a1") + "\n")
    linked_drop = tmp_path / "drop"
    os.symlink(real_drop, linked_drop)
    db = tmp_path / "a.duckdb"
    done = cli("--db", str(db), str(link), str(linked_drop), timeout=60)
    assert done.returncode == 0, done.stderr
    assert task_ids(db) == ["a1", "from-outside"]


def test_expand_paths_without_a_handler_names_the_link_and_where_it_leads(
    tmp_path: Path, outside_file: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    os.symlink(outside_file, drop / "p.jsonl")
    with pytest.raises(InputError, match=r"p\.jsonl: a symbolic link to .*passwd, outside the"):
        expand_paths([drop])
    os.mkfifo(tmp_path / "f.jsonl")
    with pytest.raises(InputError, match=r"f\.jsonl: a named pipe"):
        expand_paths([str(tmp_path / "*.jsonl")])
