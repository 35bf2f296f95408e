from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Path of a fresh DuckDB store file in a temporary folder."""
    return tmp_path / "audit.duckdb"
