"""Checks of the records the store holds but no result uses: rejects, records kept without a
status, and webhook deliveries not normalised yet (`unused_input`, read store-wide by
`audit._unused_input_table`)."""

from __future__ import annotations

import polars as pl

from asg_audit.checks._registry import CheckContext, finding, fmt, no_findings, register_check
from asg_audit.config import CheckLevels


def _unused(ctx: CheckContext, kind: str) -> pl.LazyFrame | None:
    if not ctx.has_table("unused_input"):
        return None
    return ctx.table("unused_input").filter(pl.col("kind") == kind)


def _first(field: pl.Expr | None = None) -> pl.Expr:
    where = pl.col("first_where")
    if field is not None:  # a reject's field: the first one's (others may name another)
        where = pl.when(field != "").then(fmt("{} (field {})", where, field)).otherwise(where)
    return fmt("the first {}, stored {}", where, pl.col("first_at"))


@register_check("input.rejected", default=CheckLevels(warn=1), unit="records")
def rejected(ctx: CheckContext) -> pl.LazyFrame:
    """Records quarantined in `rejects` (not JSON, unsafe task id, a bad field, ...), one row per
    source and reason, counted over the whole store: none of them reached a result.

    The level is the number of records; `asg-audit ingest`'s summary and the `rejects` table
    (raw record, file and line, field, detail) say which."""
    rows = _unused(ctx, "rejected")
    if rows is None:
        return no_findings()
    field = pl.col("note")
    return rows.select(
        finding(
            entity_type="input",
            entity_id=fmt("{} {}", pl.col("source"), pl.col("what")),
            expected=pl.lit("no rejected records"),
            actual=fmt("{} record(s) rejected", pl.col("records")),
            difference=pl.col("records"),
            message=fmt(
                "{} {} record(s) rejected: {}; {} (see the rejects table)",
                pl.col("records"),
                pl.col("source"),
                pl.col("what"),
                _first(field),
            ),
            value=pl.col("records"),
        )
    )


@register_check("input.no_status", default=CheckLevels(warn=1), unit="records")
def no_status(ctx: CheckContext) -> pl.LazyFrame:
    """Records kept without a status that are not error answers (a webhook delivery of another
    event than `task.settled`, a 200 whose status is null, an exported record with no
    status), one row per source and shape, store-wide: stored as observations, but no result
    reads them."""
    rows = _unused(ctx, "no_status")
    if rows is None:
        return no_findings()
    event = pl.col("note")
    said = (
        pl.when(event.is_not_null())
        .then(fmt(" (its event: {})", event))
        .when(pl.col("what") == "webhook")
        .then(pl.lit(" (an event other than task.settled, or a null status)"))
        .otherwise(pl.lit(""))
    )
    return rows.select(
        finding(
            entity_type="input",
            entity_id=fmt("{} {}", pl.col("source"), pl.col("what")),
            expected=pl.lit("a status in every record that is not an error answer"),
            actual=fmt("{} record(s) without a status", pl.col("records")),
            difference=pl.col("records"),
            message=fmt(
                "{} {} record(s) ({} shape) kept without a status, so in no result{}; {}",
                pl.col("records"),
                pl.col("source"),
                pl.col("what"),
                said,
                _first(),
            ),
            value=pl.col("records"),
        )
    )


@register_check("input.unnormalised", default=CheckLevels(warn=1), unit="records")
def unnormalised(ctx: CheckContext) -> pl.LazyFrame:
    """Webhook deliveries acknowledged and stored in `webhook_deliveries` but not normalised
    yet: the receiver stopped (killed) before its normaliser ran. They are in no result until
    `serve-webhooks` starts again on the store, which normalises them first. Store-wide."""
    rows = _unused(ctx, "unnormalised")
    if rows is None:
        return no_findings()
    return rows.select(
        finding(
            entity_type="input",
            entity_id=pl.lit("webhook deliveries"),
            expected=pl.lit("every acknowledged delivery normalised"),
            actual=fmt("{} delivery(ies) not normalised", pl.col("records")),
            difference=pl.col("records"),
            message=fmt(
                "{} acknowledged webhook delivery(ies) not normalised yet, so in no result"
                " (serve-webhooks normalises them when it starts again on this store); {}",
                pl.col("records"),
                _first(),
            ),
            value=pl.col("records"),
        )
    )
