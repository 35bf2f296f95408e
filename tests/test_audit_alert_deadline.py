"""An alert endpoint that answers one byte at a time cannot hold the audit job (and its lock):
the whole alert request has a deadline, the alert is recorded failed and the run exits 3. httpx's
timeout applied to each read only, so a trickling answer kept the job busy until it was killed.

A real socket server in a thread trickles the answer; the real command runs in a subprocess.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from _audit_job import RESULT_LINE, offline_job
from _hardening_procs import asg_audit, clean_env, query

from asg_audit.errors import ApiError
from asg_audit.jobs import send_alert


@contextlib.contextmanager
def trickling_server(mode: str, every_s: float = 1.0, pad: int = 1000) -> Iterator[str]:
    """Serve on 127.0.0.1; yield the URL. Each request is read whole, then answered slowly.

    `head` sends the status line and headers (`pad` bytes of padding) one byte every `every_s`
    seconds, then nothing; `body` sends the headers at once (Content-Length 100000), then one
    byte of body every `every_s` seconds.
    """
    stop = threading.Event()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)

    def handle(conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += conn.recv(65536)
            if mode == "head":
                chunks = [bytes([b]) for b in b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * pad]
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                chunks = [b"x"] * 100000
            for chunk in chunks:
                if stop.is_set():
                    return
                try:
                    conn.sendall(chunk)
                except OSError:
                    return  # the client gave up: what it should do
                stop.wait(every_s)
            stop.wait()  # the connection stays open, silent

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    finally:
        stop.set()
        thread.join(5)
        server.close()


def _send_in_thread(url: str, timeout: float, within: float) -> list[BaseException]:
    """Call `send_alert` on a thread; return what it raised. Fails if it is still running after
    `within` seconds (the old code waited for the trickle to end)."""
    raised: list[BaseException] = []
    done = threading.Event()

    def call() -> None:
        try:
            send_alert(url, {"run_id": "r1"}, timeout=timeout)
        except BaseException as exc:
            raised.append(exc)
        finally:
            done.set()

    threading.Thread(target=call, daemon=True).start()
    assert done.wait(within), f"send_alert still running after {within} s"
    return raised


def test_send_alert_gives_up_on_a_trickling_status_line_at_its_deadline() -> None:
    # one byte every 0.4 s: under the 2 s that httpx allows each read, so only a deadline on
    # the whole request stops it
    with trickling_server("head", every_s=0.4, pad=200) as url:
        (error,) = _send_in_thread(url, timeout=2.0, within=4.0)
    assert isinstance(error, ApiError)
    assert "no complete answer within 2 s" in str(error)


def test_send_alert_does_not_wait_for_a_trickling_body_once_the_status_is_known() -> None:
    with trickling_server("body", every_s=0.4) as url:
        assert _send_in_thread(url, timeout=2.0, within=2.0) == []  # 200: delivered


def test_audit_with_a_trickling_alert_endpoint_ends_incomplete_exit_3(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 3)
    # one result whose confidence and cost are wrong: a `fail` finding, so the alert is sent
    bad = RESULT_LINE.format(i=99, status="settled").replace('"confidence":1.0', '"confidence":0.2')
    (job["drop"] / "bad.ndjson").write_text(bad)
    with trickling_server("head") as url:
        job["config"].write_text(job["config"].read_text() + f'alert_url = "{url}"\n')
        started = time.monotonic()
        done = subprocess.run(
            asg_audit("audit", "--config", str(job["config"]), "--json"),
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=90,  # the old code hung here until killed (100 s of trickle at least)
        )
        took = time.monotonic() - started
    assert done.returncode == 3, done.stderr[-3000:]
    assert took < 60
    outcome = json.loads(done.stdout)
    assert outcome["exit_code"] == 3
    assert outcome["steps"]["alert"].startswith("failed: alert to http://127.0.0.1:")
    assert "no complete answer within 10 s" in outcome["steps"]["alert"]
    ((status, stats),) = query(job["db"], "SELECT status, stats FROM runs WHERE command = 'audit'")
    assert status == "incomplete"
    assert json.loads(stats)["steps"]["alert"] == outcome["steps"]["alert"]
