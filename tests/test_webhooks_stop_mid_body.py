"""`serve-webhooks` stopped (SIGTERM) while senders are still sending their bodies.

A real receiver subprocess on 127.0.0.1 and real slow senders (raw sockets): the stop is clean
(no traceback, at most one log line, exit 0), a body still arriving when the grace period ends
gets a `truncated` row, answered 503 so that the provider retries, and a body that completes
within the grace period is stored as usual.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb

from tests._webhooks_server import free_port, payload, receiver_process, signed

SLOW_SENDERS = 30
DECLARED = 5000


def _open_slow_sender(port: int) -> socket.socket:
    """Headers announcing 5000 bytes, then one byte of body, then silence."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(
        b"POST /webhooks/asg HTTP/1.1\r\nHost: x\r\n"
        + f"Content-Length: {DECLARED}\r\n".encode()
        + b"X-ASG-Signature: sha256="
        + b"0" * 64
        + b"\r\n\r\n{"
    )
    return s


def _read_answer(s: socket.socket, timeout: float = 10.0) -> bytes:
    s.settimeout(timeout)
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def test_sigterm_mid_body_is_clean_and_every_cut_body_gets_a_truncated_row(
    tmp_path: Path,
) -> None:
    db = tmp_path / "wh.duckdb"
    config = tmp_path / "asg_audit.toml"
    config.write_text("[webhooks]\ngraceful_shutdown_seconds = 2\n")
    port = free_port()
    with receiver_process(db, port, extra=("--config", str(config))) as proc:
        slow = [_open_slow_sender(port) for _ in range(SLOW_SENDERS)]
        # One sender that is mid-body at the stop but finishes within the grace period.
        body, headers = signed(payload("tsk_finishes_in_grace"))
        head = (
            b"POST /webhooks/asg HTTP/1.1\r\nHost: x\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        finisher = socket.create_connection(("127.0.0.1", port))
        finisher.sendall(head + body[:10])
        time.sleep(1.0)  # every request is in the handler, reading its body
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        finisher.sendall(body[10:])
        with ThreadPoolExecutor(len(slow) + 1) as pool:
            finished_f = pool.submit(_read_answer, finisher)
            answers_f = [pool.submit(_read_answer, s) for s in slow]
            out, err = proc.communicate(timeout=60)
            finished = finished_f.result()
            answers = [f.result() for f in answers_f]
        took = time.monotonic() - stopped_at
        rc = proc.returncode
    for s in [*slow, finisher]:
        s.close()

    stderr = err.decode()
    assert "Traceback" not in stderr, stderr[:3000]
    assert "CancelledError" not in stderr, stderr[:3000]
    assert len(stderr.splitlines()) <= 1, stderr[:3000]
    assert rc == 0
    assert took < 10, took  # the grace period (2 s) and a little, not 30 s
    stdout = out.decode()
    assert "webhooks: stopped by SIGTERM" in stdout
    assert f"{SLOW_SENDERS} truncated" in stdout, stdout

    # The finisher was let through: answered 200 and stored.
    assert finished.startswith(b"HTTP/1.1 200"), finished
    assert json.loads(finished.split(b"\r\n\r\n", 1)[1])["outcome"] == "stored"
    # Each cut sender is answered 503 (the provider retries), and the connection is closed.
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["outcome"] == "truncated"

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT outcome, http_status, body_bytes, detail, body IS NULL"
            " FROM webhook_deliveries ORDER BY outcome"
        ).fetchall()
        observations = con.execute(
            "SELECT task_id FROM observations WHERE source = 'webhook'"
        ).fetchall()
        run = con.execute("SELECT status FROM runs WHERE command = 'serve-webhooks'").fetchall()
    finally:
        con.close()
    truncated = [r for r in rows if r[0] == "truncated"]
    assert len(truncated) == SLOW_SENDERS, rows
    for _, status, size, detail, no_body in truncated:
        assert status == 503
        assert size == 1
        assert no_body
        assert f"after 1 bytes of {DECLARED}" in detail
        assert "stopped" in detail
    assert [r[0] for r in rows if r[0] != "truncated"] == ["stored"]
    assert observations == [("tsk_finishes_in_grace",)]
    assert run == [("finished",)]


def test_a_second_signal_in_the_grace_period_does_not_cut_it_short(tmp_path: Path) -> None:
    """Tester T1: a SIGINT after the SIGTERM made Uvicorn force the exit at once: the bodies
    still arriving were answered 500 (not the documented 503), and the last line named the
    second signal. Only the first stop signal acts."""
    db = tmp_path / "wh.duckdb"
    config = tmp_path / "asg_audit.toml"
    config.write_text("[webhooks]\ngraceful_shutdown_seconds = 2\n")
    port = free_port()
    with receiver_process(db, port, extra=("--config", str(config))) as proc:
        slow = [_open_slow_sender(port) for _ in range(3)]
        time.sleep(1.0)  # every request is in the handler, reading its body
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        with ThreadPoolExecutor(len(slow)) as pool:
            answers_f = [pool.submit(_read_answer, s) for s in slow]
            out, err = proc.communicate(timeout=60)
            answers = [f.result() for f in answers_f]
        took = time.monotonic() - stopped_at
    for s in slow:
        s.close()
    assert proc.returncode == 0, err.decode()[:3000]
    assert "Traceback" not in err.decode(), err.decode()[:3000]
    assert took >= 1.9, took  # the grace period ran to its end
    assert "webhooks: stopped by SIGTERM" in out.decode()
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 503"), answer
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT outcome, http_status FROM webhook_deliveries").fetchall()
    finally:
        con.close()
    assert rows == [("truncated", 503)] * 3


def test_a_request_uvicorn_cancels_still_gets_a_truncated_row(tmp_path: Path) -> None:
    """The app under a plain Uvicorn (no drain): Uvicorn cancels the request at its own grace
    deadline; the cut-off body is still counted, with the 500 Uvicorn answers it."""
    import threading

    import uvicorn

    from asg_audit.webhooks import create_webhook_app
    from tests._webhooks_server import SECRET

    db = tmp_path / "wh.duckdb"
    port = free_port()
    app = create_webhook_app(db, [SECRET])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="critical",
        lifespan="on",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.02)
    sender = _open_slow_sender(port)
    time.sleep(0.5)
    server.should_exit = True
    answer = _read_answer(sender)
    thread.join(30)
    sender.close()
    assert not thread.is_alive()
    assert answer.startswith(b"HTTP/1.1 500"), answer

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT outcome, http_status, body_bytes, detail FROM webhook_deliveries"
        ).fetchall()
    finally:
        con.close()
    assert len(rows) == 1, rows
    outcome, status, size, detail = rows[0]
    assert (outcome, status, size) == ("truncated", 500, 1)
    assert f"after 1 bytes of {DECLARED}" in detail
