"""The latency-per-day line stops across days without data instead of joining them."""

from __future__ import annotations

import math
from datetime import date

import polars as pl

from asg_audit.report.charts import _break_at_gaps


def _by_day(days: list[date], p50: list[float | None], p95: list[float | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {"day": days, "p50_s": p50, "p95_s": p95},
        schema={"day": pl.Date, "p50_s": pl.Float64, "p95_s": pl.Float64},
    )


def test_days_in_a_row_stay_one_line_and_a_gap_gets_one_break() -> None:
    frame = _by_day(
        [date(2026, 10, 3), date(2026, 10, 1), date(2026, 10, 2), date(2100, 1, 1)],
        [3.0, 1.0, 2.0, None],
        [30.0, 10.0, 20.0, 40.0],
    )
    line = _break_at_gaps(frame)
    assert line["day"].to_list() == [
        date(2026, 10, 1),
        date(2026, 10, 2),
        date(2026, 10, 3),
        date(2026, 10, 4),  # the break: no data from here to 2100
        date(2100, 1, 1),
    ]
    p95 = line["p95_s"].to_list()
    assert p95[:3] == [10.0, 20.0, 30.0] and math.isnan(p95[3]) and p95[4] == 40.0
    assert math.isnan(line["p50_s"][4])  # a day without a p50 is not drawn either


def test_no_gap_no_break_and_one_day_alone() -> None:
    consecutive = _by_day([date(2026, 1, 1), date(2026, 1, 2)], [1.0, 2.0], [3.0, 4.0])
    assert _break_at_gaps(consecutive).height == 2
    assert _break_at_gaps(_by_day([date(2026, 1, 1)], [1.0], [2.0])).height == 1
