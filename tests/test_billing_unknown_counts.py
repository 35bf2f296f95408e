"""billing.vs_results / billing.sats_not_comparable (reviewer of fix G2, fix J4).

1. An invalid `tasks_settled` hid the month's valid sats from every check: the billed tasks
   not settled in the store came out as 0 (max(null - n, 0) is 0), so the month was neither
   exact, nor a sats difference (unless our costs exceeded the bill), nor not comparable.
2. The same open (unsettled) tasks explained extra billed tasks in every month from their
   creation on: each was credited once per month, and the store could 'explain' more extra
   billed tasks than it holds.

Stores are built with the G2 harness (`_billing_months`): results ingested from an export file, tasks tracked from
a submissions file, usage fetched by `fetch_billing` from a real HTTP fake Gateway.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _billing_months import MONTH, billed_store, check_rows, month_usage, months_gateway, settled

NOV = "2026-11"


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    """The G2 fake Gateway (real HTTP on 127.0.0.1)."""
    with months_gateway() as url:
        yield url


# -- 1. an invalid task count ----------------------------------------------------------------


def test_invalid_task_count_leaves_the_sats_not_comparable(tmp_path: Path, gateway: str) -> None:
    # 2 results of 650 sats, all costs known; the bill: an impossible task count, 99,999 sats.
    # Was: only billing.invalid_figure; the 98,699 sats nobody accounts for were in no check.
    results = [settled("t1", 1, 650), settled("t2", 2, 650)]
    findings, _ = billed_store(tmp_path, gateway, results, {MONTH: month_usage(-1, 99_999)})
    assert any(
        r["actual"].startswith("tasks_settled = ")
        for r in check_rows(findings, "billing.invalid_figure")
    )
    assert check_rows(findings, "billing.vs_results") == []
    (row,) = check_rows(findings, "billing.sats_not_comparable")
    assert row["entity_id"] == MONTH and row["severity"] == "info"
    assert row["difference"] == 99_999 - 1300
    assert "task count invalid" in row["message"]
    assert f"which holds {99_999 - 1300} sats more" in row["message"]
    assert row["actual"] == "billed: (invalid) tasks, 99999 sats"


def test_invalid_task_count_known_costs_above_the_bill_fail(tmp_path: Path, gateway: str) -> None:
    # the known costs (1,300) exceed the bill (1,000) whatever the count: still a fail
    results = [settled("t1", 1, 650), settled("t2", 2, 650)]
    findings, _ = billed_store(tmp_path, gateway, results, {MONTH: month_usage(-1, 1000)})
    (row,) = check_rows(findings, "billing.vs_results")
    assert row["severity"] == "fail" and row["difference"] == -300
    assert (
        "the results' known costs (1300 sats) already exceed the bill (1000 sats)"
        in (row["message"])
    )
    assert "task count invalid" in row["message"]
    assert check_rows(findings, "billing.sats_not_comparable") == []


# -- 2. an open task explains an extra billed task in one month only ----------------------


def _two_months(
    tmp_path: Path, gateway: str, pending: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    # one result in October; `pending` tasks tracked, created 2026-10-20, never collected.
    # The bill: 4 tasks in October (3 more than the results), 3 in November (3 more).
    usage = {MONTH: month_usage(4, 4 * 650), NOV: month_usage(3, 3 * 650, NOV)}
    findings, _ = billed_store(
        tmp_path,
        gateway,
        [settled("t1", 1, 650)],
        usage,
        pending=pending,
        months=[MONTH, NOV],
    )
    return check_rows(findings, "billing.vs_results"), check_rows(
        findings, "billing.sats_not_comparable"
    )


def test_open_tasks_explain_extra_billed_tasks_once(tmp_path: Path, gateway: str) -> None:
    # 6 extra billed tasks, 3 open tasks: at most 3 of them are explained. Was: both months
    # only info (the 3 open tasks credited to October and again to November).
    fails, infos = _two_months(tmp_path, gateway, pending=3)
    (row,) = fails
    assert row["entity_id"] == NOV and row["severity"] == "fail"
    assert (
        "the bill counts 3 task(s) more than the results settled in the month" in (row["message"])
    )
    assert "3 of them needed for the extra billed tasks of earlier months" in row["message"]
    assert row["message"].endswith(": 3 billed task(s) the store does not hold")
    # October alone is explained by the open tasks: not comparable, no fail
    assert [r["entity_id"] for r in infos] == [MONTH]


def test_enough_open_tasks_for_every_month_is_no_fail(tmp_path: Path, gateway: str) -> None:
    fails, infos = _two_months(tmp_path, gateway, pending=6)
    assert fails == []
    assert sorted(r["entity_id"] for r in infos) == [MONTH, NOV]
    # one open task short: the month where the cumulative extra first exceeds them fails
    fails, _ = _two_months(tmp_path / "short", gateway, pending=5)
    (row,) = fails
    assert row["entity_id"] == NOV
    assert row["message"].endswith(": 1 billed task(s) the store does not hold")


def test_each_month_names_only_its_own_unexplained_tasks(tmp_path: Path, gateway: str) -> None:
    # October already bills 5 more than results + open tasks; November 2 more on top:
    # October fails for 5, November for its own 2 (not October's 5 again)
    usage = {MONTH: month_usage(7, 7 * 650), NOV: month_usage(2, 2 * 650, NOV)}
    findings, _ = billed_store(
        tmp_path, gateway, [settled("t1", 1, 650)], usage, pending=1, months=[MONTH, NOV]
    )
    rows = {r["entity_id"]: r["message"] for r in check_rows(findings, "billing.vs_results")}
    assert rows[MONTH].endswith(": 5 billed task(s) the store does not hold")
    assert rows[NOV].endswith(": 2 billed task(s) the store does not hold")


# -- 3. a total that is not its parts ---------------------------------------------------------


@pytest.mark.parametrize("total_off", [True, False], ids=["total_off", "total_holds"])
def test_unknown_cost_tasks_are_not_credited_with_a_broken_total(
    total_off: bool, tmp_path: Path, gateway: str
) -> None:
    # tester A3: 1 task of unknown cost, payouts = the known costs (1,300), and a total 650
    # sats above its parts: "the bill holds 650 sats more for those tasks" credited them with
    # the total's own error (billing.total_parts). When the total is its parts, they are.
    results = [settled("t1", 1, 650), settled("t2", 2, 650), settled("t3", 3, None)]
    usage = month_usage(3, 1300 + 650)
    if total_off:
        usage["worker_payouts_sats"] = 1300
    findings, _ = billed_store(tmp_path, gateway, results, {MONTH: usage})
    (row,) = check_rows(findings, "billing.sats_not_comparable")
    assert row["difference"] == 650
    parts = check_rows(findings, "billing.total_parts")
    if total_off:
        assert len(parts) == 1 and parts[0]["difference"] == 650
        assert "is not its payouts + fee (billing.total_parts)" in row["message"]
        assert "for those tasks" not in row["message"]
    else:
        assert parts == []
        assert "which holds 650 sats more for those tasks" in row["message"]
