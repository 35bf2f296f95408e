"""A `--db` under a file (`touch afile; --db afile/s.duckdb`) is one error line naming the file
in the way: `afile/s.duckdb: cannot be the store: afile is a file, not a folder`, exit 3 for a
command that writes (as a missing folder is) and exit 2 for one that only reads (as a missing
store is). Writers said `…/afile/s.duckdb.wal: cannot check the store's write-ahead log: Not a
directory`: the check of the write-ahead log ran before the folder was looked at.

The real command in subprocesses, run in `tmp_path` with the relative paths a user types.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _hardening_procs import clean_env, run_asg_audit

from asg_audit.errors import StoreError, StoreFileError
from asg_audit.store import open_store


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_asg_audit(*args, cwd=cwd, env=clean_env())


def _one_error(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("asg-audit: error: "), done.stderr
    return lines[0].removeprefix("asg-audit: error: ")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "afile").write_text("not a folder\n")
    (tmp_path / "some.ndjson").write_text('{"task_id": "t1"}\n')
    return tmp_path


@pytest.mark.parametrize("command", ["ingest", "track"])
@pytest.mark.parametrize("db", ["afile/s.duckdb", "afile/sub/s.duckdb"])
def test_writer_under_a_file_names_the_file_exit_3(folder: Path, command: str, db: str) -> None:
    done = _run(folder, command, "--db", db, "some.ndjson")
    assert done.returncode == 3, done.stderr
    assert _one_error(done) == f"{db}: cannot be the store: afile is a file, not a folder"
    assert (folder / "afile").read_text() == "not a folder\n"
    assert sorted(p.name for p in folder.iterdir()) == ["afile", "some.ndjson"]


def test_reader_under_a_file_names_the_file_exit_2(folder: Path) -> None:
    done = _run(folder, "db", "info", "--db", "afile/s.duckdb")
    assert done.returncode == 2, done.stderr
    assert _one_error(done) == "afile/s.duckdb: cannot be the store: afile is a file, not a folder"


def test_link_to_a_path_under_a_file_names_the_file(folder: Path) -> None:
    """A `--db` link whose target is under a file: DuckDB writes beside the target."""
    (folder / "lnk").symlink_to("afile/x.duckdb")
    done = _run(folder, "ingest", "--db", "lnk", "some.ndjson")
    assert done.returncode == 3, done.stderr
    message = _one_error(done)
    assert message == f"lnk: cannot be the store: {folder / 'afile'} is a file, not a folder"
    assert ".wal" not in message


def test_missing_folder_is_still_does_not_exist(folder: Path) -> None:
    done = _run(folder, "ingest", "--db", "nofolder/s.duckdb", "some.ndjson")
    assert done.returncode == 3, done.stderr
    assert _one_error(done) == "nofolder/s.duckdb: folder nofolder does not exist"
    reader = _run(folder, "db", "info", "--db", "nofolder/s.duckdb")
    assert reader.returncode == 2, reader.stderr
    assert "no database here yet" in _one_error(reader)


def test_open_store_under_a_file_error_classes(folder: Path) -> None:
    db = folder / "afile" / "s.duckdb"
    with pytest.raises(StoreError) as writer, open_store(db):
        pass
    assert not isinstance(writer.value, StoreFileError)  # exit 3, as a missing folder
    assert (
        str(writer.value)
        == f"{db}: cannot be the store: {folder / 'afile'} is a file, not a folder"
    )
    with pytest.raises(StoreFileError) as reader, open_store(db, read_only=True):
        pass
    assert str(reader.value) == str(writer.value)
