"""`collection.seen_one_way`: a task polled but never pushed counts only when it settled once
the receiver was live (at or after the first stored delivery). A receiver registered after
go-live warned of every earlier task for ever (tester T6: the demo's 390 "seen by poll only"
were exactly the tasks settled before its receiver was registered)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from _analyses_frames import T0, result, results_frame

from asg_audit.checks import CheckContext, run_checks
from asg_audit.config import AuditConfig

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _found(observations: pl.DataFrame | None) -> dict[str, int]:
    results = results_frame(
        [
            result("early", settled_at=T0 + timedelta(seconds=47)),  # before the receiver
            result("both", settled_at=T0 + HOUR, sources=["poll", "webhook"]),
            result("missed", settled_at=T0 + 2 * HOUR),  # after it: a missed delivery
            result("when", settled_at=None),  # when it settled is unknown: counts
            result("pushed", settled_at=T0 + 3 * HOUR, sources=["webhook"]),
        ]
    )
    tables = {"results": results}
    if observations is not None:
        tables["observations"] = observations
    ctx = CheckContext(tables, config=AuditConfig(), as_of=AS_OF)
    found = run_checks(ctx, only=["collection.seen_one_way"])
    return dict(zip(found["entity_id"], found["difference"].cast(pl.Int64), strict=True))


def _observations(first_delivery: datetime) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "task_id": ["both", "early", "both"],
            "source": ["webhook", "poll", "poll"],
            "observed_at": [first_delivery, T0 + HOUR, T0 + 2 * HOUR],
        },
        schema={"task_id": pl.String, "source": pl.String, "observed_at": pl.Datetime("us", "UTC")},
    )


def test_tasks_settled_before_the_first_delivery_are_not_missed_deliveries() -> None:
    assert _found(_observations(T0 + HOUR + timedelta(seconds=1))) == {
        "poll only": 2,  # missed, when (not early)
        "webhook only": 1,
    }


def test_with_the_receiver_live_from_the_start_every_poll_only_task_counts() -> None:
    assert _found(_observations(T0)) == {"poll only": 3, "webhook only": 1}
