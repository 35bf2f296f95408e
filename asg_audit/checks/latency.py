"""Checks of spec claim 3: latency against the SLO and the documented 30-60 s average."""

from __future__ import annotations

import polars as pl

from asg_audit.analyses._tasks import stable_mean
from asg_audit.checks._registry import CheckContext, finding, fmt, register_check
from asg_audit.config import CheckLevels

DOCUMENTED_MEAN_RANGE_S = (30.0, 60.0)


def _settled(ctx: CheckContext) -> pl.LazyFrame:
    return ctx.tasks.filter(pl.col("is_settled") & (pl.col("latency_s") >= 0))


@register_check(
    "latency.share_over_slo", default=CheckLevels(warn=0.5), unit="share, 0 to 1", claim=3
)
def share_over_slo(ctx: CheckContext) -> pl.LazyFrame:
    """Share of settled tasks slower than the SLO (level: the share, 0..1)."""
    slo = ctx.config.slo_seconds
    over = pl.col("latency_s") > slo
    return (
        _settled(ctx)
        .select(over.mean().alias("share"), over.sum().alias("over"), pl.len().alias("n"))
        .filter(pl.col("n") > 0)
        .select(
            finding(
                entity_type="dataset",
                entity_id=pl.lit("latency"),
                expected=pl.lit(f"most tasks settled within {slo:g} s"),
                # a count of a count, then the share: "2 of 4 (50.0%) over the SLO"
                actual=fmt(
                    "{} of {} ({}%) over the SLO",
                    pl.col("over"),
                    pl.col("n"),
                    (pl.col("share") * 100).round(1),
                ),
                difference=pl.col("share"),
                message=fmt(
                    "{}% of settled tasks took over {} s",
                    (pl.col("share") * 100).round(1),
                    pl.lit(slo),
                ),
                value=pl.col("share"),
            )
        )
    )


@register_check("latency.mean_outside_documented", default=CheckLevels(warn=1.0), unit="s", claim=3)
def mean_outside_documented(ctx: CheckContext) -> pl.LazyFrame:
    """Mean latency outside the documented 30-60 s (level: seconds outside the range)."""
    lo, hi = DOCUMENTED_MEAN_RANGE_S
    mean = pl.col("mean")
    outside = pl.max_horizontal(pl.lit(lo) - mean, mean - hi, pl.lit(0.0))
    return (
        _settled(ctx)
        .select(stable_mean(pl.col("latency_s")).alias("mean"))
        .filter(mean.is_not_null())
        .select(
            finding(
                entity_type="dataset",
                entity_id=pl.lit("latency"),
                expected=pl.lit(f"mean between {lo:g} and {hi:g} s"),
                actual=mean.round(2),
                difference=pl.when(mean < lo).then(mean - lo).otherwise(outside),
                message=fmt("mean settlement time {} s", mean.round(1)),
                value=outside,
            )
        )
    )


@register_check("settled_at.missing", default=CheckLevels(severity="fail"), claim=3)
def missing_settled_at(ctx: CheckContext) -> pl.LazyFrame:
    """A settled task without `settled_at`, the moment its payment completed.

    Its latency cannot be measured, and billing cannot say which month paid it: such a task
    left the monthly spend and the latency figures silently, and `billing.vs_results` had to
    count it among the tasks that may have settled in any month, so a bill charging more than
    it cost was only an info finding (tester T2).
    """
    return ctx.tasks.filter(pl.col("is_settled") & pl.col("settled_at").is_null()).select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=pl.lit("the time the payment completed (settled_at)"),
            actual=pl.lit("none"),
            difference=None,
            message=pl.lit(
                "settled without settled_at: its latency is not measured and no month's bill"
                " is compared with its cost"
            ),
        )
    )
