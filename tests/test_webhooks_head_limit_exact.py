"""The 64 KiB limit on a request's head is exact, whatever the sizes of the reads.

A request's head is its request line, headers and the blank line that ends them. A real
`asg-audit serve-webhooks` on 127.0.0.1, for each HTTP parser: a head of exactly
MAX_HEAD_BYTES reaches the signature check (401, a `bad_signature` row), and so does the
tester's 65,000-byte `X-Junk` header (a head of 65,466 bytes: under 64 KiB); one byte more, or
a 70,000 / 100,000-byte `X-Junk` header, is answered 431 and stored nowhere, whether the head
comes in one write or in several (each read by the receiver on its own).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import duckdb
import pytest
from _webhooks_server import free_port, payload, receiver_process, signed

from asg_audit.webhooks import MAX_HEAD_BYTES, WEBHOOK_PATH

FORGED = "sha256=" + "0" * 64


def _request(head_bytes: int | None = None, junk: int | None = None) -> bytes:
    """A POST whose head is `head_bytes` long (padded by one X-Junk header), or whose X-Junk
    value is `junk` bytes; its body is signed with a forged signature."""
    body, _ = signed(payload("tsk_head_limit"))
    start = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Connection: close\r\nX-ASG-Signature: {FORGED}\r\n"
        f"Content-Length: {len(body)}\r\nX-Junk: "
    ).encode()
    end = b"\r\n\r\n"
    if junk is None:
        assert head_bytes is not None
        junk = head_bytes - len(start) - len(end)
    head = start + b"j" * junk + end
    if head_bytes is not None:
        assert len(head) == head_bytes
    return head + body


def _send(port: int, data: bytes, split: bool) -> bytes:
    """Send `data` (in one write, or in writes of 16 KiB apart, the last one of at most
    24 KiB holding the rest) and return what the receiver answers before it closes."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(10)
        parts = [data]
        if split:
            step = 16 * 1024
            parts = []
            while len(data) > step + 8 * 1024:
                parts.append(data[:step])
                data = data[step:]
            parts.append(data)
        try:
            for part in parts:
                sock.sendall(part)
                if split:
                    time.sleep(0.05)
        except OSError:
            pass  # refused mid-send: the answer may still be there
        got = b""
        try:
            while chunk := sock.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
    return got


@pytest.mark.parametrize("http", ["auto", "h11"])
def test_webhook_head_limit_is_exact_in_one_write_and_split(
    db: Path, tmp_path: Path, http: str
) -> None:
    config = tmp_path / "asg_audit.toml"
    config.write_text(f'[webhooks]\nhttp = "{http}"\n')
    port = free_port()
    at_limit = 0
    with receiver_process(db, port, extra=("--config", str(config))):
        for split in (False, True):
            within = [_request(head_bytes=n) for n in (MAX_HEAD_BYTES - 1, MAX_HEAD_BYTES)]
            within.append(_request(junk=65_000))
            for request in within:
                answer = _send(port, request, split)
                assert answer.startswith(b"HTTP/1.1 401 "), (len(request), split, answer[:80])
                at_limit += 1
            over = [_request(head_bytes=MAX_HEAD_BYTES + 1)]
            over += [_request(junk=n) for n in (70_000, 100_000)]
            for request in over:
                answer = _send(port, request, split)
                status = answer.split(b"\r\n", 1)[0]
                assert status == b"HTTP/1.1 431 Request Header Fields Too Large", (
                    len(request),
                    split,
                    answer[:80],
                )
                assert b"connection: close" in answer.lower()
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT outcome, count(*) FROM webhook_deliveries GROUP BY 1 ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    # only the heads within the limit reached the app
    assert rows == [("bad_signature", at_limit)]
