"""The receiver bounds a request's head (request line + headers) whatever the HTTP parser.

A real `asg-audit serve-webhooks` on 127.0.0.1, for each `[webhooks] http` setting: an endless
header line from an unauthenticated client is cut (431 or closed) while the receiver's memory
stays flat; heads under the limit, several on one keep-alive connection, are still delivered.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import duckdb
import httpx
import pytest
from _webhooks_server import free_port, payload, receiver_process, signed

from asg_audit.webhooks import MAX_HEAD_BYTES, WEBHOOK_PATH

pytestmark = pytest.mark.parametrize("http", ["auto", "httptools", "h11"])


def _serve(db: Path, tmp_path: Path, http: str):  # type: ignore[no-untyped-def]
    config = tmp_path / "asg_audit.toml"
    config.write_text(f'[webhooks]\nhttp = "{http}"\n')
    port = free_port()
    return port, receiver_process(db, port, extra=("--config", str(config)))


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _read_answer(sock: socket.socket) -> bytes:
    """Whatever the receiver answers before it closes (b"" if it just closes)."""
    sock.settimeout(10)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    return got


def test_webhook_head_just_over_the_limit_is_refused_and_closed(db, tmp_path, http):
    port, receiver = _serve(db, tmp_path, http)
    with receiver, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nX-Big: ".encode())
        sock.sendall(b"a" * (MAX_HEAD_BYTES + 1024))  # never ends: no CRLF
        answer = _read_answer(sock)
    status = answer.split(b"\r\n", 1)[0]
    # httptools answers 431; Uvicorn answers h11's limit with its 400 "Invalid HTTP request".
    assert status in (b"HTTP/1.1 431 Request Header Fields Too Large", b"HTTP/1.1 400 Bad Request")
    assert b"connection: close" in answer.lower()


def test_webhook_endless_header_is_cut_and_memory_stays_bounded(db, tmp_path, http):
    port, receiver = _serve(db, tmp_path, http)
    with receiver as proc:
        before = _rss_kib(proc.pid)
        sent = 0
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(10)
            sock.sendall(f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nX-Big: ".encode())
            chunk = b"a" * (1 << 20)
            try:
                for _ in range(64):  # 64 MiB of one header line
                    sock.sendall(chunk)
                    sent += 1
            except OSError:
                pass
            time.sleep(0.5)
            grown = _rss_kib(proc.pid) - before  # the sender still holds its connection
        # Cut within a few MiB (the limit plus the socket buffers), not after 64.
        assert sent < 16, f"{sent} MiB of header accepted"
        assert grown < 16 * 1024, f"receiver grew {grown} KiB"
        # The receiver still serves deliveries.
        body, headers = signed(payload("tsk_after_big_head"))
        r = httpx.post(f"http://127.0.0.1:{port}{WEBHOOK_PATH}", content=body, headers=headers)
        assert r.status_code == 200 and r.json()["outcome"] == "stored"
    con = duckdb.connect(str(db), read_only=True)
    try:
        stored = con.execute(
            "SELECT count(*) FROM observations WHERE task_id = 'tsk_after_big_head'"
        ).fetchone()
    finally:
        con.close()
    assert stored == (1,)


def test_webhook_heads_under_the_limit_on_one_keepalive_connection_are_delivered(
    db, tmp_path, http
):
    # Three requests on one connection whose heads add up to more than the limit: the count
    # is per request, so each is delivered.
    filler = "f" * (MAX_HEAD_BYTES // 2)
    port, receiver = _serve(db, tmp_path, http)
    with receiver, httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        for i in range(3):
            body, headers = signed(payload(f"tsk_keepalive_{i}"))
            r = client.post(WEBHOOK_PATH, content=body, headers={**headers, "X-Filler": filler})
            assert r.status_code == 200 and r.json()["outcome"] == "stored", r.text
