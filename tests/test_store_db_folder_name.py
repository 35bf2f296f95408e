"""`--db .` (or `""`, `./`, `/`): a folder, exit 2 (tester finding 2).

`ingest` looked for the store's write-ahead log beside `--db` before opening it, and a path
with no name (`.`, `/`) crashed that with `ValueError: PosixPath('.') has an empty name`
(exit 1). It is now the line `track`, `report`, `db info` and `audit` print.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _hardening_procs import run_asg_audit
from _records import settled_export

import asg_audit
from asg_audit.errors import EXIT_USAGE, StoreFileError
from asg_audit.filelines import store_file_ids


@pytest.mark.parametrize(("db", "shown"), [(".", "."), ("", "."), ("./", "."), ("/", "/")])
def test_ingest_into_a_folder_with_no_name_is_exit_2(tmp_path: Path, db: str, shown: str) -> None:
    export = settled_export(tmp_path / "a.ndjson", 2)
    done = run_asg_audit("ingest", "--db", db, str(export), cwd=tmp_path)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr.strip() == f"asg-audit: error: {shown}: a folder, not a database file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ndjson"]


def test_library_ingest_into_dot_is_store_file_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = settled_export(tmp_path / "a.ndjson", 2)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreFileError, match=r"^\.: a folder, not a database file$"):
        asg_audit.ingest(".", [export])


def test_store_file_ids_of_a_nameless_path_is_the_folder_only() -> None:
    assert store_file_ids(Path(".")) == {(Path(".").stat().st_dev, Path(".").stat().st_ino)}
    assert len(store_file_ids(Path("/"))) == 1
