"""The per-task frame every analysis and check starts from: results joined with submissions."""

from __future__ import annotations

from typing import Final

import polars as pl

from asg_audit.model import DOCUMENTED_STATUSES, SUBMISSIONS_SCHEMA, TXID_PATTERN, TaskStatus

__all__ = [
    "LABEL_OUTSIDE_OPTIONS",
    "POLL_SOURCES",
    "SOURCE_FLAGS",
    "THRESHOLDS",
    "WELL_FORMED_TXID",
    "empty_frame",
    "enrich_tasks",
    "latency_seconds",
    "ratio",
    "stable_mean",
    "with_nearest_fit",
]

_SECONDS: Final = 1.0
# The consensus thresholds the API accepts (spec section 5).
THRESHOLDS: Final = tuple(range(2, 11))


def empty_frame(schema: dict[str, pl.DataType]) -> pl.LazyFrame:
    """Return an empty lazy frame with a schema (the stand-in for a table nobody wrote yet)."""
    return pl.LazyFrame(schema=schema)


def latency_seconds(start: str, end: str) -> pl.Expr:
    """Return `end - start` in (fractional) seconds."""
    return (pl.col(end) - pl.col(start)).dt.total_seconds(fractional=True)


def ratio(numerator: pl.Expr | str, denominator: pl.Expr | str) -> pl.Expr:
    """Return `numerator / denominator` as a float, null (never NaN or infinite) when the
    denominator is 0 or null: a rate or share of nothing is absent, as every frame says it.

    Polars' `fill_null`, `drop_nulls` and `mean` see a null; a NaN from 0/0 passes them all.
    """
    num = pl.col(numerator) if isinstance(numerator, str) else numerator
    den = pl.col(denominator) if isinstance(denominator, str) else denominator
    return pl.when(den != 0).then(num.cast(pl.Float64) / den).otherwise(None)


def stable_mean(expr: pl.Expr) -> pl.Expr:
    """Return the mean of `expr`, the same for the same values in any row order.

    A float sum depends on the order it adds in, and the store gives its rows in no fixed
    order: two stores built from the same records showed 0.9458433036982908 and
    0.945843303698291 as the mean confidence (tester T2), a change to any comparison of
    their summaries: polars adds a chunked column chunk by chunk, and the store's reader ends
    its chunks anywhere. The values are added one after the other in sorted order (a running
    sum: sequential whatever the chunks; a sort alone kept them).
    """
    values = expr.drop_nulls()
    return values.sort().cum_sum().last() / values.count()


# A txid is 64 lowercase hex characters and not all zeros (model.is_well_formed_txid, vectorised).
WELL_FORMED_TXID: Final = pl.col("bsv_txid").str.contains(TXID_PATTERN) & (
    pl.col("bsv_txid").str.contains("[1-9a-f]")
)
# Sources meaning "seen by polling" (a status answer counts as a poll).
POLL_SOURCES: Final = ("poll", "status")
# The per-channel "seen by" flags derived from `sources`.
SOURCE_FLAGS: Final = {
    "seen_by_poll": POLL_SOURCES,
    "seen_by_webhook": ("webhook",),
    "seen_by_file": ("file",),
}
# Options known (non-empty) and label known: whether "label in options" can be tested.
LABEL_TESTABLE: Final = (
    (pl.col("options").list.len().fill_null(0) > 0) & pl.col("consensus_label").is_not_null()
).fill_null(False)
# Options known (non-empty), label known and not among them (exact string compare).
LABEL_OUTSIDE_OPTIONS: Final = (
    LABEL_TESTABLE & ~pl.col("options").list.contains(pl.col("consensus_label"))
).fill_null(False)


def enrich_tasks(results: pl.LazyFrame, submissions: pl.LazyFrame | None = None) -> pl.LazyFrame:
    """Return the results with the submission's threshold and options and derived columns.

    Added columns: `consensus_threshold` (T, null when no submission), `options`, `majority`
    (floor(T/2)+1, or 2 under the fixed 2-of-3 rule: W = 3 < T), `is_settled`,
    `status_documented`, `latency_s` (settled_at - created_at),
    `counts_valid` (1 <= A <= W and A reaches the majority: the precondition of every derived
    check, see checks/README), `txid_well_formed`, `margin` (A - (W - A)),
    `label_testable` (options known and label known), `label_outside_options` (testable and
    the label not among the options), and
    `seen_by_poll` / `seen_by_webhook` / `seen_by_file` (from `sources`), `nearest_fit` and
    `nearest_fit_t` (the formula value nearest the confidence and the threshold it assumes,
    `with_nearest_fit`).
    `created_at` and `task_type` fall back to the submission's when the result lacks them.

    `results` may come already joined (it then carries `consensus_threshold`; `submissions` is
    not used) and may already carry derived columns, which are then kept as they are: `analyze`
    joins and derives the wide ones (options, sources, txid form) in DuckDB, where it is cheaper
    in time and memory, and reads only narrow columns.
    """
    names = results.collect_schema().names()
    if "consensus_threshold" in names:
        joined = results
    else:
        subs = submissions if submissions is not None else empty_frame(SUBMISSIONS_SCHEMA)
        subs = subs.select(
            "task_id",
            pl.col("consensus_threshold").cast(pl.Int32),
            pl.col("options"),
            pl.col("created_at").alias("_sub_created_at"),
            pl.col("task_type").alias("_sub_task_type"),
        ).filter(pl.col("task_id").is_last_distinct())  # far faster than unique(keep="last")
        joined = results.join(subs, on="task_id", how="left")
    names = joined.collect_schema().names()
    if "_sub_created_at" in names:
        joined = joined.with_columns(
            pl.coalesce("created_at", "_sub_created_at").alias("created_at"),
            pl.coalesce("task_type", "_sub_task_type").alias("task_type"),
        ).drop("_sub_created_at", "_sub_task_type")
    a = pl.col("agreement_count")
    w = pl.col("worker_count")
    t = pl.col("consensus_threshold")
    # The deployed engine may run a fixed 3-label 2-of-3 rule whatever T asked (spec section 5):
    # three workers on a task with T > 3 means that rule applied, so 2 agreeing is a majority.
    majority = pl.when((w == 3) & (t > 3)).then(pl.lit(2)).otherwise(t // 2 + 1).cast(pl.Int32)
    if "majority" not in names:
        joined = joined.with_columns(majority.alias("majority"))
    reaches_majority = pl.when(t.is_not_null()).then(a >= pl.col("majority")).otherwise(2 * a > w)
    derived = {
        "is_settled": (pl.col("status") == TaskStatus.SETTLED.value).fill_null(False),
        "status_documented": pl.col("status").is_in(list(DOCUMENTED_STATUSES)),
        "latency_s": latency_seconds("created_at", "settled_at"),
        "counts_valid": (
            a.is_not_null() & w.is_not_null() & (a >= 1) & (a <= w) & reaches_majority
        ).fill_null(False),
        "txid_well_formed": WELL_FORMED_TXID,
        "margin": 2 * a - w,
    }
    no = pl.lit(False)
    derived["label_testable"] = LABEL_TESTABLE if "options" in names else no
    derived["label_outside_options"] = LABEL_OUTSIDE_OPTIONS if "options" in names else no
    for name, wanted in SOURCE_FLAGS.items():
        derived[name] = _any_source(pl.col("sources"), wanted) if "sources" in names else no
    enriched = joined.with_columns(
        expr.alias(name) for name, expr in derived.items() if name not in names
    )
    # The nearest confidence formula, computed once: the consensus analyses and three checks
    # read it.
    return enriched if "nearest_fit" in names else with_nearest_fit(enriched)


def _any_source(sources: pl.Expr, wanted: tuple[str, ...]) -> pl.Expr:
    hit = [sources.list.contains(s) for s in wanted]
    return pl.any_horizontal(hit).fill_null(False)


def with_nearest_fit(tasks: pl.LazyFrame) -> pl.LazyFrame:
    """Return `tasks` with `nearest_fit` (the formula value nearest the confidence) and
    `nearest_fit_t` (the threshold it assumes, null for `A/W`).

    The candidates are `A/W` and `A/T`; when T is unknown (no submission tracked), `A/t` for
    every threshold the API accepts (`THRESHOLDS`, spec section 5), since any of them may have
    been asked for. `|confidence - nearest_fit|` below the tolerance means some formula fits; at
    or above it, none can, whatever T was.

    The nearest so far (distance, value, threshold) is replaced candidate by candidate, left to
    right, by a strictly nearer one: on a tie A/W stays, and for a known T all nine candidates
    are A/T. Polars orders NaN above every number; a comparison with a null distance (a null
    confidence, count or W) is no "nearer": the best so far stays. Each step is its own
    `with_columns` over the columns of the one before: one expression naming the nearest so far
    twice per step doubled with every threshold, and a fold through Python took seconds.
    """
    c = pl.col("confidence")
    a = pl.col("agreement_count").cast(pl.Float64)
    t = pl.col("consensus_threshold")
    a_over_w = a / pl.col("worker_count")
    d, v, at = pl.col("_nearest_d"), pl.col("nearest_fit"), pl.col("nearest_fit_t")
    tasks = tasks.with_columns(
        (c - a_over_w).abs().alias("_nearest_d"),
        a_over_w.alias("nearest_fit"),
        pl.lit(None, pl.Int32).alias("nearest_fit_t"),
    )
    for k in THRESHOLDS:
        cand_t = pl.when(t.is_not_null()).then(t.cast(pl.Int32)).otherwise(pl.lit(k, pl.Int32))
        cand = a / cand_t
        cand_d = (c - cand).abs()
        nearer = (cand_d < d).fill_null(False)
        tasks = tasks.with_columns(
            pl.when(nearer).then(cand_d).otherwise(d).alias("_nearest_d"),
            pl.when(nearer).then(cand).otherwise(v).alias("nearest_fit"),
            pl.when(nearer).then(cand_t).otherwise(at).alias("nearest_fit_t"),
        )
    return tasks.drop("_nearest_d")
