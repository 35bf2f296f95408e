from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Path of a fresh DuckDB store file in a temporary folder."""
    return tmp_path / "audit.duckdb"


@pytest.fixture(params=["small-batch", "bulk"])
def write_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test through both ways a commit derives results: the full rules on the touched
    tasks (small batches) and the bulk path (first-seen single tasks directly). Use it with
    `pytestmark = pytest.mark.usefixtures("write_path")`."""
    if request.param == "bulk":
        monkeypatch.setattr("asg_audit.store._SMALL_BATCH", 0)
    return str(request.param)
