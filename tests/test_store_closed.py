"""A Store used after its `with open_store(...)` block ended raises asg_audit's StoreError
saying the store is closed and to open it again (not DuckDB's 'Connection already closed'),
for every public read and write; its repr shows the path, the mode and whether it is open."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import asg_audit
from asg_audit.errors import StoreError
from asg_audit.normalize import NormalisedBatch
from asg_audit.store import Store, open_store


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "audit.duckdb"
    with open_store(path):
        pass
    return path


def _calls() -> dict[str, Callable[[Store], Any]]:
    empty = NormalisedBatch(accepted=pl.DataFrame(), rejects=pl.DataFrame())
    return {
        "tables": lambda s: s.tables(),
        "frame": lambda s: s.frame("runs"),
        "count": lambda s: s.count("runs"),
        "schema_version": lambda s: s.schema_version(),
        "file_ingested": lambda s: s.file_ingested("h"),
        "ingested_from": lambda s: s.ingested_from("p", 1),
        "ingested_hashes": lambda s: s.ingested_hashes(["h"]),
        "read_findings": lambda s: s.read_findings(),
        "con": lambda s: s.con.execute("SELECT 1"),
        "transaction": lambda s: s.transaction().__enter__(),
        "start_run": lambda s: s.start_run("x"),
        "finish_run": lambda s: s.finish_run("r", status="ok"),
        "write_batch": lambda s: s.write_batch("r", empty),
        "stage_batch": lambda s: s.stage_batch("r", empty),
        "stage_raw": lambda s: s.stage_raw("r", "x"),
        "commit_staged": lambda s: s.commit_staged(),
        "refresh_results": lambda s: s.refresh_results(),
        "record_ingested_file": lambda s: s.record_ingested_file(
            content_hash="h", path="p", size_bytes=1, records=1, run_id="r"
        ),
        "record_ingested_files": lambda s: s.record_ingested_files([], run_id="r"),
        "write_staged_submissions": lambda s: s.write_staged_submissions("t"),
        "write_findings": lambda s: s.write_findings("r", pl.DataFrame()),
        "analyze": lambda s: asg_audit.analyze(s),
    }


@pytest.mark.parametrize("read_only", [True, False], ids=["reader", "writer"])
@pytest.mark.parametrize("call", sorted(_calls()))
def test_a_closed_store_says_so(db: Path, read_only: bool, call: str) -> None:
    with open_store(db, read_only=read_only) as store:
        pass
    with pytest.raises(StoreError) as caught:
        _calls()[call](store)
    text = str(caught.value)
    assert text.startswith(f"{db}: the store is closed"), text
    assert "open it again" in text and "with open_store" in text


def test_closing_again_does_nothing_and_the_repr_says_what_the_store_is(db: Path) -> None:
    with open_store(db, read_only=True) as reader:
        assert repr(reader) == f"<Store {str(db)!r} read-only, open>"
        assert not reader.closed
        assert reader.tables()
    assert repr(reader) == f"<Store {str(db)!r} read-only, closed>"
    assert reader.closed
    reader.close()  # again: nothing happens
    with open_store(db) as writer:
        assert repr(writer) == f"<Store {str(db)!r} writer, open>"
        writer.close()  # closed inside its block: the block's end closes nothing more
        assert repr(writer) == f"<Store {str(db)!r} writer, closed>"
        with pytest.raises(StoreError, match="the store is closed"):
            writer.start_run("x")
    # the file is free again: a new store opens and writes
    with open_store(db) as again:
        assert again.start_run("y")
