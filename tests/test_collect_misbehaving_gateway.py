"""`collect` against a misbehaving Gateway on 127.0.0.1 (tester V #2, #4, #5, #6).

A 200 without a status is no final status; a Gateway that goes away or answers only 5xx
makes `collect` (and `audit`'s collect step) exit 3 within its deadline, with the reason in
`runs`; a stop is not held up by requests that hang; a task seen settled that the Gateway
later reports in progress is a conflict of its settled result, and is not polled again.
Real stores, real HTTP servers, the real command in a subprocess where the exit code matters.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest
from _hardening_procs import query
from _scripted_gateway import Answer, pending_body, scripted_gateway, settled_body, tracked_store

from asg_audit.clock import ScaledClock
from asg_audit.collector import collect
from asg_audit.config import load_config
from asg_audit.errors import ApiTransientError
from asg_audit.ingest_files import ingest_paths
from asg_audit.normalize import RULES_VERSION

KEY = "sk_sandbox_fixv"
IDS = [f"tsk_v{i}" for i in range(1, 7)]


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ASG_API_KEY", "API_KEY")}
    env.update(ASG_API_KEY=KEY, ASG_BASE_URL=url)
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "asg_audit", *args]


def _states(db: Path) -> dict[str, str]:
    return dict(query(db, "SELECT task_id, state FROM poll_state"))


def _config(db: Path, url: str, **collector: float):
    return load_config(
        None,
        env={"ASG_API_KEY": KEY, "ASG_BASE_URL": url},
        overrides={"db_path": str(db), "collector": {"max_rps": 50.0, **collector}},
    )


# -- #2: a 200 without a status ---------------------------------------------------------------


def test_a_200_without_a_status_is_retried_and_kept_never_makes_the_task_failed(
    tmp_path: Path,
) -> None:
    """`{"error": ...}`, `"status": null` and `"status": ""` on a 200 are unusable answers:
    retried with backoff and stored as evidence; the task settles when the Gateway recovers."""
    bad = [
        json.dumps({"error": "internal error"}).encode(),
        json.dumps({"task_id": "tsk_b", "status": None}).encode(),
        json.dumps({"task_id": "tsk_b", "status": ""}).encode(),
    ]

    def script(task_id: str, n: int) -> Answer:
        if task_id == "tsk_b" and n <= len(bad):
            return 200, bad[n - 1], {}
        if n == 1:
            return 202, pending_body(task_id), {}
        return 200, settled_body(task_id), {}

    db = tracked_store(tmp_path, ["tsk_a", "tsk_b"])
    with scripted_gateway(script) as gateway:
        summary = asyncio.run(
            collect(
                _config(db, gateway.url, deadline_s=600.0),
                clock=ScaledClock(time.time(), time_scale=0.02),
                schedule="fixed",
            )
        )
        codes = gateway.codes("tsk_b")
    assert summary.status == "completed"
    assert (summary.settled, summary.failed, summary.pending) == (2, 0, 0)
    assert _states(db) == {"tsk_a": "done", "tsk_b": "done"}
    assert codes == [200, 200, 200, 200]
    assert summary.stats["unusable_bodies"] == 3 and summary.stats["retries"] == 3
    # each status-less answer is kept (an observation without a status, or a reject)
    kept = query(
        db,
        "SELECT (SELECT count(*) FROM observations WHERE task_id = 'tsk_b' AND http_status = 200"
        " AND coalesce(trim(status), '') = '') + (SELECT count(*) FROM rejects"
        " WHERE origin LIKE '%tsk_b%')",
    )[0][0]
    assert kept == 3
    assert query(db, "SELECT status FROM results WHERE task_id = 'tsk_b'") == [("settled",)]


# -- #4: a Gateway that is down ----------------------------------------------------------------


def _503(task_id: str, n: int) -> Answer:
    return 503, b"<html>Service Unavailable</html>", {"Content-Type": "text/html"}


def test_collect_exits_3_within_its_deadline_when_the_gateway_answers_only_503(
    tmp_path: Path,
) -> None:
    db = tracked_store(tmp_path, IDS)
    with scripted_gateway(_503) as gateway:
        started = time.monotonic()
        done = subprocess.run(
            _cli("collect", "--db", str(db), "--deadline", "3"),
            env=_env(gateway.url),
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - started
    assert done.returncode == 3, done.stderr[-2000:]
    assert took < 20  # the deadline is 3 s (the old run took 140 s and exited 0)
    errors = [line for line in done.stderr.splitlines() if line.startswith("asg-audit: error:")]
    assert len(errors) == 1, done.stderr
    line = errors[0]
    assert f"the Gateway at {gateway.url} is down: no usable answer for" in line
    assert "with a 5xx (503: " in line and "since 20" in line
    assert f"{len(IDS)} tasks stay pending" in line
    assert set(_states(db).values()) == {"pending"}  # nothing made final
    runs = subprocess.run(
        _cli("runs", "--db", str(db)), capture_output=True, text=True, timeout=60, env=_env("")
    )
    collect_line = next(r for r in runs.stdout.splitlines() if " collect " in r)
    assert " failed  the Gateway at " in collect_line and "is down" in collect_line


class _GoesAway(socketserver.ThreadingTCPServer):
    """Answers each task's first request with a 202; then closes every connection unanswered
    (a Gateway gone down behind a load balancer that still accepts connections)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.asked: dict[str, int] = {}
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _GoesAwayHandler)


class _GoesAwayHandler(socketserver.StreamRequestHandler):
    server: _GoesAway

    def handle(self) -> None:
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                chunk = self.rfile.readline()
                if not chunk:
                    return
                head += chunk
            task_id = head.split(b" ")[1].decode().split("/")[3]
            with self.server.lock:
                n = self.server.asked[task_id] = self.server.asked.get(task_id, 0) + 1
            if n > 1:
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            body = pending_body(task_id)
            self.wfile.write(
                b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )


@contextmanager
def _goes_away() -> Iterator[_GoesAway]:
    server = _GoesAway()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_collect_fails_when_the_gateway_goes_away_after_answering(tmp_path: Path) -> None:
    """Answers first, then only dropped connections: the run stops `failed` once nothing
    usable came for 10 s (on the run's clock), long before its deadline, and says why."""
    db = tracked_store(tmp_path, IDS)
    with _goes_away() as server:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        clock = ScaledClock(time.time(), time_scale=0.05)
        started = clock.now()
        with pytest.raises(ApiTransientError) as failure:
            asyncio.run(collect(_config(db, url, deadline_s=3600.0), clock=clock, schedule="fixed"))
        took = clock.now() - started
    message = str(failure.value)
    assert f"the Gateway at {url} is down: no usable answer for" in message
    assert "with no answer (connection errors, timeouts)" in message
    assert f"{len(IDS)} tasks stay pending" in message
    assert took < 60  # clock seconds; the deadline is 3,600
    status, error = query(
        db,
        "SELECT status, json_extract_string(stats, '$.error') FROM runs WHERE command = 'collect'",
    )[0]
    assert status == "failed" and error == message
    assert set(_states(db).values()) == {"pending"}
    # the 202s of before are stored: nothing lost
    assert query(db, "SELECT count(*) FROM observations WHERE http_status = 202")[0][0] == len(IDS)


def test_audit_and_collect_agree_that_a_gateway_answering_only_503_is_down(
    tmp_path: Path,
) -> None:
    db = tracked_store(tmp_path, IDS)
    config = tmp_path / "asg_audit.toml"
    config.write_text(
        f'db = "{db}"\n[audit]\nreport_dir = "{tmp_path / "reports"}"\nverify_chain = false\n'
        "[collector]\ndeadline_s = 3.0\n"
    )
    with scripted_gateway(_503) as gateway:
        done = subprocess.run(
            _cli("audit", "--config", str(config), "--json"),
            env=_env(gateway.url),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 3, done.stderr[-2000:]
    outcome = json.loads(done.stdout.splitlines()[-1])
    step = outcome["steps"]["collect"]
    assert step.startswith(f"failed: the Gateway at {gateway.url} is down"), step
    assert "503: " in step


# -- #5: a stop while every slot holds a hung request --------------------------------------------


def test_sigterm_with_every_slot_held_by_a_hung_request_stops_at_once(tmp_path: Path) -> None:
    db = tracked_store(tmp_path, IDS)
    accepted = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:  # accepts, reads nothing, never answers
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            accepted.set()

    threading.Thread(target=accept, daemon=True).start()
    (tmp_path / "c.toml").write_text("[collector]\ntimeout_s = 60.0\n")
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    proc = subprocess.Popen(
        [
            *_cli("collect", "--db", str(db), "--config", str(tmp_path / "c.toml")),
            *("--concurrency", "2", "--deadline", "100"),
        ],
        env=_env(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert accepted.wait(30)
        time.sleep(1.0)  # both slots busy, the dispatcher waiting for one
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        listener.close()
        for conn in held:
            conn.close()
    assert proc.returncode == 3, err[-2000:]
    # was the request's full timeout (60 s); the bound leaves room for a loaded machine's exit
    assert took < 10, took
    assert "collect interrupted" in err
    assert query(db, "SELECT status FROM runs WHERE command = 'collect'") == [("interrupted",)]


# -- #6: a settled task reported in progress afterwards ------------------------------------------


def _export(path: Path, ids: list[str], status: str = "settled") -> Path:
    lines = [
        {
            "task_id": i,
            "status": status,
            "consensus_label": "cat",
            "confidence": 1.0,
            "worker_count": 3,
            "agreement_count": 3,
            "bsv_txid": "a" * 64,
            "cost_sats": 975,
            "created_at": "2026-10-01T00:00:00Z",
            "settled_at": "2026-10-01T00:00:47Z",
        }
        for i in ids
    ]
    if status != "settled":
        for line in lines:
            for k in ("consensus_label", "bsv_txid", "cost_sats", "settled_at", "confidence"):
                line.pop(k)
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def test_a_settled_task_the_gateway_reports_in_progress_is_a_conflict_polled_once(
    tmp_path: Path,
) -> None:
    """tsk_r1 (202 in_progress) and tsk_r2 (200 verified) were settled in an export: each
    reversal is stored and counted as a conflict, the settled result stays, the task is not
    polled again. tsk_new (not seen settled) answering 202 is no conflict."""

    def script(task_id: str, n: int) -> Answer:
        if task_id == "tsk_r2":
            return 200, json.dumps({"task_id": task_id, "status": "verified"}).encode(), {}
        body = {"status": "in_progress", "message": "Task is still being labeled."}
        return 202, json.dumps(body).encode(), {}

    ids = ["tsk_r1", "tsk_r2", "tsk_new"]
    db = tracked_store(tmp_path, ids)
    ingest_paths(db, [_export(tmp_path / "export.ndjson", ["tsk_r1", "tsk_r2"])])
    with scripted_gateway(script) as gateway:
        runs = []
        for _ in range(2):
            runs.append(
                subprocess.run(
                    _cli("collect", "--db", str(db), "--deadline", "3"),
                    env=_env(gateway.url),
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
            )
        asked = {i: len(gateway.codes(i)) for i in ids}
    first, second = runs
    assert first.returncode == 0, first.stderr[-2000:]
    assert "settled before, not settled now: 2 (the settled result kept" in first.stdout
    assert second.returncode == 0 and "0 polled, 3 already final" in second.stdout
    assert asked["tsk_r1"] == 1 and asked["tsk_r2"] == 1
    rows = dict(
        (r[0], r[1:])
        for r in query(db, "SELECT task_id, status, conflict_count, consensus_label FROM results")
    )
    assert rows["tsk_r1"] == ("settled", 1, "cat")
    assert rows["tsk_r2"] == ("settled", 1, "cat")
    assert rows["tsk_new"][:2] == ("in_progress", 0)
    assert _states(db) == {"tsk_r1": "done", "tsk_r2": "done", "tsk_new": "expired"}
    stats = json.loads(
        query(db, "SELECT stats FROM runs WHERE command = 'collect' ORDER BY started_at")[0][0]
    )
    assert stats["reversals"] == 2 and stats["reversed"] == 2 and stats["settled"] == 0
    # visible where the other conflicts are: the report's changed-after-settlement check
    report = subprocess.run(
        _cli("report", "--db", str(db), "--out", str(tmp_path / "rep"), "--format", "json"),
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(""),
    )
    assert report.returncode in (0, 1), report.stderr[-2000:]
    found = json.loads(next((tmp_path / "rep").rglob("summary.json")).read_text())
    text = json.dumps(found)
    assert "result.changed_after_settlement" in text


def test_an_export_of_pending_states_ingested_after_the_settlement_is_no_conflict(
    tmp_path: Path,
) -> None:
    """A reversal is a poll's first-hand answer; a file's records carry their ingest time, so
    an older export of the pending state ingested later changes nothing."""
    db = tmp_path / "a.duckdb"
    ingest_paths(db, [_export(tmp_path / "settled.ndjson", ["tsk_x"])])
    ingest_paths(db, [_export(tmp_path / "pending.ndjson", ["tsk_x"], status="in_progress")])
    assert query(db, "SELECT status, conflict_count, observation_count FROM results") == [
        ("settled", 0, 2)
    ]


def test_a_store_derived_before_the_reversal_rule_counts_its_reversals_when_next_written(
    tmp_path: Path,
) -> None:
    """Rules version 3 (the reversal rule) is a change of how results are derived: a store
    whose results were derived by version 2 (a stored reversal not counted) gets them derived
    again by its next writer, even when no task is written again."""
    db = tracked_store(tmp_path, ["tsk_r1"])
    ingest_paths(db, [_export(tmp_path / "export.ndjson", ["tsk_r1"])])

    def script(task_id: str, n: int) -> Answer:
        return 202, json.dumps({"status": "in_progress"}).encode(), {}

    with scripted_gateway(script) as gateway:
        done = subprocess.run(
            _cli("collect", "--db", str(db), "--deadline", "3"),
            env=_env(gateway.url),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert query(db, "SELECT conflict_count FROM results") == [(1,)]
    # the store as version 2 left it: the reversal stored, its result not counting it
    con = duckdb.connect(str(db))
    con.execute("UPDATE results SET conflict_count = 0")
    con.execute("UPDATE store_settings SET value = '2' WHERE key = 'rules_version'")
    con.close()

    (tmp_path / "none.csv").write_text("task_id,task_type,consensus_threshold,options,created_at\n")
    track = subprocess.run(  # any writer; this one writes no result
        _cli("track", str(tmp_path / "none.csv"), "--db", str(db)),
        env=_env(""),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "judged again" in track.stderr, track.stderr[-2000:]
    assert query(db, "SELECT status, conflict_count FROM results") == [("settled", 1)]
    assert query(db, "SELECT value FROM store_settings WHERE key = 'rules_version'") == [
        (str(RULES_VERSION),)
    ]
