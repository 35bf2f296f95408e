"""Monthly usage and invoices, derived from the tasks as the service reports them.

Usage for month M counts the tasks whose status is `settled` at `as_of` and whose reported
`settled_at` falls in M (the latest version served at `as_of`). `total_cost_sats` is the sum
of their reported costs; a task reported with cost 0 (unknown) is counted in `tasks_settled`
and adds 0 to every sum. `platform_fee_sats` is the model's fee part of each known cost and
`worker_payouts_sats` the rest, so payouts + fee == total. Daily rows list the days with at
least one task and add up to the totals. Planted billing anomalies are applied last.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from asg_audit.sim.clock import format_ts

if TYPE_CHECKING:
    from asg_audit.sim.world import SimTask, World

__all__ = ["USD_PER_BSV", "compute_invoices", "compute_usage", "months_between"]

USD_PER_BSV = 50  # for `total_cost_usd_estimate` only


def months_between(first_at: int, last_at: int) -> list[str]:
    """Return "YYYY-MM" for every month from `first_at` to `last_at` inclusive."""
    a = datetime.fromtimestamp(first_at, tz=UTC)
    b = datetime.fromtimestamp(last_at, tz=UTC)
    out = []
    y, m = a.year, a.month
    while (y, m) <= (b.year, b.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _month_end(month: str) -> int:
    y, m = int(month[:4]), int(month[5:7])
    y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return int(datetime(y, m, 1, tzinfo=UTC).timestamp())


def compute_usage(
    world: World, month: str, *, as_of: float, extra_tasks: Iterable[SimTask] = ()
) -> dict[str, Any]:
    """Return the usage body for `month` as the service would answer at `as_of`.

    `extra_tasks` are tasks submitted live to the running Gateway; they are billed too.
    """
    tasks = 0
    total = 0
    fees = 0
    daily: dict[str, list[int]] = {}
    for t in itertools.chain(world.tasks, extra_tasks):
        if t.status_at(as_of) != "settled":
            continue
        rep = t.reported_at(as_of)
        day = format_ts(rep["settled_at"])[:10]
        if day[:7] != month:
            continue
        cost = int(rep["cost_sats"])
        fee = min(t.fee_sats, cost) if cost > 0 else 0
        tasks += 1
        total += cost
        fees += fee
        row = daily.setdefault(day, [0, 0])
        row[0] += 1
        row[1] += cost
    body: dict[str, Any] = {
        "customer_id": world.customer_id,
        "month": month,
        "tier": "sandbox",
        "tasks_settled": tasks,
        "total_cost_sats": total,
        "total_cost_usd_estimate": round(total * USD_PER_BSV / 100_000_000, 2),
        "worker_payouts_sats": total - fees,
        "platform_fee_sats": fees,
        "daily_breakdown": [
            {"date": d, "tasks": v[0], "cost_sats": v[1]} for d, v in sorted(daily.items())
        ],
    }
    tamper = world.billing_tamper.get(month)
    if tamper and body["daily_breakdown"]:
        if tamper["kind"] == "billing_total_off":
            body["total_cost_sats"] += tamper["delta_sats"]
        else:
            rows = body["daily_breakdown"]
            rows[tamper["row"] % len(rows)]["cost_sats"] += tamper["delta_sats"]
    return body


def compute_invoices(
    world: World, *, as_of: float, extra_tasks: Iterable[SimTask] = ()
) -> list[dict[str, Any]]:
    """Return one invoice per month that has started by `as_of`."""
    out = []
    for month in world.months:
        start = int(datetime(int(month[:4]), int(month[5:7]), 1, tzinfo=UTC).timestamp())
        if start > as_of:
            continue
        usage = compute_usage(world, month, as_of=as_of, extra_tasks=extra_tasks)
        closed = as_of >= _month_end(month)
        out.append(
            {
                "invoice_id": f"inv_{world.customer_id[4:12]}_{month.replace('-', '')}",
                "month": month,
                "status": "closed" if closed else "open",
                "tasks_settled": usage["tasks_settled"],
                "total_cost_sats": usage["total_cost_sats"],
                "issued_at": format_ts(_month_end(month)) if closed else None,
            }
        )
    return out
