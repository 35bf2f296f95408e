"""`webhooks register` masks every configured secret in the Gateway's answer (the old secret of
a rotation list and the WoC key too), and a short user name in the callback URL is not masked
across the answer (tester T5: user `a` made `events: ['t***sk.settled']`, and user `u` broke
`true` so that the answer was "not JSON")."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
from urllib.parse import urlsplit

from _http_server import serve
from _webhooks_server import REPO

API_KEY = "sk_live_REGISTERKEY"
NEW, OLD = "whsec_NEWSECRET", "whsec_OLDROTATEDSECRET"
WOC = "woc_CHAININDEXKEY"


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        answer = {
            "webhook_id": f"wh_{OLD}_{urlsplit(request['callback_url']).username}",
            "callback_url": f"{request['callback_url']}#{WOC}",
            "events": request["events"],
            "active": True,
        }
        out = json.dumps(answer).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


def _register(base: str, callback: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ASG_BASE_URL": base,
        "ASG_API_KEY": API_KEY,
        "ASG_WEBHOOK_SECRET": f"{NEW},{OLD}",
        "WOC_API_KEY": WOC,
    }
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", "webhooks", "register", "--url", callback],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_configured_secret_is_masked_and_a_short_user_name_is_not() -> None:
    with serve(_Echo) as base:
        done = _register(base, "https://a:pw0rd@hooks.example.com/webhooks/asg")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert lines == {
        "webhook_id": "wh_***_a",
        "callback_url": "https://hooks.example.com/webhooks/asg#***",
        "events": "['task.settled']",
        "active": "True",
    }
    for secret in (API_KEY, NEW, OLD, WOC, "pw0rd"):
        assert secret not in done.stdout + done.stderr


def test_a_user_name_that_may_be_a_token_is_masked() -> None:
    with serve(_Echo) as base:
        done = _register(base, "https://ghp_tokenlike1234@hooks.example.com/webhooks/asg")
    assert done.returncode == 0, done.stderr
    assert "webhook_id: wh_***_***\n" in done.stdout
    assert "ghp_tokenlike1234" not in done.stdout
