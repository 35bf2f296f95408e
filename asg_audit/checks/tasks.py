"""Checks of spec claims 7, 8 and 9 on whole tasks: lifecycle, status, stuck, unknown, changes."""

from __future__ import annotations

import polars as pl

from asg_audit.checks._registry import CheckContext, finding, fmt, no_findings, register_check
from asg_audit.config import CheckLevels
from asg_audit.model import TaskStatus

DEFAULT_STUCK_AFTER_SECONDS = 3600.0


@register_check(
    "status.undocumented",
    default=CheckLevels(severity="fail"),
    claim=8,
    kind="undocumented_status",
)
def undocumented_status(ctx: CheckContext) -> pl.LazyFrame:
    """A status outside pending, in_progress, verified, settled."""
    s = pl.col("status")
    return ctx.tasks.filter(s.is_not_null() & ~pl.col("status_documented")).select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=pl.lit("pending | in_progress | verified | settled"),
            actual=s,
            difference=None,
            message=fmt("undocumented status {}", s),
        )
    )


@register_check(
    "task.stuck",
    default=CheckLevels(fail=DEFAULT_STUCK_AFTER_SECONDS),
    claim=8,
    kind="stuck_task",
)
def stuck_task(ctx: CheckContext) -> pl.LazyFrame:
    """Pending or in progress for longer than the level (seconds since creation, at as_of)."""
    since = pl.coalesce("created_at", "first_seen_at")
    age = (pl.lit(ctx.as_of) - since).dt.total_seconds(fractional=True)
    levels = ctx.levels("task.stuck")
    limit = min(x for x in (levels.warn, levels.fail, DEFAULT_STUCK_AFTER_SECONDS) if x is not None)
    active = [TaskStatus.PENDING.value, TaskStatus.IN_PROGRESS.value]
    lowest = ctx.lowest_level("task.stuck")
    return ctx.tasks.filter(
        pl.col("status").is_in(active) & since.is_not_null() & (age >= lowest)
    ).select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=pl.lit(f"settled within {limit:g} s"),
            actual=fmt("{} for {} s", pl.col("status"), age.round(0)),
            difference=age - limit,
            message=fmt("still {} {} s after creation", pl.col("status"), age.round(0)),
            value=age,
        )
    )


@register_check(
    "task.unknown",
    default=CheckLevels(severity="fail"),
    claim=8,
    kind="unknown_task",
)
def unknown_task(ctx: CheckContext) -> pl.LazyFrame:
    """A tracked task (submission or poll state) never seen with a status: only 404s or nothing."""
    tracked = [
        ctx.table(name).select(pl.col("task_id").cast(pl.String))
        for name in ("submissions", "poll_state")
        if ctx.has_table(name) and "task_id" in ctx.table(name).collect_schema().names()
    ]
    if not tracked:
        return no_findings()
    seen = ctx.tasks.filter(pl.col("status").is_not_null()).select("task_id")
    not_found = pl.LazyFrame(schema={"task_id": pl.String})
    if ctx.has_table("poll_state"):
        state = ctx.table("poll_state")
        if "state" in state.collect_schema().names():
            not_found = state.filter(pl.col("state") == "not_found").select("task_id")
    ids = (
        pl.concat(tracked)
        .join(seen, on="task_id", how="anti")
        .filter(pl.col("task_id").is_first_distinct())
        .join(not_found.with_columns(pl.lit(True).alias("nf")), on="task_id", how="left")
    )
    return ids.select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=pl.lit("a result or status"),
            actual=pl.when(pl.col("nf"))
            .then(pl.lit("404 not found"))
            .otherwise(pl.lit("never seen")),
            difference=None,
            message=pl.lit("tracked task never seen by the API (only 404 answers or none)"),
        )
    )


@register_check(
    "task.settled_before_created",
    default=CheckLevels(severity="fail"),
    claim=7,
    kind="settled_before_created",
)
def settled_before_created(ctx: CheckContext) -> pl.LazyFrame:
    """settled_at earlier than created_at."""
    lat = pl.col("latency_s")
    return ctx.tasks.filter(lat < 0).select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=fmt("settled_at >= {}", pl.col("created_at")),
            actual=pl.col("settled_at"),
            difference=lat,
            message=fmt("settled {} s before it was created", (-lat).round(3)),
        )
    )


@register_check("webhook.delivered_before_settled", default=CheckLevels(severity="warn"), claim=7)
def delivered_before_settled(ctx: CheckContext) -> pl.LazyFrame:
    """A webhook delivery timestamp earlier than the task's settled_at."""
    d = (pl.col("delivered_at") - pl.col("settled_at")).dt.total_seconds(fractional=True)
    return ctx.tasks.filter(d < 0).select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=fmt("timestamp >= {}", pl.col("settled_at")),
            actual=pl.col("delivered_at"),
            difference=d,
            message=fmt("webhook sent {} s before settlement", (-d).round(3)),
        )
    )


@register_check(
    "result.changed_after_settlement",
    default=CheckLevels(severity="fail"),
    claim=9,
    kind="changed_after_settlement",
)
def changed_after_settlement(ctx: CheckContext) -> pl.LazyFrame:
    """A settled result whose label, txid or cost changed later (conflict_count > 0)."""
    n = pl.col("conflict_count")
    return ctx.tasks.filter(n > 0).select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=pl.lit("no change after settlement"),
            actual=fmt("{} change(s)", n),
            difference=n,
            message=fmt("settled result changed {} time(s) afterwards", n),
        )
    )
