"""Checks of spec claims 4 and 5: txids and cost per task."""

from __future__ import annotations

import polars as pl

from asg_audit.analyses.costs import (
    COST_REPORTED_ZERO,
    NO_COST_REPORTED,
    describe_model,
    expected_cost_expr,
)
from asg_audit.checks._registry import CheckContext, finding, fmt, register_check
from asg_audit.config import CheckLevels

DEFAULT_SHARED_TXID_WINDOW_SECONDS = 300.0


def _txid_missing() -> pl.Expr:
    return pl.col("bsv_txid").is_null() | (pl.col("bsv_txid") == "")


@register_check("txid.missing", default=CheckLevels(severity="fail"), claim=4, kind="missing_txid")
def missing_txid(ctx: CheckContext) -> pl.LazyFrame:
    """A settled task without a txid."""
    return ctx.tasks.filter(pl.col("is_settled") & _txid_missing()).select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=pl.lit("a 64-hex txid"),
            actual=pl.lit("none"),
            difference=None,
            message=pl.lit("settled without a payment txid"),
        )
    )


@register_check(
    "txid.malformed", default=CheckLevels(severity="fail"), claim=4, kind="malformed_txid"
)
def malformed_txid(ctx: CheckContext) -> pl.LazyFrame:
    """A txid that is not 64 lowercase hex characters (or is all zeros)."""
    tx = pl.col("bsv_txid")
    return ctx.tasks.filter(~_txid_missing() & ~pl.col("txid_well_formed")).select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=pl.lit("64 hex characters, not all zeros"),
            actual=tx,
            difference=None,
            message=fmt("malformed txid ({} characters)", tx.str.len_chars()),
        )
    )


@register_check(
    "txid.shared_spread",
    default=CheckLevels(fail=DEFAULT_SHARED_TXID_WINDOW_SECONDS),
    unit="s",
    claim=4,
    kind="duplicate_txid",
)
def shared_txid_spread(ctx: CheckContext) -> pl.LazyFrame:
    """A txid shared by tasks settled further apart than a batch (level: spread in seconds).

    Under --since/--until a txid is judged on all its tasks in the store, and reported in a
    window holding any of them (`analyze` adds the tasks outside it, `OUTSIDE_TASKS`): a
    re-use across the window's edge is still one.
    """
    levels = ctx.levels("txid.shared_spread")
    window = min(x for x in (levels.warn, levels.fail, DEFAULT_SHARED_TXID_WINDOW_SECONDS) if x)
    spread = pl.col("spread_s")
    shared = ctx.frames.get("shared_txids")
    if shared is None:
        from asg_audit.reconcile import OUTSIDE_TASKS, shared_txids_store_wide

        outside = ctx.table(OUTSIDE_TASKS) if ctx.has_table(OUTSIDE_TASKS) else None
        shared = shared_txids_store_wide(ctx.tasks, outside)
    groups = shared.lazy()
    return (
        groups.filter(spread >= ctx.lowest_level("txid.shared_spread"))
        .rename({"total_cost_sats": "total"})
        .select(
            finding(
                entity_type="txid",
                entity_id=pl.col("bsv_txid"),
                expected=pl.lit(f"tasks of one batch, settled less than {window:g} s apart"),
                actual=fmt("{} tasks settled over {} s", pl.col("tasks"), spread.round(1)),
                difference=spread - window,
                message=fmt(
                    "txid re-used by {} tasks settled {} s apart (total {} sats)",
                    pl.col("tasks"),
                    spread.round(1),
                    pl.col("total"),
                ),
                value=spread,
            )
        )
    )


@register_check(
    "cost.mismatch", default=CheckLevels(fail=1), unit="sats", claim=5, kind="cost_mismatch"
)
def cost_mismatch(ctx: CheckContext) -> pl.LazyFrame:
    """Reported cost differs from the configured model (level: |difference| in sats).

    Unknown (0) costs are not compared; tasks with invalid counts are left to the count checks.
    """
    model = ctx.config.costs
    expected = expected_cost_expr(model)
    diff = pl.col("cost_sats") - expected
    lowest = ctx.lowest_level("cost.mismatch")
    return ctx.tasks.filter(
        pl.col("is_settled")
        & pl.col("counts_valid")
        & pl.col("cost_sats").is_not_null()
        & (diff.abs() >= lowest)
    ).select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=expected,
            actual=pl.col("cost_sats"),
            difference=diff,
            message=fmt(
                "cost {} sats, expected {} ({}, A={})",
                pl.col("cost_sats"),
                expected,
                pl.lit(describe_model(model)),
                pl.col("agreement_count"),
            ),
            value=diff.abs(),
        )
    )


@register_check("cost.unknown", default=CheckLevels(severity="info"), unit="tasks", claim=5)
def cost_unknown(ctx: CheckContext) -> pl.LazyFrame:
    """Settled tasks reporting a cost of 0 (unknown, not free): counted, one row overall.

    The count (`difference`) is of tasks whose answer said 0 (`cost_unknown`). Settled tasks
    no answer stated a cost for (a webhook has none; a result without the field or with
    null) are counted apart in the same row: they are left out of the cost checks too, but
    they did not report 0.
    """
    n, none = pl.col("n"), pl.col("none")
    zero_text = fmt("{} settled task(s) report cost 0 (unknown)", n)
    none_text = fmt("{} settled task(s) report no cost at all", none)
    return (
        ctx.tasks.filter(pl.col("is_settled"))
        .select(
            COST_REPORTED_ZERO.sum().alias("n"),
            NO_COST_REPORTED.sum().alias("none"),
            pl.len().alias("settled"),
        )
        .filter((n > 0) | (none > 0))
        .select(
            finding(
                entity_type="dataset",
                entity_id=pl.lit("settled tasks"),
                expected=pl.lit("a known cost"),
                actual=fmt("{} of {} report 0, {} report no cost", n, pl.col("settled"), none),
                difference=n,
                message=fmt(
                    "{}: left out of cost checks",
                    pl.when((n > 0) & (none > 0))
                    .then(pl.concat_str(zero_text, none_text, separator=" and "))
                    .when(n > 0)
                    .then(zero_text)
                    .otherwise(none_text),
                ),
            )
        )
    )
