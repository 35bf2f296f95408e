"""The `collect` command runs with no standard error (None, or a closed stream).

`run_collect_command` asked `sys.stderr.isatty()` to choose between a progress bar and log
lines: with `sys.stderr` None (pythonw, some daemons, `2>&-` at the interpreter's start) that
was an AttributeError, with a closed stream a ValueError, before any run started. Now a missing
or closed standard error is no terminal and gets no log lines: the run and its summary go on.

The real collector in a child process, against the simulator on 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from asg_audit.ingest_files import track_file
from asg_audit.sim import WorldConfig, generate_world, run_simulator
from asg_audit.store import open_store

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import io, json, sys
from asg_audit.collector import run_collect_command
from asg_audit.config import load_config

a = json.loads(sys.argv[1])
config = load_config(None, env={"ASG_API_KEY": a["key"], "ASG_BASE_URL": a["url"]},
                     overrides={"db_path": a["db"]})
if a["stderr"] == "none":
    sys.stderr = None
else:
    closed = io.TextIOWrapper(io.BytesIO())
    closed.close()
    sys.stderr = closed
code = run_collect_command(config, max_rps=200)
print(json.dumps({"code": code}), flush=True)
"""


@pytest.mark.parametrize("stderr", ["none", "closed"])
def test_collect_runs_and_prints_its_summary_with_no_usable_stderr(
    tmp_path: Path, stderr: str
) -> None:
    world = generate_world(WorldConfig(seed=21, tasks=40, live_fraction=0.0, anomalies="none"))
    db = tmp_path / "audit.duckdb"
    track_file(db, world.write_submissions(tmp_path / "subs.ndjson"))
    with run_simulator(world) as sim:
        args = {"key": sim.api_key, "url": sim.gateway_url, "db": str(db), "stderr": stderr}
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps(args)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "settled 40," in done.stdout, done.stdout
    assert json.loads(done.stdout.splitlines()[-1]) == {"code": 0}
    with open_store(db) as store:
        runs = store.con.execute("SELECT status FROM runs WHERE command = 'collect'").fetchall()
    assert runs == [("completed",)]
