"""`billing.vs_results` with the fee paid on top of the reported task costs (`fee_included =
false`, a fee_percent above 0): the results add up to the month's worker payouts, not its total
(tester T6: a correct bill failed by exactly its fee, every month)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import polars as pl
from _billing_months import month_checks

from asg_audit.config import CostModel

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
CHECKS = ["billing.vs_results", "billing.sats_not_comparable", "billing.fee_share", "cost.mismatch"]


def _found(model: CostModel, costs: list[int], *, payouts: int, fee: int) -> pl.DataFrame:
    return month_checks(model, costs, payouts=payouts, fee=fee, only=CHECKS)


ON_TOP = CostModel(kind="per_worker", fee_percent=Decimal(10), fee_included=False)


def test_a_correct_bill_with_the_fee_on_top_has_no_finding() -> None:
    # 2 agreeing workers x 325 = 650 a task; the fee (10%: 65) is billed on top of it
    found = _found(ON_TOP, [650], payouts=650, fee=65)
    assert found.height == 0, found.select("check_id", "message").to_dicts()


def test_results_off_the_payouts_with_the_fee_on_top_fail_naming_the_payouts() -> None:
    # the payouts hold 100 sats no task cost holds (the fee is right on them)
    found = _found(ON_TOP, [650, 650], payouts=1_400, fee=140)
    [row] = found.filter(pl.col("check_id") == "billing.vs_results").to_dicts()
    assert row["actual"] == "billed: 2 tasks, 1400 sats of worker payouts (fee on top)"
    assert row["message"] == "billing differs from the per-task results by 100 sats and 0 tasks"


def test_with_the_fee_in_the_task_costs_the_total_is_compared() -> None:
    # 650 + 10% = 715 a task, the fee inside it: the total is what the tasks add up to
    inside = CostModel(kind="per_worker", fee_percent=Decimal(10), fee_included=True)
    assert _found(inside, [715], payouts=650, fee=65).height == 0
    # the same bill read as fee on top: the tasks' 715 exceed the 650 of payouts
    [row] = (
        _found(ON_TOP, [715], payouts=650, fee=65)
        .filter(pl.col("check_id") == "billing.vs_results")
        .to_dicts()
    )
    assert row["difference"] == -65
