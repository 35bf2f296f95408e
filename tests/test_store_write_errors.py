"""A statement that fails while submissions are written is reported as itself, not as the
"Current transaction is aborted" of the clean-up statements after it (which used to replace it:
"cannot write the database: ... aborted", the real error lost). Real store; the failure is made
real by a constraint added to the store's table."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from asg_audit.model import SUBMISSIONS_SCHEMA
from asg_audit.store import open_store


def test_a_failing_insert_of_submissions_is_reported_as_itself(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "task_id": ["t1"],
            "task_type": ["x"],
            "consensus_threshold": [3],
            "options": [["a"]],
            "created_at": [datetime.now(UTC)],
            "data_url": [None],
            "origin": [None],
            "origin_line": [1],
        },
        schema={**SUBMISSIONS_SCHEMA, "origin": pl.String(), "origin_line": pl.Int64()},
    )
    with open_store(tmp_path / "s.duckdb") as store:
        store.con.execute("ALTER TABLE submissions ALTER COLUMN origin SET NOT NULL")
        store.con.register("staged", frame)
        refused = pytest.raises(duckdb.ConstraintException, match="NOT NULL constraint failed")
        with refused, store.transaction():
            store.write_staged_submissions("staged")
        assert store.con.execute("SELECT count(*) FROM submissions").fetchone() == (0,)
