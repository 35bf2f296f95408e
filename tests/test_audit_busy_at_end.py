"""A store another process opens while an audit runs (a notebook, another tool) does not leave the
run `running`: recording how the run ended waits for the store a bounded time, also without
`--wait`; when it still cannot, the error says the run could not be recorded. The run stayed
`running` (read as a process that died) whenever the store was busy at that moment.

Real stores; the holder of the store is a real process; a real HTTP alert endpoint starts it at
a known moment (after the report is written, before the end is recorded).
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from _audit_job import RESULT_LINE, offline_job
from _hardening_procs import asg_audit, clean_env, query
from _http_server import serve

from asg_audit import jobs
from asg_audit.config import load_config
from asg_audit.errors import StoreBusyError

HOLDER = (
    "import duckdb, sys, time\n"
    "con = duckdb.connect(sys.argv[1])\n"
    "print('held', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
    "con.close()\n"
)


def _hold(db: Path, seconds: float) -> subprocess.Popen[str]:
    """Start a process that opens the store read-write for `seconds`; return once it has it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


@contextlib.contextmanager
def alert_that_opens_the_store(db: Path, seconds: float) -> Iterator[tuple[str, list[Any]]]:
    """Serve an alert endpoint that, on the POST, has another process open the store for
    `seconds`, then answers 200. Yield its URL and the holders started."""
    holders: list[subprocess.Popen[str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            holders.append(_hold(db, seconds))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as base:
        yield f"{base}/hook", holders
        for holder in holders:
            holder.kill()
            holder.wait()


def _job_with_a_finding(tmp_path: Path) -> dict[str, Path]:
    job = offline_job(tmp_path, 3)
    bad = RESULT_LINE.format(i=99, status="settled").replace('"confidence":1.0', '"confidence":0.2')
    (job["drop"] / "bad.ndjson").write_text(bad)  # a `fail` finding: the alert is sent
    return job


def test_store_busy_for_a_moment_when_the_run_ends_is_waited_for(tmp_path: Path) -> None:
    job = _job_with_a_finding(tmp_path)
    with alert_that_opens_the_store(job["db"], 3.0) as (url, holders):
        job["config"].write_text(job["config"].read_text() + f'alert_url = "{url}"\n')
        done = subprocess.run(
            asg_audit("audit", "--config", str(job["config"]), "--json"),  # no --wait
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=180,
        )
        assert len(holders) == 1
    outcome = json.loads(done.stdout)
    assert done.returncode == 1, done.stderr[-3000:]  # findings: the run itself succeeded
    assert outcome["error"] is None and outcome["steps"]["alert"].startswith("ok: sent to")
    runs = query(job["db"], "SELECT run_id, status FROM runs WHERE command = 'audit'")
    assert runs == [(outcome["run_id"], "ok")]


def test_store_busy_for_longer_says_the_run_could_not_be_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        jobs, "END_RECORD_WAIT_S", 1.0, raising=False
    )  # the bound, shortened for the test
    job = _job_with_a_finding(tmp_path)
    with alert_that_opens_the_store(job["db"], 30.0) as (url, holders):
        job["config"].write_text(job["config"].read_text() + f'alert_url = "{url}"\n')
        config = load_config(str(job["config"]))
        with pytest.raises(StoreBusyError) as raised:
            jobs.run_audit(config, log=io.StringIO())
        message = str(raised.value)
        for holder in holders:
            holder.kill()
            holder.wait()
    assert "database busy" in message
    assert "could not be recorded as failed" in message
    assert "`runs` shows it running until the next audit marks it abandoned" in message
    ((status,),) = query(job["db"], "SELECT status FROM runs WHERE command = 'audit'")
    assert status == "running"  # as the message says
