"""Standalone `billing` judges the invoices, as `audit` does (tester F, fix G3).

`asg-audit billing` printed a `note:` line for an invoice whose `total_cost_sats` is -1, then
`findings: none` and exit 0, while `asg-audit audit` on the same store reported
`billing.invalid_figure` (entity invoice) and exit 1: the command's checks were never given the
`billing_invoices` table. Now both read the store's tables under the same names.

A real `billing` command in a subprocess against a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _billing_gateway import BillingGateway, billing_gateway, run_billing

from asg_audit.audit import analyze
from asg_audit.chain import reconciliation_findings
from asg_audit.config import load_config

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
    invoice = {"month": MONTH, "status": "issued", "tasks_settled": 0, "total_cost_sats": -1}
    state = BillingGateway(usage=lambda month: (200, _usage(month), {}))
    state.invoices = (200, {"invoices": [invoice]}, {})
    with billing_gateway(state) as url:
        yield url


def _keys(findings: pl.DataFrame) -> set[tuple[str, str, str, str]]:
    rows = findings.filter(pl.col("check_id").str.starts_with("billing."))
    cols = rows.select("check_id", "severity", "entity_type", "entity_id").iter_rows()
    return {(str(c), str(s), str(t), str(e)) for c, s, t, e in cols}


def test_billing_command_reports_an_impossible_invoice_figure_as_audit_does(
    gateway: str, tmp_path: Path
) -> None:
    db = tmp_path / "g3.duckdb"
    done = run_billing(tmp_path, db, gateway, KEY, MONTH)
    config = tmp_path / "g3.toml"
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
