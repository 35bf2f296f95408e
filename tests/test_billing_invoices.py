"""Standalone `billing` judges the invoices, as `audit` does (tester F, fix G3).

`asg-audit billing` printed a `note:` line for an invoice whose `total_cost_sats` is -1, then
`findings: none` and exit 0, while `asg-audit audit` on the same store reported
`billing.invalid_figure` (entity invoice) and exit 1: the command's checks were never given the
`billing_invoices` table. Now both read the store's tables under the same names.

A real `billing` command in a subprocess against a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import polars as pl
import pytest
from _hardening_procs import asg_audit, clean_env
from _http_server import serve

from asg_audit.audit import analyze
from asg_audit.chain import reconciliation_findings
from asg_audit.config import load_config
from asg_audit.store import open_store

KEY = "sk_sandbox_FIXG3SECRET123"
MONTH = "2026-09"


def _usage(month: str) -> dict[str, Any]:
    return {
        "customer_id": "cus_g3", "month": month, "tier": "sandbox", "tasks_settled": 0,
        "total_cost_sats": 0, "total_cost_usd_estimate": 0.0, "worker_payouts_sats": 0,
        "platform_fee_sats": 0, "daily_breakdown": [],
    }  # fmt: skip


@pytest.fixture
def gateway() -> Iterator[str]:
    invoices = {
        "invoices": [
            {"month": MONTH, "status": "issued", "tasks_settled": 0, "total_cost_sats": -1}
        ]
    }

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/v1/billing/invoices":
                body: Any = invoices
            else:
                body = _usage(parse_qs(url.query)["month"][0])
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as url:
        yield url


def _keys(findings: pl.DataFrame) -> set[tuple[str, str, str, str]]:
    rows = findings.filter(pl.col("check_id").str.starts_with("billing."))
    cols = rows.select("check_id", "severity", "entity_type", "entity_id").iter_rows()
    return {(str(c), str(s), str(t), str(e)) for c, s, t, e in cols}


def test_billing_command_reports_an_impossible_invoice_figure_as_audit_does(
    gateway: str, tmp_path: Path
) -> None:
    db = tmp_path / "g3.duckdb"
    with open_store(db):
        pass
    config = tmp_path / "g3.toml"
    config.write_text("[billing]\nmax_retries = 0\n")
    done = subprocess.run(
        asg_audit("billing", "--db", str(db), "--month", MONTH, "--config", str(config)),
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env=clean_env(ASG_API_KEY=KEY, ASG_BASE_URL=gateway),
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert any(
        ln.startswith("note: invoice") and "(negative)" in ln for ln in done.stdout.splitlines()
    ), done.stdout
    # the command's own findings, not only its note
    assert "billing.invalid_figure [fail]: 1" in done.stdout, done.stdout
    assert "findings: none" not in done.stdout
    assert done.returncode == 1, done.stdout + done.stderr

    audit_keys = _keys(analyze(db).findings)
    assert ("billing.invalid_figure", "fail", "invoice", f"month:{MONTH}") in audit_keys
    standalone, _ = reconciliation_findings(db, load_config(config, env={}), prefixes=("billing.",))
    assert _keys(standalone) == audit_keys
