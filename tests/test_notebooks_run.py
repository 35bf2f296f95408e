"""The notebooks run top to bottom on a store built from the simulator, in a real Jupyter kernel."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from asg_audit.ingest import ingest_paths, track_file
from asg_audit.sim import WorldConfig, generate_world

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nb")
    world = generate_world(WorldConfig(seed=11, tasks=400, anomalies="all"))
    world.write_submissions(folder / "subs.ndjson")
    world.write_results_export(folder / "results.jsonl")
    db = folder / "audit.duckdb"
    track_file(db, folder / "subs.ndjson")
    ingest_paths(db, [folder / "results.jsonl"])
    return db


def test_notebooks_exist() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"walkthrough.ipynb", "latency.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(
    path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASG_AUDIT_DB", str(store))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # The first cell shows the audit summary as HTML (Audit._repr_html_).
    first = nb.cells[1].outputs
    assert any("text/html" in o.get("data", {}) for o in first)
    assert os.environ["ASG_AUDIT_DB"] == str(store)
