"""`billing` against a Gateway whose usage answers cannot be used as asked (tester H, fix K).

1. An answer for another month than the one asked (`"month": "2025-01"` for `?month=2026-09`)
   was stored as 2026-09's usage and gave false `billing.daily_sum`/`billing.vs_results` fails:
   it is refused (exit 3, one error line naming both months), nothing is stored from it.
2. `{"month": "2026-09"}` (no figures) passed as clean (exit 0, no note): each missing figure
   is a `note:` line and a `billing.invalid_figure` finding, as an impossible one is.
3. `daily_breakdown` as an object was stored as `[]` (a false `billing.daily_sum`), a count
   written as a string was taken as a number, daily rows that are not objects or are dated
   outside the month went unflagged: each is a note and an `invalid_figure` finding.
4. Error lines named neither the Gateway nor the reason (`GET /v1/billing/invoices: 302`), and
   a failed run stored no `runs.stats.error`.

Real commands in subprocesses against a real HTTP server on 127.0.0.1, real stores.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _billing_gateway import BillingGateway, billing_gateway, run_billing
from _hardening_procs import query

from asg_audit.audit import analyze

KEY = "sk_sandbox_FIXKSECRET123"
MONTH = "2026-09"


def _usage(month: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer_id": "cus_k", "month": month, "tier": "sandbox", "tasks_settled": 2,
        "total_cost_sats": 1000, "total_cost_usd_estimate": 0.5, "worker_payouts_sats": 1000,
        "platform_fee_sats": 0,
        "daily_breakdown": [{"date": f"{month}-03", "tasks": 2, "cost_sats": 1000}],
    }  # fmt: skip
    body.update(over)
    return body


@pytest.fixture
def gateway() -> Iterator[tuple[BillingGateway, str]]:
    state = BillingGateway(usage=lambda month: (200, _usage(month), {}))
    with billing_gateway(state) as url:
        yield state, url


def _billing(tmp_path: Path, url: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    db = tmp_path / "k.duckdb"
    done = run_billing(tmp_path, db, url, KEY, MONTH)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert KEY not in done.stdout + done.stderr
    return done, db


def _error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 3, done.stdout + done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("asg-audit: error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def _last_run(db: Path) -> tuple[str, dict[str, Any]]:
    ((status, stats),) = query(
        db, "SELECT status, stats FROM runs WHERE command = 'billing' ORDER BY started_at DESC"
    )[:1]
    return status, json.loads(stats)


def _notes(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in done.stdout.splitlines() if ln.startswith("note: ")]


def _invalid(db: Path) -> dict[str, str]:
    found = analyze(db).findings.filter(pl.col("check_id") == "billing.invalid_figure")
    return dict(zip(found["actual"].to_list(), found["message"].to_list(), strict=True))


# -- 1. an answer for another month ------------------------------------------------------------


def test_usage_answer_for_another_month_is_refused_and_not_stored(
    gateway: tuple[BillingGateway, str], tmp_path: Path
) -> None:
    state, url = gateway
    state.usage = lambda month: (
        200,
        _usage("2025-01", tasks_settled=999, total_cost_sats=999999, worker_payouts_sats=999999),
        {},
    )
    done, db = _billing(tmp_path, url)
    line = _error_line(done)
    assert "2025-01" in line and MONTH in line and url in line, line
    assert query(db, "SELECT count(*) FROM billing_usage") == [(0,)]
    status, stats = _last_run(db)
    assert status == "failed" and "2025-01" in stats["error"] and KEY not in stats["error"]
    checks = analyze(db).findings["check_id"].to_list()
    assert "billing.daily_sum" not in checks and "billing.vs_results" not in checks


def test_usage_answer_for_the_month_asked_is_still_stored(
    gateway: tuple[BillingGateway, str], tmp_path: Path
) -> None:
    _, url = gateway
    done, db = _billing(tmp_path, url)
    assert done.returncode == 1, done.stderr  # billed 2 tasks, the store has none: vs_results
    assert query(db, "SELECT month, tasks_settled FROM billing_usage") == [(MONTH, 2)]
    assert _notes(done) == []


# -- 2. an answer with no figures --------------------------------------------------------------


def test_usage_answer_without_figures_is_not_clean(
    gateway: tuple[BillingGateway, str], tmp_path: Path
) -> None:
    state, url = gateway
    state.usage = lambda month: (200, {"month": month}, {})
    done, db = _billing(tmp_path, url)
    assert done.returncode == 1, done.stdout + done.stderr
    notes = _notes(done)
    for key in (
        "tasks_settled",
        "total_cost_sats",
        "worker_payouts_sats",
        "platform_fee_sats",
        "daily_breakdown",
    ):
        assert any(f"{key} = nothing (missing)" in n for n in notes), notes
        assert f"{key} = nothing" in _invalid(db)
    assert "billing.invalid_figure [fail]" in done.stdout
    (row,) = query(db, "SELECT tasks_settled, total_cost_sats, daily_breakdown FROM billing_usage")
    assert row == (None, None, None)


# -- 3. figures of the wrong type, daily rows that are not the month's -------------------------


def test_daily_breakdown_object_is_null_with_a_note_not_an_empty_month(
    gateway: tuple[BillingGateway, str], tmp_path: Path
) -> None:
    state, url = gateway
    state.usage = lambda month: (200, _usage(month, daily_breakdown={"a": 1}), {})
    done, db = _billing(tmp_path, url)
    assert any("daily_breakdown = a JSON" in n for n in _notes(done)), done.stdout
    assert query(db, "SELECT daily_breakdown IS NULL FROM billing_usage") == [(True,)]
    checks = analyze(db).findings["check_id"].to_list()
    assert "billing.invalid_figure" in checks
    assert "billing.daily_sum" not in checks  # no "daily rows add up to 0" from rows not given


def test_count_written_as_a_string_is_an_impossible_figure(
    gateway: tuple[BillingGateway, str], tmp_path: Path
) -> None:
    state, url = gateway
    state.usage = lambda month: (200, _usage(month, tasks_settled="2"), {})
    done, db = _billing(tmp_path, url)
    assert any("tasks_settled = a string" in n for n in _notes(done)), done.stdout
    assert query(db, "SELECT tasks_settled FROM billing_usage") == [(None,)]
    assert any(a.startswith("tasks_settled = ") for a in _invalid(db))


def test_daily_rows_outside_the_month_or_not_objects_are_flagged(
    gateway: tuple[BillingGateway, str], tmp_path: Path
) -> None:
    state, url = gateway
    rows = [{"date": "1999-01-01", "tasks": 2, "cost_sats": 1000}, None]
    state.usage = lambda month: (200, _usage(month, daily_breakdown=rows), {})
    done, db = _billing(tmp_path, url)
    notes = _notes(done)
    assert any(f"daily_breakdown[1999-01-01].date = 1999-01-01 (not a day of {MONTH})" in n
               for n in notes), notes  # fmt: skip
    assert any("daily_breakdown[#1] = a JSON null" in n for n in notes), notes
    invalid = _invalid(db)
    assert "daily_breakdown[1999-01-01].date = 1999-01-01" in invalid
    assert "daily_breakdown[#1] = a JSON null" in invalid
    days = query(db, "SELECT daily_breakdown FROM billing_usage")[0][0]
    assert days[0]["date"] is None and days[1] == {"date": None, "tasks": None, "cost_sats": None}


# -- 4. error lines and the run's recorded error -----------------------------------------------


def test_redirect_names_the_gateway_and_where_it_pointed(
    gateway: tuple[BillingGateway, str], tmp_path: Path
) -> None:
    state, url = gateway
    state.invoices = (302, {}, {"Location": "http://elsewhere.example:8080/v1/billing/invoices"})
    done, db = _billing(tmp_path, url)
    line = _error_line(done)
    assert "GET /v1/billing/invoices: 302" in line and url in line, line
    assert "http://elsewhere.example:8080/v1/billing/invoices" in line, line
    status, stats = _last_run(db)
    assert status == "failed" and "elsewhere.example" in stats["error"] and url in stats["error"]


def test_rate_limit_names_the_gateway_and_the_retry_after_asked(
    gateway: tuple[BillingGateway, str], tmp_path: Path
) -> None:
    state, url = gateway
    state.invoices = (429, {"error": "rate"}, {"Retry-After": "1e12"})
    done, db = _billing(tmp_path, url)
    line = _error_line(done)
    assert "429 after retries" in line and url in line and "Retry-After: 1e12" in line, line
    status, stats = _last_run(db)
    assert status == "failed" and "Retry-After: 1e12" in stats["error"]
