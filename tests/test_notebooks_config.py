"""The notebooks audit with the settings the command line reads (./asg_audit.toml).

They called `asg_audit.analyze(DB)`, whose `config=None` is the built-in defaults, while
`asg-audit report` reads ./asg_audit.toml: with `slo_seconds = 30` there, the notebook's
headline said SLO 60 s and summary.json 30 s. Each notebook is run in a real kernel from a
folder holding an asg_audit.toml, and compared with a real `asg-audit report` run there.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from _hardening_procs import clean_env
from nbclient import NotebookClient

import asg_audit
from asg_audit.ingest_files import ingest_paths, track_file
from asg_audit.sim import WorldConfig, generate_world

NB_DIR = Path(__file__).parents[1] / "notebooks"
# figures of settled tasks only: the same whatever moment each run takes as `as_of`
STEADY = ("tasks", "settled", "latency_p50_s", "latency_p95_s", "share_over_slo", "slo_seconds")
PROBE = (
    "import json as _j\n"
    "print('PROBE' + _j.dumps({'slo': audit.config.slo_seconds,"
    f" **{{k: audit.summary()[k] for k in {STEADY!r}}}}}))"
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    here = tmp_path_factory.mktemp("nbcfg")
    world = generate_world(WorldConfig(seed=7, tasks=300, anomalies="all"))
    world.write_submissions(here / "subs.ndjson")
    world.write_results_export(here / "results.jsonl")
    db = here / "audit.duckdb"
    track_file(db, here / "subs.ndjson")
    ingest_paths(db, [here / "results.jsonl"])
    (here / "asg_audit.toml").write_text("slo_seconds = 30\n")
    return here


def _run_notebook(
    folder: Path, name: str, *, env_db: bool = True
) -> tuple[nbformat.NotebookNode, dict[str, Any]]:
    copy = folder / name
    shutil.copy(NB_DIR / name, copy)  # run where the config file is, as Jupyter would
    nb = nbformat.read(copy, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    env = {"MPLBACKEND": "Agg"}
    if env_db:
        env["ASG_AUDIT_DB"] = str(folder / "audit.duckdb")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        if not env_db:
            mp.delenv("ASG_AUDIT_DB", raising=False)
        mp.delenv("DISPLAY", raising=False)
        NotebookClient(nb, timeout=300, kernel_name="python3").execute(cwd=str(folder))
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    assert text.startswith("PROBE"), text
    probe: dict[str, Any] = json.loads(text.removeprefix("PROBE"))
    return nb, probe


def _cli_headline(folder: Path) -> dict[str, Any]:
    env = clean_env()
    env.pop("ASG_AUDIT_DB", None)
    cli = Path(sys.executable).with_name("asg-audit")
    done = subprocess.run(
        [str(cli), "report", "--db", "audit.duckdb", "--out", "reports", "--format", "json"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr
    latest = folder / "reports" / "latest"
    summary = json.loads((latest / "summary.json").read_text())
    headline: dict[str, Any] = summary["headline"]
    return headline


@pytest.mark.parametrize("name", ["walkthrough.ipynb", "latency.ipynb"])
def test_notebook_reads_asg_audit_toml_as_the_report_does(folder: Path, name: str) -> None:
    nb, probe = _run_notebook(folder, name)
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors, errors
    headline = _cli_headline(folder)
    assert headline["slo_seconds"] == 30.0
    assert probe["slo"] == 30.0
    assert {k: probe[k] for k in STEADY} == {k: headline[k] for k in STEADY}
    # the SLO matters in this world: the built-in 60 s gives another share over it
    defaults = asg_audit.analyze(folder / "audit.duckdb").summary()
    assert defaults["slo_seconds"] == 60.0
    assert defaults["share_over_slo"] != probe["share_over_slo"]
    if name == "walkthrough.ipynb":
        # the headline cell (the figures of summary.json's headline) says the same
        cells = [c for c in nb.cells if c.cell_type == "code" and "headline(audit)" in c.source]
        (out,) = [o for o in cells[0].outputs if "text/plain" in o.get("data", {})]
        shown = re.search(r"'share_over_slo': ([^,}]+)", out["data"]["text/plain"])
        assert shown is not None, out["data"]["text/plain"]
        assert float(shown.group(1)) == headline["share_over_slo"]


@pytest.mark.parametrize("name", ["walkthrough.ipynb", "latency.ipynb"])
def test_notebook_takes_the_store_the_config_names(tmp_path: Path, folder: Path, name: str) -> None:
    # tester T8: with `db = ...` in ./asg_audit.toml and no ASG_AUDIT_DB, the notebook looked
    # for the demo's store and stopped ("run make demo first"), where `asg-audit report` reads
    # the configured one
    here = tmp_path / "cfgdb"
    here.mkdir()
    shutil.copy(folder / "audit.duckdb", here / "store.duckdb")
    (here / "asg_audit.toml").write_text('db = "store.duckdb"\nslo_seconds = 30\n')
    nb, probe = _run_notebook(here, name, env_db=False)
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors, errors
    expected = asg_audit.analyze(
        here / "store.duckdb", config=asg_audit.load_config(here / "asg_audit.toml")
    ).summary()
    assert {k: probe[k] for k in STEADY} == {k: expected[k] for k in STEADY}
    assert probe["tasks"] > 0
