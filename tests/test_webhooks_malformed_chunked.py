"""A request whose chunked body is malformed is recorded as that, not as a sender that left.

A real `asg-audit serve-webhooks` on 127.0.0.1, for each HTTP parser: the server answers 400
itself; the `truncated` row has `http_status` 400 and says the chunked encoding is malformed.
"""

from __future__ import annotations

import socket
from pathlib import Path

import duckdb
import pytest
from _webhooks_server import free_port, payload, receiver_process, signed

from asg_audit.webhooks import WEBHOOK_PATH


@pytest.mark.parametrize("http", ["auto", "h11"])
def test_webhook_malformed_chunked_body_is_recorded_as_such(
    db: Path, tmp_path: Path, http: str
) -> None:
    config = tmp_path / "asg_audit.toml"
    config.write_text(f'[webhooks]\nhttp = "{http}"\n')
    port = free_port()
    body, headers = signed(payload("tsk_bad_chunks"))
    request = (
        (
            f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            f"Connection: close\r\nX-ASG-Signature: {headers['X-ASG-Signature']}\r\n\r\n"
        ).encode()
        + b"zz-not-a-size\r\n"
        + body
        + b"\r\n0\r\n\r\n"
    )
    with receiver_process(db, port, extra=("--config", str(config))):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(10)
            sock.sendall(request)
            answer = b""
            try:
                while chunk := sock.recv(65536):
                    answer += chunk
            except ConnectionResetError:
                pass
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT outcome, http_status, detail, body FROM webhook_deliveries"
        ).fetchall()
    finally:
        con.close()
    assert rows == [
        (
            "truncated",
            400,
            "the receiver closed the connection (the request's chunked encoding is malformed;"
            " answered 400) after 0 bytes; not authenticated, payload not kept",
            None,
        )
    ]
