"""Store.frame: a `where` DuckDB cannot run is a ConfigError naming the table and the condition."""

from __future__ import annotations

from pathlib import Path

import pytest

from asg_audit.errors import ConfigError
from asg_audit.store import open_store


@pytest.mark.parametrize(
    ("where", "params", "reason"),
    [
        ("task_id ==", (), "syntax error"),
        ("nosuch = 1", (), '"nosuch" not found'),
        ("task_id = ?", (), "not provided"),
        ("task_id = ?", ("a", "b"), "mismatch"),
    ],
)
def test_a_bad_condition_names_the_table_and_condition(
    tmp_path: Path, where: str, params: tuple[str, ...], reason: str
) -> None:
    with open_store(tmp_path / "s.duckdb") as store:
        with pytest.raises(ConfigError) as caught:
            store.frame("runs", where=where, params=params)
        message = str(caught.value)
        assert f"frame('runs', where={where!r})" in message
        assert reason in message
        # the connection is usable afterwards
        assert store.frame("runs", where="run_id = ?", params=["x"]).height == 0
