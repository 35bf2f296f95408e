"""The billing checks on hand-made usage frames: each check's positive and negative case."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import polars as pl
from _analyses_frames import result, results_frame
from _billing_months import usage_frame

from asg_audit.billing import parse_usage
from asg_audit.checks import CheckContext, run_checks
from asg_audit.config import AuditConfig, CostModel

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def _usage(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer_id": "cus_1",
        "month": "2026-10",
        "tier": "sandbox",
        "tasks_settled": 3,
        "total_cost_sats": 2000,
        "total_cost_usd_estimate": 1.0,
        "worker_payouts_sats": 1800,
        "platform_fee_sats": 200,
        "daily_breakdown": [
            {"date": "2026-10-01", "tasks": 2, "cost_sats": 1300},
            {"date": "2026-10-02", "tasks": 1, "cost_sats": 700},
        ],
    }
    body.update(changes)
    return parse_usage(body)


def _results(costs: list[int | None]) -> pl.DataFrame:
    return results_frame(
        [
            result(
                f"t{i}",
                cost_sats=c,
                cost_unknown=c is None,
                created_at=datetime(2026, 10, 1 + i % 2, 11, 59, tzinfo=UTC),
                settled_at=datetime(2026, 10, 1 + i % 2, 12, tzinfo=UTC),
            )
            for i, c in enumerate(costs)
        ]
    )


def _findings(usage: dict[str, Any], results: pl.DataFrame, *, fee: str = "0") -> pl.DataFrame:
    frame = usage_frame(usage)
    # the task costs hold the fee: they add up to the month's total
    config = AuditConfig(costs=CostModel(fee_percent=Decimal(fee), fee_included=True))
    ctx = CheckContext({"results": results, "billing_usage": frame}, config=config, as_of=AS_OF)
    import asg_audit.billing  # noqa: F401  (registers the checks)

    return run_checks(
        ctx,
        only=[
            "billing.total_parts",
            "billing.daily_sum",
            "billing.vs_results",
            "billing.fee_share",
        ],
    )


def test_billing_parse_usage_daily_dates() -> None:
    assert _usage()["daily_breakdown"][0]["date"] == date(2026, 10, 1)


def test_billing_checks_consistent_month_has_no_findings() -> None:
    found = _findings(_usage(), _results([650, 650, 700]), fee="11.1111")
    assert found.height == 0


def test_billing_total_parts_flags_total_off() -> None:
    found = _findings(_usage(total_cost_sats=2325), _results([650, 650, 700]), fee="11.1111")
    assert found.filter(pl.col("check_id") == "billing.total_parts")["difference"].to_list() == [
        325
    ]


def test_billing_daily_sum_flags_row_off() -> None:
    rows = [
        {"date": "2026-10-01", "tasks": 2, "cost_sats": 1300},
        {"date": "2026-10-02", "tasks": 1, "cost_sats": 1025},
    ]
    found = _findings(_usage(daily_breakdown=rows), _results([650, 650, 700]), fee="11.1111")
    assert found["check_id"].to_list() == ["billing.daily_sum"]
    assert found["difference"].to_list() == [325]


def test_billing_daily_sum_flags_task_count_off() -> None:
    rows = [
        {"date": "2026-10-01", "tasks": 3, "cost_sats": 1300},
        {"date": "2026-10-02", "tasks": 1, "cost_sats": 700},
    ]
    found = _findings(_usage(daily_breakdown=rows), _results([650, 650, 700]), fee="11.1111")
    assert found["check_id"].to_list() == ["billing.daily_sum"]


def test_billing_vs_results_reports_difference() -> None:
    found = _findings(_usage(), _results([650, 650]), fee="11.1111")
    row = found.filter(pl.col("check_id") == "billing.vs_results").row(0, named=True)
    assert row["difference"] == 700 and row["entity_id"] == "2026-10"
    assert row["proves"] == "aggregate only"


def test_billing_vs_results_unknown_cost_counts_as_task_not_sats() -> None:
    usage = _usage(
        total_cost_sats=1300,
        worker_payouts_sats=1170,
        platform_fee_sats=130,
        daily_breakdown=[
            {"date": "2026-10-01", "tasks": 2, "cost_sats": 1300},
            {"date": "2026-10-02", "tasks": 1, "cost_sats": 0},
        ],
    )
    assert _findings(usage, _results([650, 650, None]), fee="11.1111").height == 0


def test_billing_fee_share_flags_other_fee() -> None:
    found = _findings(_usage(), _results([650, 650, 700]), fee="25")
    row = found.filter(pl.col("check_id") == "billing.fee_share").row(0, named=True)
    assert row["difference"] == 200 - 450


def test_billing_window_compares_only_months_wholly_inside_it() -> None:
    from asg_audit.audit import billing_window

    since, until = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    got = billing_window(["2026-11", "2026-09", "2026-10"], since, until)
    assert got.select("month", "compared").rows() == [
        ("2026-09", False),
        ("2026-10", True),
        ("2026-11", False),
    ]
    assert got["reason"][0].startswith("skipped")
    one_day = billing_window(["2026-10"], since, datetime(2026, 10, 2, tzinfo=UTC))
    assert one_day["compared"].to_list() == [False]


def _window_findings(compared: bool, our_tasks: int, our_cost: int) -> pl.DataFrame:
    usage = usage_frame(_usage())
    tables = {
        "results": _results([1000]),  # the window's tasks: a part of the month
        "billing_usage": usage,
        "billing_window": pl.DataFrame({"month": ["2026-10"], "compared": [compared]}),
        "billing_results_by_month": pl.DataFrame(
            {"month": ["2026-10"], "our_tasks": [our_tasks], "our_cost": [our_cost]}
        ),
    }
    import asg_audit.billing  # noqa: F401  (registers the checks)

    ctx = CheckContext(tables, config=AuditConfig(), as_of=AS_OF)
    return run_checks(ctx, only=["billing.vs_results"])


def test_billing_vs_results_under_a_window_skips_a_month_the_window_cuts() -> None:
    assert _window_findings(False, 1, 1000).height == 0


def test_billing_vs_results_under_a_window_compares_the_whole_months_results() -> None:
    assert _window_findings(True, 3, 2000).height == 0  # every result of the month agrees
    off = _window_findings(True, 3, 1900)
    assert off["entity_id"].to_list() == ["2026-10"] and off["difference"].to_list() == [100.0]


def test_billing_checks_say_nothing_half_null_about_a_month_with_an_impossible_figure() -> None:
    # tasks_settled -3 is stored as null (billing.invalid_figure reports it, tested in
    # test_billing_figures.py); the cost also differs: no check may build a message out of a
    # null figure
    for changes in (
        {"tasks_settled": -3, "total_cost_sats": 2500},
        {"platform_fee_sats": -500},
        {"worker_payouts_sats": 2**70},
        {
            "daily_breakdown": [
                {"date": "2026-10-01", "tasks": -2, "cost_sats": 1300},
                {"date": "2026-10-02", "tasks": 1, "cost_sats": 700},
            ]
        },
    ):
        found = _findings(_usage(**changes), _results([1300, 700]))
        billing = found.filter(pl.col("check_id").str.starts_with("billing."))
        assert billing["message"].null_count() == 0, (changes, billing.to_dicts())
        assert billing["actual"].null_count() == 0, (changes, billing.to_dicts())


def test_billing_fee_share_is_exact_for_a_precise_fee_on_large_payouts() -> None:
    """The fee was computed as payouts * num (int64) / den: 12.345678% of 10^13 sats wrapped
    around (127,763,155,577 instead of 1,234,567,800,000; code review). It is the task cost's
    exact half-up arithmetic now."""
    payouts = 10**13
    fee = 1_234_567_800_000  # 12.345678% of the payouts, exactly
    usage = _usage(
        worker_payouts_sats=payouts,
        platform_fee_sats=fee,
        total_cost_sats=payouts + fee,
        daily_breakdown=[{"date": "2026-10-01", "tasks": 3, "cost_sats": payouts + fee}],
    )
    found = _findings(usage, _results([650, 650, 700]), fee="12.345678")
    assert found.filter(pl.col("check_id") == "billing.fee_share").height == 0
    off = _findings(
        {**usage, "platform_fee_sats": fee + 1000}, _results([650, 650, 700]), fee="12.345678"
    )
    row = off.filter(pl.col("check_id") == "billing.fee_share").row(0, named=True)
    assert row["difference"] == 1000


def test_billing_daily_sum_leaves_a_row_of_another_month_to_invalid_figure() -> None:
    """A daily row dated outside the month is stored with a null date and reported by
    billing.invalid_figure; its figures are another month's and are not added up here."""
    rows = [
        {"date": "2026-10-01", "tasks": 2, "cost_sats": 1300},
        {"date": "2026-10-02", "tasks": 1, "cost_sats": 700},
        {"date": "1999-01-01", "tasks": 5, "cost_sats": 9999},
    ]
    found = _findings(_usage(daily_breakdown=rows), _results([650, 650, 700]))
    assert found.filter(pl.col("check_id") == "billing.daily_sum").height == 0
