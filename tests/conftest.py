from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# In CI (`CI` set, as `.ci/run` runs) the property tests try the same examples on every run, so
# a failure there is reproducible and a run that passed once passes again; elsewhere each run
# explores new examples (and a failure found that way becomes a fixed test case).
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Path of a fresh DuckDB store file in a temporary folder."""
    return tmp_path / "audit.duckdb"


@pytest.fixture(params=["grouped", "streamed"])
def read_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a file-ingest test through both ways a file is read: small NDJSON files read whole
    and committed in groups, and every file streamed in its own transaction."""
    if request.param == "streamed":
        monkeypatch.setattr("asg_audit.ingest_files.SMALL_FILE_BYTES", -1)
    return str(request.param)


@pytest.fixture(params=["small-batch", "bulk"])
def write_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test through both ways a commit derives results: the full rules on the touched
    tasks (small batches) and the bulk path (first-seen single tasks directly). Use it with
    `pytestmark = pytest.mark.usefixtures("write_path")`."""
    if request.param == "bulk":
        monkeypatch.setattr("asg_audit.store._SMALL_BATCH", 0)
    return str(request.param)
