"""`ingest()` and `ingest_paths()` from a notebook: a list of paths, bytes paths and Path objects
are paths; anything else is a TypeError naming `db` or `paths`, as `analyze` gives.

`ingest(db, ["a.ndjson"])` took the list as one glob ("['a.ndjson']: no file matches"),
`ingest(db, b"a.ndjson")` named the file "b'a.ndjson'", `ingest_paths(db, "a.ndjson")` read
each character as a path, and `ingest(123, ...)` was a bare TypeError. Real files, real stores.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _records import settled_line

from asg_audit.ingest_files import ingest, ingest_paths
from asg_audit.store import open_store


@pytest.fixture
def exports(tmp_path: Path) -> list[Path]:
    paths = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.ndjson"
        path.write_text(settled_line(f"t_{name}") + "\n")
        paths.append(path)
    return paths


def _task_ids(db: Path) -> list[str]:
    with open_store(db, read_only=True) as store:
        rows = store.con.execute("SELECT task_id FROM results ORDER BY 1").fetchall()
    return [row[0] for row in rows]


def test_ingest_takes_a_list_of_paths(exports: list[Path], tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    summary = ingest(db, [str(p) for p in exports])
    assert [f.status for f in summary.files] == ["ingested", "ingested"]
    assert _task_ids(db) == ["t_a", "t_b"]


def test_ingest_takes_lists_and_paths_mixed(exports: list[Path], tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    summary = ingest(db, [exports[0]], exports[1])
    assert [f.path for f in summary.files] == [str(p) for p in exports]
    assert _task_ids(db) == ["t_a", "t_b"]


def test_ingest_takes_a_bytes_path_as_a_file_name(exports: list[Path], tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    summary = ingest(db, os.fsencode(exports[0]))
    assert [(f.path, f.status) for f in summary.files] == [(str(exports[0]), "ingested")]
    assert _task_ids(db) == ["t_a"]


def test_ingest_paths_takes_one_path_as_one_path(exports: list[Path], tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    summary = ingest_paths(db, str(exports[0]))
    assert [(f.path, f.status) for f in summary.files] == [(str(exports[0]), "ingested")]


@pytest.mark.parametrize("db", [123, None, b"s.duckdb", ["s.duckdb"]])
def test_ingest_names_a_db_that_is_not_a_path(exports: list[Path], db: object) -> None:
    with pytest.raises(TypeError, match=r"^ingest db: expected a path \(str or Path\)"):
        ingest(db, exports[0])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^ingest_paths db: expected a path \(str or Path\)"):
        ingest_paths(db, [exports[0]])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("paths", "got"),
    [
        (123, "int"),
        (None, "NoneType"),
        ([1], "an iterable holding int"),
        ([["a"]], "an iterable holding list"),
    ],
)
def test_ingest_names_paths_that_are_not_paths(tmp_path: Path, paths: object, got: str) -> None:
    db = tmp_path / "s.duckdb"
    with pytest.raises(TypeError, match=rf"^ingest_paths paths: expected a path .* got {got}"):
        ingest_paths(db, paths)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^ingest paths: expected a path"):
        ingest(db, paths)  # type: ignore[arg-type]
    assert not db.exists()  # refused before the store is made
