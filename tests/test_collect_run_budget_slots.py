"""A collect run with a time budget (`run_for_s`, `[audit] collect_seconds`) sends no poll
after its budget ran out while it waited for a free slot.

Against a Gateway whose polls hang, every slot holds a request until `timeout_s`: the run used
to wait for a slot past its budget, then send one more poll and wait for that too (2 x
`timeout_s` beyond the budget); now it ends one `timeout_s` after it at most.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from _http_server import serve
from _scripted_gateway import tracked_store

from asg_audit.collector import collect_sync
from asg_audit.config import load_config
from asg_audit.errors import ApiTransientError

TIMEOUT_S = 4.0
BUDGET_S = 1.0
IDS = [f"tsk_slots{i:03d}" for i in range(6)]
POLLED: list[str] = []


class _HangingPolls(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        task_id = self.path.split("/")[3]
        if task_id == "asg-audit-probe":
            code, body = 404, b'{"error":"not found"}'
        else:
            POLLED.append(task_id)
            time.sleep(TIMEOUT_S * 3)  # longer than the client waits
            code, body = 200, json.dumps({"task_id": task_id, "status": "pending"}).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hanging_gateway() -> Iterator[str]:
    POLLED.clear()
    with serve(_HangingPolls) as url:
        yield url


def test_no_poll_after_the_budget(tmp_path: Path, hanging_gateway: str) -> None:
    db = tracked_store(tmp_path, IDS)
    config = load_config(
        None,
        env={"ASG_API_KEY": "sk_sandbox_slots", "ASG_BASE_URL": hanging_gateway},
        overrides={"db_path": db, "collector": {"timeout_s": TIMEOUT_S}},
    )
    started = time.monotonic()
    # no poll was answered: the run says so (and stops) as after any Gateway giving nothing
    with pytest.raises(ApiTransientError, match="no usable answer"):
        collect_sync(config, run_for_s=BUDGET_S, concurrency=1, schedule="fixed")
    took = time.monotonic() - started
    # one poll went out before the budget ended, none after it
    assert len(POLLED) == 1, POLLED
    # the poll in flight is waited for (up to timeout_s), and nothing more
    assert took < BUDGET_S + TIMEOUT_S + 2.0, took
