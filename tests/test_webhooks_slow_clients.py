"""Slow clients cannot hold the webhook receiver: a request deadline and a connection cap.

Tester T #4: `serve-webhooks` kept connections that sent half a request open forever, until
the process ran out of file descriptors and refused real deliveries. A real receiver
(`asg-audit serve-webhooks`, with each HTTP parser) on 127.0.0.1, a 2 s request deadline
and a cap of 20 connections: 50 connections send half a request head or a head and half a
body and then nothing. A signed delivery and /healthz still succeed at once; every slow
connection is closed by the deadline (or to make room under the cap), said in a few log lines,
not one a byte. A request sent in pieces within the deadline, and a second request on a
kept-alive connection opened longer ago than the deadline, are delivered.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx
import pytest
from _webhooks_server import SECRET, free_port, receiver_process

from asg_audit.webhooks import WEBHOOK_PATH, sign_body

pytestmark = pytest.mark.parametrize("http", ["httptools", "h11"])

DEADLINE_S = 2.0
CAP = 20


@contextlib.contextmanager
def _receiver(db: Path, http: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`asg-audit serve-webhooks` with the deadline and the cap set in `[webhooks]`."""
    config = db.parent / "asg_audit.toml"
    config.write_text(
        f'[webhooks]\nhttp = "{http}"\nrequest_timeout_seconds = {DEADLINE_S}\n'
        f"max_connections = {CAP}\n"
    )
    port = free_port()
    with receiver_process(db, port, extra=("--config", str(config))) as proc:
        yield port, proc


def _delivery(task_id: str) -> tuple[bytes, dict[str, str]]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = json.dumps(
        {
            "event": "task.settled",
            "task_id": task_id,
            "consensus_label": "a",
            "confidence": 1.0,
            "bsv_txid": "ab" * 32,
            "settled_at": now,
            "timestamp": now,
        }
    ).encode()
    return body, {"Content-Type": "application/json", "X-ASG-Signature": sign_body(body, SECRET)}


def _raw_request(task_id: str) -> bytes:
    body, headers = _delivery(task_id)
    head = f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


def _state(sock: socket.socket) -> str:
    """'open' while the receiver keeps the connection; else what it said before closing."""
    sock.setblocking(False)
    try:
        data = sock.recv(200)
    except BlockingIOError:
        return "open"
    except ConnectionResetError:
        return "closed"
    return "closed: " + data.split(b"\r\n", 1)[0].decode() if data else "closed"


def _read_answer(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_slow_clients_do_not_block_deliveries_and_are_closed(tmp_path: Path, http: str) -> None:
    db = tmp_path / "r.duckdb"
    with _receiver(db, http) as (port, proc):
        slow = []
        for i in range(50):
            sock = socket.create_connection(("127.0.0.1", port))
            if i % 2:  # half a head
                sock.sendall(f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode())
            else:  # a whole head, half a body
                sock.sendall(
                    f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 300\r\n\r\n"
                    '{"event": '.encode()
                )
            slow.append(sock)
        time.sleep(0.3)
        # a real delivery and the health check, at once, while the slow ones hold their places
        body, headers = _delivery("tsk_slowfix")
        started = time.monotonic()
        answer = httpx.post(
            f"http://127.0.0.1:{port}{WEBHOOK_PATH}", content=body, headers=headers, timeout=5
        )
        took = time.monotonic() - started
        assert answer.status_code == 200 and answer.json()["outcome"] == "stored", answer.text
        assert took < 3, took  # not held behind the slow ones (the client gives up at 5 s)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        # the cap: the oldest slow connections were closed to make room (503 to a head)
        states = [_state(s) for s in slow]
        assert states.count("open") <= CAP, states
        assert "closed: HTTP/1.1 503 Service Unavailable" in states
        # the deadline: every one of them is closed soon after it
        time.sleep(DEADLINE_S + 1.5)
        states = [_state(s) for s in slow]
        assert "open" not in states, states
        assert "closed: HTTP/1.1 408 Request Timeout" in states
        for sock in slow:
            sock.close()
        proc.terminate()
        out, err = (b.decode() for b in proc.communicate(timeout=30))
    assert proc.returncode == 0, err
    # logged once an event (a few aggregated lines), not once a byte or once a connection
    closed = [line for line in err.splitlines() if "closed:" in line]
    assert 1 <= len(closed) <= 12, err
    assert any(f"no whole request head within {DEADLINE_S:g} s" in line for line in closed)
    assert any(f"limit of {CAP} connections" in line for line in closed)
    assert SECRET not in out + err
    assert "50 slow connections closed" in out.splitlines()[-1], out
    with duckdb.connect(str(db), read_only=True) as con:
        stored = con.execute("SELECT task_id FROM results").fetchall()
    assert stored == [("tsk_slowfix",)]


def test_slow_clients_requests_in_time_are_delivered(tmp_path: Path, http: str) -> None:
    db = tmp_path / "r.duckdb"
    # sent in pieces over 1 s: within the deadline
    with (
        _receiver(db, http) as (port, _proc),
        socket.create_connection(("127.0.0.1", port)) as sock,
    ):
        raw = _raw_request("tsk_pieces")
        for i in range(0, len(raw), len(raw) // 4 + 1):
            sock.sendall(raw[i : i + len(raw) // 4 + 1])
            time.sleep(0.25)
        assert _read_answer(sock).startswith(b"HTTP/1.1 200"), "pieces"
        # the deadline counts from a request's first byte, not from the connection's
        # opening: a second request on this connection, past the first deadline, is fine
        time.sleep(DEADLINE_S + 0.5 - 1.0)
        sock.sendall(_raw_request("tsk_second"))
        assert _read_answer(sock).startswith(b"HTTP/1.1 200"), "second"
    with duckdb.connect(str(db), read_only=True) as con:
        stored = con.execute("SELECT task_id FROM results ORDER BY 1").fetchall()
    assert stored == [("tsk_pieces",), ("tsk_second",)]
