"""`audit` on a store that stops taking writes (tester, LOW).

After collect found the store unwritable, verify-chain still made its requests (a paid chain
index quota spent on answers it could not store) and billing its own, and writing the findings
then failed the whole run with no report (`"report": null`). Now the later writing steps are
skipped with that reason and ask nothing, the findings are not stored (said so), and the report
is still written from what the store holds.

The write that fails is a real one, as in test_store_disk_full: the command runs with its files
limited in size (RLIMIT_FSIZE, SIGXFSZ ignored: EFBIG, as a full disk gives ENOSPC).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from _hardening_procs import FSIZE_LIMITED, clean_env, query
from _http_server import serve
from _scripted_gateway import Answer, scripted_gateway, settled_body, tracked_store

KEY = "sk_sandbox_fixw_full"
IDS = [f"tsk_wf{i:04d}" for i in range(200)]
PAD_BYTES = 40_000  # each answer this much bigger: a few batches outgrow the limit
LIMIT_MARGIN = 64 * 1024


def _fat(task_id: str, n: int) -> Answer:
    if task_id == "asg-audit-probe":
        return 404, b'{"error":"not found"}', {}
    if task_id not in IDS:  # billing
        return 503, b'{"error":"unavailable"}', {}
    body = json.loads(settled_body(task_id))
    body["bsv_txid"] = f"{IDS.index(task_id) + 1:064x}"  # txids for verify-chain to look up
    body["note"] = random.randbytes(PAD_BYTES // 2).hex()
    return 200, json.dumps(body).encode(), {}


def test_a_store_found_unwritable_skips_the_later_writers_and_still_reports(
    tmp_path: Path,
) -> None:
    chain_requests: list[str] = []
    lock = threading.Lock()

    class Chain(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            with lock:
                chain_requests.append(self.path)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    db = tracked_store(tmp_path, IDS)
    reports = tmp_path / "reports"
    limit = os.path.getsize(db) + LIMIT_MARGIN
    with scripted_gateway(_fat) as gateway, serve(Chain) as chain:
        config = tmp_path / "asg_audit.toml"
        config.write_text(
            f'db = "{db}"\nchain_url = "{chain}/v1/bsv/main"\n'
            f'[audit]\nreport_dir = "{reports}"\ncollect_seconds = 60\n'
            "[collector]\nbatch_size = 10\nflush_interval_s = 0.2\nflush_max_interval_s = 0.2\n"
            "max_rps = 40\nconcurrency = 4\nschedule = 'fixed'\n"
        )
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                FSIZE_LIMITED,
                str(limit),
                "audit",
                "--config",
                str(config),
                "--json",
            ],
            env=clean_env(ASG_API_KEY=KEY, ASG_BASE_URL=gateway.url),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        billing = [t for _, t, _ in gateway.log if t not in IDS and t != "asg-audit-probe"]
    outcome = json.loads(done.stdout)
    steps = outcome["steps"]
    assert done.returncode == 3 and outcome["exit_code"] == 3, done.stderr[-3000:]
    assert steps["collect"].startswith("failed: collect stopped, the store cannot be written")
    skipped = "skipped (the store cannot be written (File too large), as collect found in this run"
    assert steps["verify-chain"].startswith(skipped), steps
    assert steps["billing"].startswith(skipped), steps
    assert steps["findings"].startswith("skipped (not stored: the store cannot be written"), steps
    # nothing asked that could not be stored: no chain index request, no billing request
    assert chain_requests == []
    assert billing == []
    # the report is written from what the store holds
    assert outcome["report"] is not None, outcome
    summary = json.loads((Path(outcome["report"]) / "summary.json").read_text())
    assert summary["run_id"] == outcome["run_id"]
    assert (reports / "latest" / "index.html").is_file()
    assert "Traceback" not in done.stderr
    # the end of the run is a small write that may still fit: recorded `incomplete`, or, when
    # it cannot be recorded, the one error line says so and where the report is
    if outcome["error"] is None:
        ((status,),) = query(db, "SELECT status FROM runs WHERE command = 'audit'")
        assert status == "incomplete"
    else:
        assert "could not be recorded" in outcome["error"]
        assert f"the report is written: {outcome['report']}" in outcome["error"]
