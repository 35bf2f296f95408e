"""`[audit] collect_seconds` counts the Gateway probe (tester).

Against a slow Gateway the collect step overran its budget: the probe before it (up to 10 s)
was not counted, so the collector got its whole budget after it. Now the collector gets what the
probe left: a probe answered after 7 s of a 7 s budget leaves the collector nothing to poll
with, and the step ends about when the budget does, not 7 s later.

The real command against a Gateway on 127.0.0.1 that answers the probe after PROBE_DELAY_S and
every poll at once (pending). Polls in flight when the budget ends are still waited for (up to
`[collector] timeout_s`); here they are answered at once, so the step's time is the budget's.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from _hardening_procs import asg_audit, clean_env
from _http_server import serve
from _scripted_gateway import tracked_store

PROBE_DELAY_S = 7.0
BUDGET_S = 7.0
# what the step may take beyond its budget here: starting and ending the collector run
SLACK_S = 5.0
IDS = [f"tsk_budget{i:03d}" for i in range(20)]


class _SlowProbe(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        task_id = self.path.split("/")[3]
        if task_id == "asg-audit-probe":
            time.sleep(PROBE_DELAY_S)
            code, body = 404, b'{"error":"not found"}'
        else:
            code, body = 200, json.dumps({"task_id": task_id, "status": "pending"}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_gateway() -> Iterator[str]:
    with serve(_SlowProbe) as url:
        yield url


def test_the_probe_is_counted_in_collect_seconds(tmp_path: Path, slow_gateway: str) -> None:
    db = tracked_store(tmp_path, IDS)
    config = tmp_path / "asg_audit.toml"
    config.write_text(
        f'db = "{db}"\nbase_url = "{slow_gateway}"\n'
        f'[audit]\nreport_dir = "{tmp_path / "reports"}"\ncollect_seconds = {BUDGET_S}\n'
        "verify_chain = false\nbilling = false\n"
        "[collector]\nschedule = 'fixed'\nconcurrency = 4\nmax_rps = 50\n"
    )
    done = subprocess.run(
        asg_audit("audit", "--config", str(config)),
        capture_output=True,
        text=True,
        env=clean_env(ASG_API_KEY="sk_sandbox_budget_probe"),
        timeout=180,
        check=False,
    )
    assert done.returncode in (0, 1), (done.stdout, done.stderr)  # 1: stuck tasks, polled
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("collect ")]
    assert "(partial)" in line, line  # the budget ended with tasks pending
    took = float(re.findall(r"\[([0-9.]+) s\]$", line)[0])
    # the probe's 7 s are inside the budget (it was 7 s + the whole budget)
    assert PROBE_DELAY_S <= took < BUDGET_S + SLACK_S, line
