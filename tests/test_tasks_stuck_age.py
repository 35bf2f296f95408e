"""`task.stuck` shows the age so that actual - expected is the difference, and readably.

Tester D: Actual read "in_progress for 6297654.0 s" (rounded, with ".0") while the difference
was 6,294,054.393 (unrounded), so Actual - Expected was not the Difference. Now the age is
judged, shown and compared in whole seconds: "in_progress for 72 d 21 h (6,297,654 s)",
"settled within 3600 s", difference 6,294,054.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from _analyses_frames import T0, result, results_frame, submission, submissions_frame

from asg_audit.checks import CheckContext, run_checks
from asg_audit.config import AuditConfig


def _stuck(age: timedelta, **config: object) -> dict[str, object]:
    rows = [result("slow", status="in_progress", settled_at=None, bsv_txid=None)]
    ctx = CheckContext(
        {"results": results_frame(rows), "submissions": submissions_frame([submission("slow")])},
        config=AuditConfig(**config),  # type: ignore[arg-type]
        as_of=T0 + age,
    )
    found = run_checks(ctx, only=["task.stuck"]).to_dicts()
    assert len(found) == 1
    return found[0]


def test_stuck_actual_minus_expected_is_the_difference() -> None:
    got = _stuck(timedelta(seconds=6_297_654.393))
    assert got["actual"] == "in_progress for 72 d 21 h (6,297,654 s)"
    assert got["expected"] == "settled within 3600 s"
    assert got["difference"] == 6_294_054
    assert got["difference_exact"] == Decimal(6_294_054)
    assert got["message"] == "still in_progress 72 d 21 h (6,297,654 s) after creation"
    shown = int(re.search(r"\(([\d,]+) s\)", str(got["actual"]))[1].replace(",", ""))  # type: ignore[index]
    limit = int(re.search(r"(\d+) s$", str(got["expected"]))[1])  # type: ignore[index]
    assert shown - limit == got["difference"]


@pytest.mark.parametrize(
    ("seconds", "actual", "difference"),
    [
        (3600.0, "in_progress for 1 h (3,600 s)", 0),
        (3900.7, "in_progress for 1 h 5 min (3,900 s)", 300),
        (90_000.2, "in_progress for 1 d 1 h (90,000 s)", 86_400),
        (86_400 * 3, "in_progress for 3 d (259,200 s)", 255_600),
    ],
)
def test_stuck_age_in_its_two_largest_units(seconds: float, actual: str, difference: int) -> None:
    got = _stuck(timedelta(seconds=seconds))
    assert (got["actual"], got["difference"]) == (actual, difference)


def test_stuck_under_a_minute_level_shows_seconds_alone() -> None:
    got = _stuck(timedelta(seconds=45.9), checks={"task.stuck": {"fail": 30}})
    assert (got["actual"], got["expected"], got["difference"]) == (
        "in_progress for 45 s",
        "settled within 30 s",
        15,
    )
    fractional = _stuck(timedelta(seconds=45.9), checks={"task.stuck": {"fail": 30.5}})
    assert (fractional["difference"], fractional["difference_exact"]) == (14.5, None)


@pytest.mark.parametrize("status", ["pending", "in_progress", "verified"])
def test_a_task_left_before_settlement_is_stuck_whatever_the_documented_status(
    status: str,
) -> None:
    """Tester T2: a task `verified` (consensus reached, the workers not paid) for 53 days was
    counted pending and found nothing, while the same task `in_progress` failed."""
    rows = [
        result("old", status=status, settled_at=None, bsv_txid=None),
        result("young", status=status, settled_at=None, bsv_txid=None),
        result("paid", status="settled"),
        result("odd", status="on_hold", settled_at=None, bsv_txid=None),
    ]
    rows[1]["created_at"] = T0 + timedelta(days=53)
    ctx = CheckContext(
        {"results": results_frame(rows)},
        config=AuditConfig(),
        as_of=T0 + timedelta(days=53, minutes=59),
    )
    found = run_checks(ctx, only=["task.stuck"]).to_dicts()
    assert [(f["entity_id"], f["severity"]) for f in found] == [("old", "fail")]
    assert found[0]["message"].startswith(f"still {status} 53 d ")
