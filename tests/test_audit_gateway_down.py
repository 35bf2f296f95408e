"""A Gateway that is down makes `audit` fail fast, once (tester, LOW/MEDIUM).

With a Gateway that accepts connections and never answers, the probe before collect took
33.8 s (three 10 s timeouts and their pauses) and billing then retried the same dead Gateway
for 188 s. The probe now gives up after 10 s without an HTTP answer (as the collector does),
and billing reuses this run's verdict: it fails at once with the same reason (exit 3 as
before) and asks nothing. The real command in a subprocess against real sockets.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _hardening_procs import asg_audit, clean_env
from _scripted_gateway import Answer, scripted_gateway, tracked_store

from asg_audit.store import open_store

KEY = "sk_sandbox_fixw"


@contextmanager
def _black_hole() -> Iterator[tuple[str, list[socket.socket]]]:
    """A server on 127.0.0.1 that accepts every connection and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(50)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


def _refused_url() -> str:
    """A URL of 127.0.0.1 where nothing listens (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def _job(tmp_path: Path, db: Path | None = None) -> Path:
    if db is None:
        db = tmp_path / "audit.duckdb"
        with open_store(db):
            pass
    config = tmp_path / "asg_audit.toml"
    config.write_text(
        f'db = "{db}"\n[audit]\nreport_dir = "{tmp_path / "reports"}"\nverify_chain = false\n'
        "collect_seconds = 60\n"
    )
    return config


def _audit(config: Path, url: str, timeout: float) -> tuple[int, dict[str, object], str, float]:
    t0 = time.monotonic()
    done = subprocess.run(
        asg_audit("audit", "--config", str(config), "--json"),
        capture_output=True,
        text=True,
        env=clean_env(ASG_API_KEY=KEY, ASG_BASE_URL=url),
        timeout=timeout,
    )
    elapsed = time.monotonic() - t0
    return done.returncode, json.loads(done.stdout), done.stderr, elapsed


def _step_seconds(log: str, step: str) -> float:
    (match,) = re.findall(rf"^{re.escape(step)}\s.*\[([0-9.]+) s\]$", log, re.MULTILINE)
    return float(match)


def test_a_gateway_that_never_answers_costs_one_probe_deadline_and_no_billing_retries(
    tmp_path: Path,
) -> None:
    config = _job(tmp_path)
    with _black_hole() as (url, accepted):
        # the old run took 3 min 50 s here: 33.8 s of probe, 188 s of billing retries
        code, outcome, log, elapsed = _audit(config, url, timeout=90)
        connections = len(accepted)
    steps = outcome["steps"]
    assert isinstance(steps, dict)
    assert code == 3 and outcome["exit_code"] == 3, log
    assert steps["collect"].startswith(f"failed: the Gateway at {url} is unreachable"), steps
    assert steps["billing"].startswith(f"failed: the Gateway at {url} is unreachable"), steps
    assert "found by collect in this run; not asked again" in steps["billing"]
    assert _step_seconds(log, "collect") < 13  # the 10 s deadline, not 3 x 10 s + pauses
    assert _step_seconds(log, "billing") < 1
    assert connections == 1, connections  # the probe's one request; billing asked nothing
    assert elapsed < 40
    assert outcome["report"] is not None  # the report is still written


def test_a_refused_connection_makes_billing_fail_at_once(tmp_path: Path) -> None:
    config = _job(tmp_path)
    url = _refused_url()
    code, outcome, log, _ = _audit(config, url, timeout=90)
    steps = outcome["steps"]
    assert isinstance(steps, dict)
    assert code == 3, log
    assert "ConnectError" in steps["collect"], steps
    assert steps["billing"] == steps["collect"] + " (found by collect in this run; not asked again)"
    assert _step_seconds(log, "collect") < 5  # three quick tries, pauses 0.5 and 1 s
    assert _step_seconds(log, "billing") < 1  # the old billing spent 7.8 s retrying


def test_a_gateway_the_collector_found_down_is_not_asked_for_billing(tmp_path: Path) -> None:
    """The probe gets its 404, then every poll a 503: the collector stops with the Gateway
    down, and billing sends no request (it used to retry 503s 6 times over ~8 s)."""
    ids = [f"tsk_w{i:03d}" for i in range(5)]

    def script(task_id: str, n: int) -> Answer:
        if task_id == "asg-audit-probe":
            return 404, b'{"error":"not found"}', {}
        return 503, b'{"error":"unavailable"}', {}

    with scripted_gateway(script) as gateway:
        config = _job(tmp_path, tracked_store(tmp_path, ids))
        code, outcome, log, _ = _audit(config, gateway.url, timeout=120)
        asked = [task_id for _, task_id, _ in gateway.log]
    steps = outcome["steps"]
    assert isinstance(steps, dict)
    assert code == 3, log
    assert steps["collect"].startswith(f"failed: the Gateway at {gateway.url} is down"), steps
    assert steps["billing"].startswith(f"failed: the Gateway at {gateway.url} is down"), steps
    assert steps["billing"].endswith("(found by collect in this run; not asked again)")
    billing_requests = [a for a in asked if a not in ids and a != "asg-audit-probe"]
    assert billing_requests == [], billing_requests


def test_a_chain_index_that_never_answers_costs_one_probe_deadline(tmp_path: Path) -> None:
    """The chain index's probe has the Gateway probe's deadline: one 10 s wait for an index
    that accepts and never answers, not three 10 s timeouts and their pauses (33.5 s)."""
    db = tmp_path / "audit.duckdb"
    export = tmp_path / "r.ndjson"
    record = {
        "task_id": "tsk_chain", "status": "settled", "consensus_label": "cat", "confidence": 1.0,
        "worker_count": 3, "agreement_count": 3, "bsv_txid": "ab" * 32, "total_cost_sats": 975,
        "created_at": "2026-10-01T00:00:00Z", "settled_at": "2026-10-01T00:00:40Z",
    }  # fmt: skip
    export.write_text(json.dumps(record) + "\n")
    ingested = subprocess.run(
        asg_audit("ingest", "--db", str(db), str(export)), capture_output=True, timeout=60
    )
    assert ingested.returncode == 0, ingested.stderr
    config = tmp_path / "asg_audit.toml"
    config.write_text(f'db = "{db}"\n[audit]\nreport_dir = "{tmp_path / "reports"}"\n')
    with _black_hole() as (url, accepted):
        done = subprocess.run(
            asg_audit("audit", "--config", str(config), "--json"),
            capture_output=True,
            text=True,
            env=clean_env(ASG_CHAIN_URL=url),  # no API key: collect and billing skipped
            timeout=90,
        )
        connections = len(accepted)
    steps = json.loads(done.stdout)["steps"]
    assert done.returncode == 3, done.stderr
    assert steps["verify-chain"].startswith(f"failed: the chain index at {url}"), steps
    assert "no HTTP answer in 10 s" in steps["verify-chain"], steps
    assert _step_seconds(done.stderr + done.stdout, "verify-chain") < 13
    assert connections == 1, connections


def test_the_probe_returns_on_the_status_line_not_on_a_trickled_body() -> None:
    """A service that answers its headers, then trickles its body a byte at a time, is there:
    the probe takes its answer at once instead of reading the body past the deadline."""
    from asg_audit.jobs import _first_answer

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 1000\r\n\r\n")
            while not stop.wait(0.3):
                try:
                    conn.sendall(b"x")
                except OSError:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        t0 = time.monotonic()
        answer, why = _first_answer(
            f"http://127.0.0.1:{listener.getsockname()[1]}/", {}, attempts=3, deadline_s=2.0
        )
        took = time.monotonic() - t0
    finally:
        stop.set()
        listener.close()
        thread.join(5)
    assert answer is not None and answer.status_code == 404, why
    assert took < 1.5, took  # reading the 1,000-byte body would take 300 s
