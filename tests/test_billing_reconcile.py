"""Billing against results, invoices against usage, supply-bounded figures (tester F, fix G2).

1. `billing.vs_results` counted tasks of unknown cost (reported 0, or no cost at all) as 0 sats
   and billed tasks not settled in the store (a partial collect) as nothing, and called every
   such month an exact difference (fail). Now the sats compare exactly only when every billed
   task is a settled result of known cost; otherwise `billing.sats_not_comparable` (info) says
   why, and a month fails only on a difference the unknowns cannot explain.
2. Invoices were never compared with anything: `billing.invoice_vs_usage`.
3. Monthly sats up to int64 were valid although no amount can pass the 21M BSV supply; and a
   month whose total was invalid skipped its (valid) task-count comparison.

Every store is built through the real parts (`_billing_months`): results ingested from an export
file, tasks tracked from a submissions file, usage and invoices fetched by `fetch_billing` from a
real HTTP fake Gateway on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _billing_months import MONTH, billed_store, check_rows, month_usage, months_gateway, settled

from asg_audit.store import open_store

MAX_SATS = 21_000_000 * 100_000_000  # the 21M BSV supply


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with months_gateway() as url:
        yield url


# -- 1. unknown costs and tasks not collected -----------------------------------------------


def test_unknown_costs_are_not_an_exact_difference(tmp_path: Path, gateway: str) -> None:
    # the tester's month: 3 settled tasks, none with a known cost (0 and no cost field), billed
    # 1,625 sats. Was: fail "billing differs from the per-task results by 1625 sats".
    results = [settled("t1", 1, 0), settled("t2", 10, None), settled("t3", 20, 0)]
    findings, _ = billed_store(tmp_path, gateway, results, {MONTH: month_usage(3, 1625)})
    assert check_rows(findings, "billing.vs_results") == []
    (row,) = check_rows(findings, "billing.sats_not_comparable")
    assert row["severity"] == "info" and row["entity_id"] == MONTH
    assert row["message"].startswith(
        "3 task(s) of unknown cost, 0 billed task(s) not among the results settled in the month: the sats cannot"
        " be compared exactly"
    )
    assert row["difference"] == 1625  # the sats the bill holds for those tasks
    assert row["expected"] == "results: 3 tasks, 0 sats (3 of unknown cost)"


def test_partial_collect_on_a_clean_provider_is_no_fail(tmp_path: Path, gateway: str) -> None:
    # 2 tasks collected (650 sats each), 3 more tracked and not collected; the provider bills
    # the 5 it settled: 3,250 sats. Was: fail, "billed: 5 tasks" against "results: 2 tasks".
    results = [settled("t1", 1, 650), settled("t2", 2, 650)]
    findings, _ = billed_store(tmp_path, gateway, results, {MONTH: month_usage(5, 3250)}, pending=3)
    assert check_rows(findings, "billing.vs_results") == []
    (row,) = check_rows(findings, "billing.sats_not_comparable")
    assert (
        "0 task(s) of unknown cost, 3 billed task(s) not among the results settled in the month"
        in row["message"]
    )
    assert row["difference"] == 3250 - 1300


def test_known_costs_above_the_bill_still_fail(tmp_path: Path, gateway: str) -> None:
    # one task of unknown cost cannot explain known costs (1,300) above the bill (1,000)
    results = [settled("t1", 1, 650), settled("t2", 2, 650), settled("t3", 3, 0)]
    findings, _ = billed_store(tmp_path, gateway, results, {MONTH: month_usage(3, 1000)})
    (row,) = check_rows(findings, "billing.vs_results")
    assert row["severity"] == "fail" and row["difference"] == -300
    assert (
        "the results' known costs (1300 sats) already exceed the bill (1000 sats)"
        in (row["message"])
    )
    assert check_rows(findings, "billing.sats_not_comparable") == []


def test_billed_tasks_the_store_cannot_hold_still_fail(tmp_path: Path, gateway: str) -> None:
    # 2 results, 1 task still open, a bill for 10 tasks: 7 billed tasks the store does not hold
    results = [settled("t1", 1, 650), settled("t2", 2, 650)]
    findings, _ = billed_store(
        tmp_path, gateway, results, {MONTH: month_usage(10, 6500)}, pending=1
    )
    (row,) = check_rows(findings, "billing.vs_results")
    assert row["severity"] == "fail"
    assert (
        "the bill counts 8 task(s) more than the results settled in the month" in (row["message"])
    )
    assert "7 billed task(s) the store does not hold" in row["message"]


def test_fewer_billed_tasks_than_results_fail(tmp_path: Path, gateway: str) -> None:
    results = [settled("t1", 1, 650), settled("t2", 2, 0)]
    findings, _ = billed_store(tmp_path, gateway, results, {MONTH: month_usage(1, 650)})
    (row,) = check_rows(findings, "billing.vs_results")
    assert (
        "the bill counts 1 task(s) fewer than the 2 results settled in the month"
        in (row["message"])
    )


def test_exact_month_still_compares_exactly(tmp_path: Path, gateway: str) -> None:
    results = [settled("t1", 1, 650), settled("t2", 2, 650)]
    findings, _ = billed_store(tmp_path, gateway, results, {MONTH: month_usage(2, 1400)})
    (row,) = check_rows(findings, "billing.vs_results")
    assert row["message"] == "billing differs from the per-task results by 100 sats and 0 tasks"
    assert check_rows(findings, "billing.sats_not_comparable") == []
    clean, _ = billed_store(tmp_path / "clean", gateway, results, {MONTH: month_usage(2, 1300)})
    assert (
        check_rows(clean, "billing.vs_results")
        == check_rows(clean, "billing.sats_not_comparable")
        == []
    )


# -- 2. invoices against usage --------------------------------------------------------------


def test_invoice_billing_more_than_the_usage_fails(tmp_path: Path, gateway: str) -> None:
    results = [settled("t1", 1, 650), settled("t2", 2, 650)]
    invoice = {
        "invoice_id": "inv_g2",
        "month": MONTH,
        "status": "closed",
        "tasks_settled": 2 + 1000,
        "total_cost_sats": 1300 + 1_000_000,
    }
    findings, _ = billed_store(tmp_path, gateway, results, {MONTH: month_usage(2, 1300)}, [invoice])
    (row,) = check_rows(findings, "billing.invoice_vs_usage")
    assert row["severity"] == "fail" and row["entity_type"] == "invoice"
    assert row["entity_id"] == "inv_g2" and row["proves"] == "exact"
    assert row["difference"] == 1_000_000
    assert row["actual"] == "invoice: 1002 tasks, 1001300 sats"
    assert f"differs from the usage of {MONTH} by 1000 tasks and 1000000 sats" in row["message"]
    # an invoice stating the month's usage is no finding
    same = dict(invoice, tasks_settled=2, total_cost_sats=1300)
    clean, _ = billed_store(
        tmp_path / "clean", gateway, results, {MONTH: month_usage(2, 1300)}, [same]
    )
    assert check_rows(clean, "billing.invoice_vs_usage") == []


# -- 3. figures above the supply; compare what is valid ---------------------------------------


def test_month_sats_above_the_supply_are_invalid(tmp_path: Path, gateway: str) -> None:
    results = [settled("t1", 1, 650)]
    usage = month_usage(1, 2**63 - 1)
    findings, summary = billed_store(tmp_path, gateway, results, {MONTH: usage})
    fields = {r["actual"].split(" = ")[0] for r in check_rows(findings, "billing.invalid_figure")}
    assert {"total_cost_sats", "worker_payouts_sats", "daily_breakdown[2026-10-10].cost_sats"} <= (
        fields
    )
    assert any("beyond the 21M BSV supply" in n for n in summary.notes)
    # the supply itself is a valid figure
    ok, _ = billed_store(tmp_path / "ok", gateway, results, {MONTH: month_usage(1, MAX_SATS)})
    assert check_rows(ok, "billing.invalid_figure") == []
    with open_store(tmp_path / "ok" / "g2.duckdb", read_only=True) as store:
        got = store.con.execute("SELECT total_cost_sats FROM billing_usage").fetchall()
    assert got == [(MAX_SATS,)]


def test_invalid_total_still_compares_the_task_count(tmp_path: Path, gateway: str) -> None:
    # the month bills 1 task (valid) and an impossible total; the store settled none in it
    usage = month_usage(1, -650, "2026-11")
    findings, _ = billed_store(
        tmp_path, gateway, [settled("t1", 1, 650)], {"2026-11": usage}, months=["2026-11"]
    )
    rows = [r for r in check_rows(findings, "billing.vs_results") if r["entity_id"] == "2026-11"]
    (row,) = rows
    assert row["actual"] == "billed: 1 tasks, (invalid) sats"
    assert "1 billed task(s) the store does not hold" in row["message"]
