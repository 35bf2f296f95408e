"""`webhooks register` never shows the API key, the webhook secret, URL credentials or a query.

A real HTTP server on 127.0.0.1 answers with the status asked for and echoes the request body
(with the webhook secret) and the Authorization header (with the key), as a Gateway's
VALIDATION_ERROR with `details` would; `asg-audit webhooks register` runs as a subprocess.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from _http_server import serve
from _webhooks_server import REPO, free_port

API_KEY = "sk_live_SUPERSECRETKEY"
HOOK_SECRET = "whsec_TOPSECRETHOOK"
CALLBACK = "https://hooks.example.com/webhooks/asg?token=CALLBACKTOKEN"
NEVER_SHOWN = (API_KEY, HOOK_SECRET, "SUPERSECRETKEY", "TOPSECRETHOOK", "CALLBACKTOKEN")


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    status = 400

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        # The secret sits at the cut of a 200-character excerpt as well as at the start.
        echo = (
            "x" * 140
            + f" {HOOK_SECRET} bad request: {body.decode()}"
            + f" auth={self.headers.get('Authorization', '')} url={self.path}"
        )
        out = json.dumps({"error": {"code": "VALIDATION_ERROR", "message": echo}}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_server(request: pytest.FixtureRequest) -> Iterator[str]:
    handler = type("Handler", (_EchoHandler,), {"status": request.param})
    with serve(handler) as base:
        yield base


def _register(base_url: str, callback: str = CALLBACK) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ASG_BASE_URL": base_url,
        "ASG_API_KEY": API_KEY,
        "ASG_WEBHOOK_SECRET": HOOK_SECRET,
    }
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", "webhooks", "register", "--url", callback],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _assert_nothing_secret(proc: subprocess.CompletedProcess[str]) -> None:
    shown = proc.stdout + proc.stderr
    for value in NEVER_SHOWN:
        assert value not in shown, shown
    assert "Traceback" not in shown, shown


@pytest.mark.parametrize("echo_server", [400, 422], indirect=True)
def test_register_status_error_echoing_the_secrets_shows_none_of_them(echo_server):
    proc = _register(echo_server)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("asg-audit: error: POST "), proc.stderr
    assert f"{echo_server}/v1/webhooks: answered" in lines[0]
    assert "VALIDATION_ERROR" in lines[0]  # the excerpt is still there, masked
    assert "***" in lines[0]
    _assert_nothing_secret(proc)


@pytest.mark.parametrize("echo_server", [401, 503], indirect=True)
def test_register_refused_or_unavailable_names_the_url(echo_server):
    proc = _register(echo_server)
    assert proc.returncode == 3, proc.stderr
    assert f"{echo_server}/v1/webhooks" in proc.stderr
    _assert_nothing_secret(proc)


def test_register_with_credentials_in_the_base_url_is_refused_without_showing_them():
    # user:pass@ would be sent as Basic auth in place of the key: refused as config, exit 2
    base = f"http://user:p4ssw0rd@127.0.0.1:{free_port()}"
    proc = _register(base)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "base_url" in lines[0] and "user:pass@" in lines[0], proc.stderr
    assert "p4ssw0rd" not in proc.stderr
    _assert_nothing_secret(proc)


def test_register_transport_error_names_the_url():
    base = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    proc = _register(base)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("asg-audit: error: POST "), proc.stderr
    assert "http://127.0.0.1:" in lines[0]
    _assert_nothing_secret(proc)
