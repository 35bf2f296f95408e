"""A final answer the normaliser rejects, while other tasks keep the run going (tester T7 #3),
and the Gateway's error text in collect's messages (tester T7 #4).

#3: a 200 `settled` naming another task (`task_id_mismatch`) made its task `done` until the
write's verdict, and a trickle of answers waited up to 30 s for that write: with other tasks
pending (a 202, a 500) the task was polled once in the whole run, the progress line left out the
tasks parked for the next run (`pending 0` against the summary's `still pending 6`), its rate
went negative when the settled count was taken back, and the stop message counted the pending
tasks before the last write put the rejected one back. The counts shown must be poll_state's.

#4: a 500's error message (a newline, ESC, BEL, a bidi override) and a Location header went raw
into the error line and into `runs.stats.error`.

Real stores, a real HTTP server on 127.0.0.1, real time (a deadline of 12 s).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from _hardening_procs import query
from _scripted_gateway import Answer, pending_body, scripted_gateway, settled_body, tracked_store

from asg_audit import gateway as gw
from asg_audit import pollrun
from asg_audit.collector import collect
from asg_audit.config import load_config
from asg_audit.errors import ApiError
from asg_audit.pollprogress import collect_line
from asg_audit.pollwriter import CollectProgress, CollectProgressReporter

KEY = "sk_sandbox_t7counts"
DEADLINE_S = 12.0
RAW = re.compile(r"[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
HOSTILE = "<script>alert(2)</script>\n| a | b | key=x\x1b[31m\x07\u202e"


def _config(db: Path, url: str, deadline_s: float = DEADLINE_S):
    return load_config(
        None,
        env={"ASG_API_KEY": KEY, "ASG_BASE_URL": url},
        overrides={"db_path": str(db), "collector": {"max_rps": 20.0, "deadline_s": deadline_s}},
    )


def _error_500(task_id: str, n: int) -> Answer:
    return 500, json.dumps({"error": {"message": HOSTILE}}).encode(), {}


def _script(task_id: str, n: int) -> Answer:
    if task_id == "h2":
        return _error_500(task_id, n)
    if task_id == "h6":  # settled, but another task's result: task_id_mismatch
        return 200, settled_body("h66"), {}
    if task_id == "h4":
        return 200, b'{"task_id": "h4", "stat', {}
    if task_id == "h9":
        return 202, pending_body(task_id), {}
    return 200, settled_body(task_id), {}


class _Recorder(CollectProgressReporter):
    """Keeps every snapshot and line (no terminal, no log)."""

    def __init__(self) -> None:
        super().__init__(live=False)
        self.snaps: list[CollectProgress] = []
        self.lines: list[str] = []

    def update(self, snap: object) -> None:
        assert isinstance(snap, CollectProgress)
        self.snaps.append(snap)
        self.lines.append(self.line(snap))


def _pending_rows(db: Path) -> set[str]:
    return {r[0] for r in query(db, "SELECT task_id FROM poll_state WHERE state = 'pending'")}


def test_a_rejected_final_answer_is_retried_like_any_unusable_body_and_the_counts_agree(
    tmp_path: Path,
) -> None:
    ids = ["h1", "h2", "h4", "h6", "h9"]
    db = tracked_store(tmp_path, ids)
    progress = _Recorder()
    with scripted_gateway(_script) as gateway:
        summary = asyncio.run(collect(_config(db, gateway.url), progress=progress))
        h4, h6 = gateway.codes("h4"), gateway.codes("h6")
    # polled again within the run, with the backoff of any unusable body (h4: not JSON)
    assert len(h6) >= 2 and abs(len(h6) - len(h4)) <= 1, (h4, h6)
    attempts = dict(query(db, "SELECT task_id, attempts FROM poll_state"))
    assert attempts["h6"] == len(h6)
    assert summary.stats["unusable_bodies"] == len(h4) + len(h6)
    # the summary, the last progress line and poll_state say the same
    states = dict(query(db, "SELECT task_id, state FROM poll_state"))
    assert states["h6"] == "pending" and states["h1"] == "done"
    pending = _pending_rows(db)
    last = progress.snaps[-1]
    assert summary.pending == len(pending) == last.pending
    assert summary.settled == last.settled == 1
    assert f"pending {len(pending)} " in progress.lines[-1]
    assert not any("-0.0 tasks/s" in line or "| -" in line for line in progress.lines)


def test_the_stop_message_counts_a_final_answer_its_last_write_put_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Gateway goes down (h2: 500s) while h6's rejected answer still waits for its write
    (a verdict slower than the outage, as every trickle's was): the message, the progress line
    and the summary count both tasks pending, as poll_state does."""
    monkeypatch.setattr(pollrun, "VERDICT_WAIT_S", 3600.0, raising=False)
    db = tracked_store(tmp_path, ["h2", "h6"])
    progress = _Recorder()
    with scripted_gateway(_script) as gateway, pytest.raises(ApiError) as failure:
        # h6's answer may end an outage begun by h2's first 500: 20 s for three more
        asyncio.run(collect(_config(db, gateway.url, 20.0), progress=progress))
    message = str(failure.value)
    assert "is down" in message
    assert _pending_rows(db) == {"h2", "h6"}
    assert "stopped, 2 tasks stay pending" in message
    assert progress.snaps[-1].pending == 2 and progress.snaps[-1].settled == 0
    recorded = query(db, "SELECT stats->>'$.error' FROM runs WHERE status = 'failed'")
    assert recorded == [(message,)]


def test_the_gateways_error_text_is_one_printable_line_in_the_message_and_in_runs(
    tmp_path: Path,
) -> None:
    db = tracked_store(tmp_path, ["h2"])
    with scripted_gateway(_error_500) as gateway, pytest.raises(ApiError) as failure:
        asyncio.run(collect(_config(db, gateway.url)))
    message = str(failure.value)
    assert "<script>alert(2)</script>\\x0a| a | b |" in message, message
    assert not RAW.search(message), message
    (recorded,) = query(db, "SELECT stats->>'$.error' FROM runs WHERE status = 'failed'")[0]
    assert not RAW.search(recorded) and "\\x1b" in recorded


def test_gateway_outcomes_carry_no_raw_control_character(tmp_path: Path) -> None:
    """A 500's and a 401's error text and a redirect's Location, as the outcomes give them."""

    def script(task_id: str, n: int) -> Answer:
        body = json.dumps({"error": {"message": HOSTILE}}).encode()
        if task_id == "t500":
            return 500, body, {}
        if task_id == "t401":
            return 401, body, {}
        return 302, b"", {"Location": "http://elsewhere.example/\x1b[2J\x07x"}

    async def fetch(url: str) -> list[gw.Outcome]:
        async with gw.GatewayClient(url, KEY) as client:
            return [await client.fetch_result(t) for t in ("t500", "t401", "t302")]

    with scripted_gateway(script) as gateway:
        server, auth, redirect = asyncio.run(fetch(gateway.url))
    assert isinstance(server, gw.ServerError) and isinstance(auth, gw.AuthRefused)
    assert isinstance(redirect, gw.UnexpectedStatus) and redirect.location is not None
    for text in (server.message, auth.message, redirect.location):
        assert not RAW.search(text), text
    assert "\\x0a" in server.message and "\\x1b" in redirect.location


def test_the_progress_line_never_shows_a_negative_rate() -> None:
    snap = CollectProgress(settled=0, pending=2, not_found=0, expired=0, throttled=0, requests=3)
    line = collect_line(snap, -0.04, False)
    assert "| 0.0 tasks/s" in line and "-" not in line.split("tasks/s")[0].rsplit("|", 1)[1]
