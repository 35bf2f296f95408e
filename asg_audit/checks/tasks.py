"""Checks of spec claims 7, 8 and 9 on whole tasks: lifecycle, status, stuck, unknown, changes;
and of the records a task's result was read from (a field stated two ways)."""

from __future__ import annotations

from datetime import UTC
from typing import Final

import polars as pl

from asg_audit.analyses.collection import POLLED_TO_END, tracked_ids, without_status
from asg_audit.analyses.latency import created_after_as_of
from asg_audit.checks._registry import CheckContext, finding, fmt, no_findings, register_check
from asg_audit.config import CheckLevels
from asg_audit.model import ALIAS_DETAIL_PATTERN, Flag, TaskStatus
from asg_audit.results_sql import RESULT_CHANGES

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
    unit="s",
    claim=8,
    kind="stuck_task",
)
def stuck_task(ctx: CheckContext) -> pl.LazyFrame:
    """Pending, in progress or verified for longer than the level (seconds since creation, at
    as_of). Verified is consensus reached and the workers not paid yet: a task left there is a
    settlement that does not happen, as much as one that never reaches consensus (tester T2:
    a task verified for 53 days was counted pending and found nothing).

    The age is judged, shown and compared in whole seconds (cut down: for a level of whole
    seconds the same tasks as the exact age), so that actual - expected is the difference:
    "in_progress for 72 d 21 h (6,297,654 s)", "settled within 3600 s", 6,294,054."""
    since = pl.coalesce("created_at", "first_seen_at")
    age = (pl.lit(ctx.as_of) - since).dt.total_seconds(fractional=True)
    whole = age.floor().cast(pl.Int64)
    active = [TaskStatus.PENDING.value, TaskStatus.IN_PROGRESS.value, TaskStatus.VERIFIED.value]
    # the level it fires at (warn, else fail): "settled within" the time a task is given
    limit = lowest = ctx.lowest_level("task.stuck")
    shown = _duration_text(whole)
    return ctx.tasks.filter(
        pl.col("status").is_in(active) & since.is_not_null() & (whole >= lowest)
    ).select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=pl.lit(f"settled within {limit:.10g} s"),
            actual=fmt("{} for {}", pl.col("status"), shown),
            # a whole number when the level is (exact in summary.json, no ".0")
            difference=whole - (int(limit) if float(limit).is_integer() else limit),
            message=fmt("still {} {} after creation", pl.col("status"), shown),
            value=whole,
        )
    )


def _grouped(n: pl.Expr) -> pl.Expr:
    """A whole number of 0 or more as text in groups of three digits: `6,297,654`."""
    return n.cast(pl.String).str.reverse().str.extract_all(r"\d{1,3}").list.join(",").str.reverse()


def _duration_text(seconds: pl.Expr) -> pl.Expr:
    """A whole number of seconds (0 or more) as its two largest units and the exact seconds:
    `72 d 21 h (6,297,654 s)`, `1 h 5 min (3,900 s)`, `2 min (120 s)`; under a minute `59 s`."""
    n = seconds
    d, h, m, s = n // 86_400, n % 86_400 // 3600, n % 3600 // 60, n % 60

    def pair(big: pl.Expr, big_unit: str, small: pl.Expr, small_unit: str) -> pl.Expr:
        rest = pl.when(small > 0).then(fmt(f" {{}} {small_unit}", small)).otherwise(pl.lit(""))
        return pl.concat_str(_grouped(big), pl.lit(f" {big_unit}"), rest)

    short = (
        pl.when(d > 0)
        .then(pair(d, "d", h, "h"))
        .when(h > 0)
        .then(pair(h, "h", m, "min"))
        .otherwise(pair(m, "min", s, "s"))
    )
    exact = pl.concat_str(_grouped(n), pl.lit(" s"))
    return (
        pl.when(n < 60)
        .then(exact)
        .otherwise(pl.concat_str(short, pl.lit(" ("), exact, pl.lit(")")))
    )


_ISO_SECONDS: Final = "%Y-%m-%dT%H:%M:%SZ"


def _iso_utc(column: pl.Expr) -> pl.Expr:
    return column.dt.convert_time_zone("UTC").dt.strftime(_ISO_SECONDS)


@register_check(
    "task.created_after_as_of", default=CheckLevels(severity="info"), unit="tasks", claim=8
)
def created_after(ctx: CheckContext) -> pl.LazyFrame:
    """One row: how many tasks were created after the as-of time, so are not aged.

    They did not exist at `as_of` (the API's clock, or created_at, is ahead of it, or `as_of`
    was set earlier than the data): the backlog ages and the survival curve leave them out.
    """
    row = created_after_as_of(ctx.tasks, as_of=ctx.as_of).lazy()
    n = pl.col("tasks")
    as_of = ctx.as_of.astimezone(UTC).strftime(_ISO_SECONDS)
    return row.filter(n > 0).select(
        finding(
            entity_type="audit",
            entity_id=pl.lit("as_of"),
            expected=pl.lit(f"created_at <= {as_of}"),
            actual=fmt(
                "{} tasks created {} to {}",
                n,
                *(_iso_utc(pl.col(c)) for c in ("first_created_at", "last_created_at")),
            ),
            difference=n,
            message=fmt(
                "{} tasks created after the as-of time are not aged ({} of them unsettled): "
                "left out of the backlog ages and the survival curve",
                n,
                pl.col("unsettled"),
            ),
        )
    )


def _uncollected(ctx: CheckContext) -> tuple[pl.LazyFrame, pl.LazyFrame] | None:
    """Return the tracked tasks never seen with a status, and the poll states of tracked ids.

    None when nothing is tracked.
    """
    tracked = [
        ctx.table(name)
        for name in ("submissions", "poll_state")
        if ctx.has_table(name) and "task_id" in ctx.table(name).collect_schema().names()
    ]
    if not tracked:
        return None
    states = pl.LazyFrame(schema={"task_id": pl.String, "state": pl.String})
    if ctx.has_table("poll_state"):
        table = ctx.table("poll_state")
        if "state" in table.collect_schema().names():
            states = table.select(pl.col("task_id").cast(pl.String), pl.col("state"))
    unseen = without_status(tracked_ids(*tracked), ctx.tasks).join(states, on="task_id", how="left")
    return unseen, states


@register_check(
    "task.unknown",
    default=CheckLevels(severity="fail"),
    claim=8,
    kind="unknown_task",
)
def unknown_task(ctx: CheckContext) -> pl.LazyFrame:
    """A tracked task the Gateway does not know: polled to a final state, never with a status.

    In practice `poll_state` `not_found` (404 past the collector's grace window). A task not
    polled yet, still pending, or whose polls all failed (transport errors, 5xx) is no finding:
    `task.not_collected` counts those.
    """
    found = _uncollected(ctx)
    if found is None:
        return no_findings()
    unseen, _ = found
    state = pl.col("state")
    return unseen.filter(state.is_not_null() & state.is_in(POLLED_TO_END)).select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=pl.lit("a result or status"),
            actual=pl.when(state == "not_found")
            .then(pl.lit("404 not found"))
            .otherwise(fmt("never seen (poll state {})", state)),
            difference=None,
            message=pl.when(state == "not_found")
            .then(pl.lit("the Gateway answered 404 for this tracked task past the grace window"))
            .otherwise(fmt("polled to the final state {} without ever a status", state)),
        )
    )


@register_check("task.not_collected", default=CheckLevels(severity="info"), unit="tasks", claim=8)
def not_collected(ctx: CheckContext) -> pl.LazyFrame:
    """One row: how many tracked tasks have no status yet and were not polled to the end."""
    found = _uncollected(ctx)
    if found is None:
        return no_findings()
    unseen, _ = found
    state = pl.col("state")
    waiting = unseen.filter(state.is_null() | ~state.is_in(POLLED_TO_END))
    n = waiting.select(pl.len().cast(pl.Int64).alias("n"))
    return n.filter(pl.col("n") > 0).select(
        finding(
            entity_type="collection",
            entity_id=pl.lit("tracked tasks"),
            expected=pl.lit("a result or status for every tracked task"),
            actual=fmt("{} tracked tasks not collected yet", pl.col("n")),
            difference=pl.col("n"),
            message=fmt(
                "{} tracked tasks not collected yet (not polled, still pending, or every poll "
                "failed): the next collect asks again",
                pl.col("n"),
            ),
        )
    )


@register_check(
    "task.settled_before_created",
    default=CheckLevels(severity="fail"),
    unit="s",
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


@register_check(
    "webhook.delivered_before_settled", default=CheckLevels(severity="warn"), unit="s", claim=7
)
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
    unit="changes",
    claim=9,
    kind="changed_after_settlement",
)
def changed_after_settlement(ctx: CheckContext) -> pl.LazyFrame:
    """A settled result seen later in another version (label, txid, cost, counts, confidence or
    settlement time: each version once, however often seen) or answered as not settled by a
    poll (conflict_count > 0)."""
    n = pl.col("conflict_count")
    changed = ctx.tasks.filter(n > 0)
    fields = changes = pl.lit("")
    if ctx.has_table(RESULT_CHANGES):
        # "cost_sats 650, later 975; status settled, later in_progress", in the order first seen
        shown = ctx.table(RESULT_CHANGES).select(
            pl.col("task_id").cast(pl.String),
            "first_obs",
            "field",
            pl.concat_str(
                "field",
                pl.lit(" "),
                _cut(pl.col("was")),
                pl.lit(", later "),
                pl.col("became").list.eval(_cut(pl.element())).list.join(", "),
            ).alias("change"),
        )
        per_task = (
            shown.sort("task_id", "first_obs", "field")
            .group_by("task_id", maintain_order=True)
            .agg(
                pl.col("field").unique(maintain_order=True).str.join(", ").alias("fields"),
                pl.col("change").str.join("; ").alias("changes"),
            )
        )
        changed = changed.with_columns(pl.col("task_id").cast(pl.String)).join(
            per_task, on="task_id", how="left"
        )
        fields = pl.concat_str(pl.lit(" ("), pl.col("fields"), pl.lit(")")).fill_null("")
        changes = pl.concat_str(pl.lit(": "), pl.col("changes")).fill_null("")
    return changed.select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=pl.lit("no change after settlement"),
            actual=pl.concat_str(fmt("{} change(s)", n), fields),
            difference=n,
            message=pl.concat_str(
                fmt("settled result changed afterwards: {} other version(s) or reversal(s)", n),
                changes,
            ),
        )
    )


_SHOWN_CHARS: Final = 72  # a txid (64) whole; a long label cut


def _cut(text: pl.Expr) -> pl.Expr:
    return (
        pl.when(text.str.len_chars() > _SHOWN_CHARS)
        .then(pl.concat_str(text.str.slice(0, _SHOWN_CHARS), pl.lit("...")))
        .otherwise(text)
    )


@register_check("record.aliases_disagree", default=CheckLevels(severity="fail"))
def aliases_disagree(ctx: CheckContext) -> pl.LazyFrame:
    """A record stating one field under two aliases with different values (flag `aliases_disagree`).

    Cost as `settlement.total_cost_sats`, `total_cost_sats` or `cost_sats`, the txid and
    `settled_at` flat or in `settlement`, `task_type` or `type`: the first alias present is
    used, so the other value was silently dropped. One row per field and pair of aliases, from
    the detail entries the normaliser keeps next to the flag (the values as written, cut).
    """
    if "flags" not in ctx.tasks.collect_schema().names():
        return no_findings()
    entry = pl.col("flags")
    field = entry.str.extract(ALIAS_DETAIL_PATTERN, 1)
    pair = entry.str.extract(ALIAS_DETAIL_PATTERN, 2)
    return (
        ctx.tasks.select("task_id", "flags")
        .filter(entry.list.contains(Flag.ALIASES_DISAGREE.value).fill_null(False))
        .explode("flags")
        .filter(field.is_not_null())
        .select(
            finding(
                entity_type="task",
                entity_id=pl.col("task_id"),
                expected=fmt("one value for {}", field),
                actual=pair,
                difference=None,
                message=fmt(
                    "task {} states {} twice with different values: {}",
                    pl.col("task_id"),
                    field,
                    pair,
                ),
            )
        )
    )
