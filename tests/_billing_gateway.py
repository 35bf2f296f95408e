"""A fake Gateway's billing routes on 127.0.0.1, answering as a test says; the `billing` command
run against it.

`GET /v1/billing/invoices` answers `BillingGateway.invoices`, `GET /v1/billing/usage?month=M`
answers `BillingGateway.usage(M)`, each as (status, JSON body, headers); any other path is a
404. A test may change either answer while the Gateway serves.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from _hardening_procs import asg_audit, clean_env
from _http_server import serve

from asg_audit.store import open_store

Answer = tuple[int, Any, dict[str, str]]


def _no_invoices() -> Answer:
    return 200, {"invoices": []}, {}


@dataclass
class BillingGateway:
    """What the billing routes answer: `usage(month)` and `invoices`, as (status, body,
    headers)."""

    usage: Callable[[str], Answer]
    invoices: Answer = field(default_factory=_no_invoices)


@contextmanager
def billing_gateway(state: BillingGateway) -> Iterator[str]:
    """Serve `state` over real HTTP/1.1 on 127.0.0.1; yield the base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/v1/billing/invoices":
                status, body, headers = state.invoices
            elif url.path == "/v1/billing/usage":
                status, body, headers = state.usage(parse_qs(url.query)["month"][0])
            else:
                status, body, headers = 404, {"error": "not found"}, {}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as url:
        yield url


def run_billing(
    tmp_path: Path, db: Path, url: str, key: str, month: str
) -> subprocess.CompletedProcess[str]:
    """`asg-audit billing --month <month>` on `db` (made empty if missing) against the Gateway
    at `url` with `key`, no retries, in a subprocess run in `tmp_path`."""
    if not db.exists():
        with open_store(db):
            pass
    config = tmp_path / f"{db.stem}.toml"
    config.write_text("[billing]\nmax_retries = 0\n")
    return subprocess.run(
        asg_audit("billing", "--db", str(db), "--month", month, "--config", str(config)),
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env=clean_env(ASG_API_KEY=key, ASG_BASE_URL=url),
    )  # fmt: skip
