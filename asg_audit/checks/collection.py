"""Checks of spec claim 10: webhook deliveries against polled results."""

from __future__ import annotations

import polars as pl

from asg_audit.analyses.collection import webhook_poll_disagreements
from asg_audit.checks._registry import CheckContext, finding, fmt, no_findings, register_check
from asg_audit.config import CheckLevels
from asg_audit.model import Source


@register_check("collection.webhook_poll_disagree", default=CheckLevels(severity="warn"), claim=10)
def webhook_poll_disagree(ctx: CheckContext) -> pl.LazyFrame:
    """A field of the latest webhook delivery differs from the latest polled result."""
    obs = ctx.table("observations")
    if not {"source", "observed_at", "settled_at"} <= set(obs.collect_schema().names()):
        return no_findings()
    rows = webhook_poll_disagreements(obs).lazy()
    return rows.select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=fmt("{} (poll)", pl.col("poll_value")),
            actual=fmt("{} (webhook)", pl.col("webhook_value")),
            difference=None,
            message=fmt("webhook and poll disagree on {}", pl.col("field")),
        )
    )


@register_check("collection.seen_one_way", default=CheckLevels(warn=1), unit="tasks", claim=10)
def seen_one_way(ctx: CheckContext) -> pl.LazyFrame:
    """Settled tasks seen only by webhook or only by polling, when both channels delivered.

    One row per channel; the level is the number of such tasks. A task polled but never
    pushed counts only when it settled once the receiver was live (at or after the first
    delivery stored): the Gateway pushes a settlement as it happens, so one before the
    receiver was registered could never arrive (tester T6: a receiver registered after go-live
    warned of every earlier task, for ever).
    """
    polled, pushed = pl.col("seen_by_poll"), pl.col("seen_by_webhook")
    settled = ctx.tasks.filter(pl.col("is_settled"))
    obs = ctx.table("observations") if ctx.has_table("observations") else None
    if obs is not None and {"source", "observed_at"} <= set(obs.collect_schema().names()):
        live_from = obs.filter(pl.col("source") == Source.WEBHOOK.value).select(
            pl.col("observed_at").min().alias("_live_from")
        )
        settled = settled.join(live_from, how="cross")
        # (a settled task with no settled_at: when it settled is unknown, so it counts)
        unpushable = (pl.col("settled_at") < pl.col("_live_from")).fill_null(False)
    else:
        unpushable = pl.lit(False)
    counts = settled.select(
        (polled & ~pushed & ~unpushable).sum().alias("poll only"),
        (pushed & ~polled).sum().alias("webhook only"),
        pushed.any().alias("_hooks"),
        polled.any().alias("_polls"),
    )
    return (
        counts.filter(pl.col("_hooks") & pl.col("_polls"))
        .unpivot(on=["poll only", "webhook only"], variable_name="channel", value_name="n")
        .select(
            finding(
                entity_type="channel",
                entity_id=pl.col("channel"),
                expected=pl.lit("settled tasks seen by both webhook and polling"),
                actual=fmt("{} task(s) seen by {}", pl.col("n"), pl.col("channel")),
                difference=pl.col("n"),
                message=fmt("{} settled task(s) seen by {}", pl.col("n"), pl.col("channel")),
                value=pl.col("n"),
            )
        )
    )
