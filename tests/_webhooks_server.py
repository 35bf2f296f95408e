"""Helpers of the webhook tests: a real receiver on 127.0.0.1 and a signed-delivery maker."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from asg_audit.webhooks import WEBHOOK_PATH, sign_body

SECRET = "whsec_test_current"
OLD_SECRET = "whsec_test_previous"
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def payload(
    task_id: str, *, at: datetime | None = None, label: str = "cat", txid: str | None = None
) -> dict[str, Any]:
    at = at or datetime.now(UTC)
    return {
        "event": "task.settled",
        "task_id": task_id,
        "consensus_label": label,
        "confidence": 1.0,
        "bsv_txid": txid or ("ab" * 32),
        "settled_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def signed(body: dict[str, Any] | bytes, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw, {"Content-Type": "application/json", "X-ASG-Signature": sign_body(raw, secret)}


class ThreadServer:
    """A uvicorn server for an ASGI app, on a thread of this process, on a free port."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def hook_url(self) -> str:
        return self.url + WEBHOOK_PATH

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("receiver did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@contextlib.contextmanager
def receiver_process(
    db: Path, port: int, *, secrets: str = SECRET, extra: tuple[str, ...] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `asg-audit serve-webhooks` as a subprocess; wait for /healthz; stop it after."""
    env = {**os.environ, "ASG_WEBHOOK_SECRET": secrets}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asg_audit",
            "serve-webhooks",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            str(db),
            *extra,
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_healthy(
    url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"receiver exited: {err}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError("receiver not healthy in time")
