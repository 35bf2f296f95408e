"""The walk-through notebook's headline cell shows the report's headline figures.

It printed `unsettled` and said "the same numbers as the report's headline", which has pending
and other status instead. Now it shows `asg_audit.report.headline(audit)`: the figures
summary.json's `headline` is built from, under the same keys. Executed in a real kernel on a
simulated store; the figures are compared with a report rendered from the same audit.
"""

from __future__ import annotations

import ast
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

import asg_audit
from asg_audit.ingest_files import ingest_paths, track_file
from asg_audit.report.content import HEADLINE_FIELDS
from asg_audit.sim import WorldConfig, generate_world

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "walkthrough.ipynb"
PROBE = 'print("AS_OF" + audit.as_of.isoformat())'


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nbformat.NotebookNode]:
    folder = tmp_path_factory.mktemp("nbc")
    world = generate_world(WorldConfig(seed=5, tasks=300, anomalies="all"))
    world.write_submissions(folder / "subs.ndjson")
    world.write_results_export(folder / "results.jsonl")
    db = folder / "audit.duckdb"
    track_file(db, folder / "subs.ndjson")
    ingest_paths(db, [folder / "results.jsonl"])
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASG_AUDIT_DB", str(db))
        mp.setenv("MPLBACKEND", "Agg")
        mp.delenv("DISPLAY", raising=False)
        client = NotebookClient(nb, timeout=300, kernel_name="python3")
        client.execute(cwd=str(NOTEBOOK.parent))
    return db, nb


def _headline_output(nb: nbformat.NotebookNode) -> dict[str, Any]:
    cells = [c for c in nb.cells if c.cell_type == "code" and "headline(audit)" in c.source]
    assert len(cells) == 1
    (out,) = [o for o in cells[0].outputs if "text/plain" in o.get("data", {})]
    shown: dict[str, Any] = ast.literal_eval(out["data"]["text/plain"])
    return shown


def test_walkthrough_shows_the_report_headline_figures(
    executed: tuple[Path, nbformat.NotebookNode], tmp_path: Path
) -> None:
    db, nb = executed
    shown = _headline_output(nb)
    assert list(shown) == [key for key, _, _ in HEADLINE_FIELDS]
    assert "unsettled" not in shown
    probe = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    as_of = datetime.fromisoformat(probe.strip().removeprefix("AS_OF"))
    report = asg_audit.render(asg_audit.analyze(db, as_of=as_of), tmp_path, formats="json")
    headline = json.loads((report.folder / "summary.json").read_text())["headline"]
    assert shown == {key: headline[key] for key in shown}
    # the world leaves tasks unsettled: the headline counts them as pending and other status
    assert shown["pending"] + shown["other_status"] > 0


def test_walkthrough_no_longer_shows_unsettled_as_a_headline_figure() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = "".join(c.source for c in nb.cells if c.cell_type == "code")
    assert '"unsettled"' not in code
