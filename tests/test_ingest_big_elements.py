"""A JSON array element (or pretty-printed document) too big for DuckDB's JSON reader: the file
fails with a message naming the element, where it starts, its size and the reader's limit."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from asg_audit.filelines import BigElement, locate_big_element

SMALL = {"task_id": "s1", "status": "pending"}
BIG = {"task_id": "b1", "status": "pending", "label": "x" * (40 << 20)}  # over 2 x 16 MiB


def ingest(db: Path, *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", "ingest", "--quiet", "--db", str(db)]
        + [str(p) for p in paths],
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("layout", ["array", "documents"])
def test_ingest_element_over_the_reader_limit_names_it_and_where_it_starts(
    tmp_path: Path, layout: str
) -> None:
    path = tmp_path / "big.json"
    if layout == "array":
        path.write_text(json.dumps([SMALL, BIG, SMALL]))
        what, where = "element 2 (from line 1, column 42)", "jq -c '.[]'"
    else:
        path.write_text("\n".join(json.dumps(r, indent=2) for r in (SMALL, BIG, SMALL)))
        what, where = "document 2 (from line 5, column 1)", "jq -c '.'"
    size = len(json.dumps(BIG, indent=2 if layout == "documents" else None))
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"task_id": "o1", "status": "pending"}) + "\n")
    db = tmp_path / "audit.duckdb"
    done = ingest(db, path, other)
    assert done.returncode == 2
    assert (
        f"{path}: {what} is {size:,} bytes, over the 16,777,216 bytes DuckDB's JSON reader"
        f" takes for one {what.split()[0]}; nothing stored (as NDJSON, e.g. `{where}`,"
    ) in done.stderr
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT task_id FROM observations").fetchall() == [("o1",)]
    finally:
        con.close()


def test_locate_big_element_follows_strings_escapes_and_nesting(tmp_path: Path) -> None:
    # Brackets and quotes inside strings, escaped quotes and backslashes, nested values, a BOM,
    # gzip: only the top-level elements are measured.
    elements = [
        '{"a": "]}[{\\"", "b": [1, [2, {"c": "\\\\"}]]}',
        '"a string element with ] and \\" in it"',
        '{"big": "' + "z" * 200 + '"}',
        "[1, 2]",
    ]
    text = "\ufeff[\n  " + ",\n  ".join(elements) + "\n]\n"
    path = tmp_path / "a.json.gz"
    path.write_bytes(gzip.compress(text.encode()))
    assert locate_big_element(path, "array", 150) == BigElement(
        number=3, line=4, column=3, size=len(elements[2])
    )
    assert locate_big_element(path, "array", 1000) is None
    assert locate_big_element(path, "array", 42) == BigElement(
        number=1, line=2, column=3, size=len(elements[0])
    )
    strings = tmp_path / "s.json"  # a string element is measured too
    strings.write_text("[" + ", ".join(elements[1:]) + "]")
    assert locate_big_element(strings, "array", 37) == BigElement(
        number=1, line=1, column=2, size=len(elements[1])
    )
    assert locate_big_element(path, "array", 43) == BigElement(
        number=3, line=4, column=3, size=len(elements[2])
    )
    # a document file: the top-level values are the elements
    docs = tmp_path / "d.json"
    docs.write_text(elements[0] + "\n" + elements[2] + "\n")
    assert locate_big_element(docs, "documents", 43) == BigElement(
        number=2, line=2, column=1, size=len(elements[2])
    )
