"""A JSON array or a file of JSON documents holding a byte that is not UTF-8 fails by the line,
column and document of that byte, with "nothing stored" (tester T7: DuckDB's own message named
"record/value 2" for the first element and a byte offset inside the element, with no line).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asg_audit.ingest_files import ingest_paths
from asg_audit.store import open_store

ELEMENTS = [{"task_id": f"t{i}", "status": "settled", "consensus_label": "cat"} for i in range(4)]


def _spoil(raw: bytes, task: str) -> bytes:
    """Put a 0xff byte after the `"t` of the task id `task`."""
    at = raw.index(f'"{task}"'.encode()) + 2
    return raw[:at] + b"\xff" + raw[at:]


@pytest.mark.parametrize(("task", "line"), [("t0", 3), ("t2", 13)])
def test_an_array_names_the_line_and_column_of_the_byte(
    tmp_path: Path, task: str, line: int
) -> None:
    path = tmp_path / "arr.json"
    path.write_bytes(_spoil(json.dumps(ELEMENTS, indent=1).encode(), task))
    db = tmp_path / "u.duckdb"
    summary = ingest_paths(db, [path])
    (failed,) = summary.failed_files
    assert failed.error == (
        f"{path}: not a readable JSON array: invalid UTF-8 (byte 0xff): line {line},"
        " column 16; nothing stored"
    )
    with open_store(db, read_only=True) as store:
        assert store.count("observations") == 0 and store.count("rejects") == 0


def test_documents_name_the_document_too(tmp_path: Path) -> None:
    path = tmp_path / "docs.json"
    raw = b"".join(json.dumps(e, indent=1).encode() + b"\n" for e in ELEMENTS)
    path.write_bytes(_spoil(raw, "t2"))
    (failed,) = ingest_paths(tmp_path / "d.duckdb", [path]).failed_files
    assert failed.error == (
        f"{path}: not a readable JSON document: invalid UTF-8 (byte 0xff): line 12, column 15"
        " (document 3); nothing stored"
    )


def test_a_json_error_before_the_byte_is_named_first(tmp_path: Path) -> None:
    # review: the byte took over the message, naming document 1 for a byte in document 3
    path = tmp_path / "docs.json"
    docs = [json.dumps(e, indent=1).encode() + b"\n" for e in ELEMENTS]
    docs[0] = docs[0].replace(b'"status"', b',"status"', 1)  # `,,`: broken at line 3
    path.write_bytes(_spoil(b"".join(docs), "t2"))
    (failed,) = ingest_paths(tmp_path / "e.duckdb", [path]).failed_files
    assert failed.error is not None
    assert ": line 3, column " in failed.error and "(document 1)" in failed.error, failed.error
    assert "UTF-8" not in failed.error
