"""`billing` reads a 429's Retry-After as `collect` and `verify-chain` do (one parser,
`ratelimit.parse_retry_after`): an HTTP date is waited for. It was read with `float()`: a date
counted as no floor, and the request was retried after a quarter of a second.

A real HTTP server on 127.0.0.1 answers 429 with a date two seconds ahead, then 200.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler

from _http_server import serve

from asg_audit.billing import _Gateway
from asg_audit.config import AuditConfig
from asg_audit.redaction import Secret


@contextmanager
def _limited_once(ahead_s: float) -> Iterator[tuple[str, list[float]]]:
    asked: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(time.monotonic())
            if len(asked) == 1:
                self.send_response(429)
                # whole seconds in the header: ahead_s from now, rounded up
                self.send_header("Retry-After", formatdate(time.time() + ahead_s, usegmt=True))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps({"month": "2026-09"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as base:
        yield base, asked


def test_billing_waits_for_a_retry_after_given_as_an_http_date() -> None:
    with _limited_once(3.0) as (url, asked):
        config = AuditConfig(base_url=url, api_key=Secret("sk_test_billing_retry"))
        gateway = _Gateway(config, None)
        try:
            body, _ = gateway.get("/v1/usage")
        finally:
            gateway.http.close()
    assert body == {"month": "2026-09"}
    assert len(asked) == 2
    # the date is whole seconds: at least 2 s of the 3 asked remain after rounding
    assert asked[1] - asked[0] >= 1.9, asked[1] - asked[0]
