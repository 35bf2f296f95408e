"""Settlement latency: `settled_at - created_at` per settled task, summarised and as a curve.

Percentiles use linear interpolation between the two nearest ranks (polars
`quantile(q, interpolation="linear")`), which is numpy's default `np.percentile` method.
Tasks whose settlement comes before their creation (an anomaly of its own) are left out of the
latency figures. Still-unsettled tasks are not dropped: `survival_curve` counts them as censored
at `as_of` and `ageing_buckets` shows how old they are.

`as_of` is the moment tasks are aged and censored at, so a task created after it (its clock, or
an explicit `as_of`, is behind the data) did not exist yet then: it has no age, and the
survival curve and the ageing buckets leave it out (an age or a censoring time cannot be
negative); `created_after_as_of` counts those tasks. A settlement after `as_of` of a task
created before it still counts as an event at its latency, as in the latency figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import pairwise
from typing import Final

import polars as pl

from asg_audit.analyses._tasks import ratio, stable_mean

__all__ = [
    "DEFAULT_AGEING_EDGES",
    "DEFAULT_QUANTILES",
    "ageing_buckets",
    "created_after_as_of",
    "latency_ecdf",
    "latency_histogram",
    "summarize_latency",
    "survival_curve",
]

DEFAULT_QUANTILES: Final = (0.5, 0.9, 0.95, 0.99)
# Upper edges (seconds) of the ageing buckets of unsettled tasks; the last bucket is open.
DEFAULT_AGEING_EDGES: Final = (60, 300, 900, 3600, 6 * 3600, 24 * 3600)
_GROUPINGS: Final = {
    "day": pl.col("created_at").dt.date().alias("day"),
    "hour": pl.col("created_at").dt.hour().alias("hour"),
    "threshold": pl.col("consensus_threshold").alias("threshold"),
    "worker_count": pl.col("worker_count"),
    "task_type": pl.col("task_type"),
}


def _created_by(as_of: datetime) -> pl.Expr:
    """Tasks that existed at `as_of`: a known creation time no later than it."""
    return pl.col("created_at").is_not_null() & (pl.col("created_at") <= pl.lit(as_of))


def _settled_latencies(tasks: pl.LazyFrame) -> pl.LazyFrame:
    return tasks.filter(pl.col("is_settled") & (pl.col("latency_s") >= 0))


def _stats(slo_seconds: float, quantiles: Sequence[float]) -> list[pl.Expr]:
    lat = pl.col("latency_s")
    return [
        pl.len().alias("n"),
        stable_mean(lat).alias("mean_s"),
        *(
            lat.quantile(q, interpolation="linear").alias(f"p{round(q * 100):d}_s")
            for q in quantiles
        ),
        lat.max().alias("max_s"),
        (lat > slo_seconds).mean().alias("share_over_slo"),
    ]


def summarize_latency(
    tasks: pl.LazyFrame,
    *,
    slo_seconds: float,
    by: str | None = None,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
) -> pl.DataFrame:
    """Return n, mean, percentiles, max and share over the SLO, overall or per group.

    `by` is None (one row), `day` or `hour` (of creation), `threshold`, `worker_count` or
    `task_type`. `tasks` is the enriched task frame (`enrich_tasks`).
    """
    settled = _settled_latencies(tasks)
    stats = _stats(slo_seconds, quantiles)
    if by is None:
        return settled.select(stats).collect()
    if by not in _GROUPINGS:
        raise ValueError(f"by: expected one of {sorted(_GROUPINGS)}, got {by!r}")
    key = _GROUPINGS[by]
    return settled.group_by(key).agg(stats).sort(by, nulls_last=True).collect()


def latency_histogram(tasks: pl.LazyFrame, *, bin_seconds: float = 5.0) -> pl.DataFrame:
    """Return latency counts per bin `[lower_s, lower_s + bin_seconds)` with its ECDF value.

    Computed from aggregates (one row per occupied bin), so it stays small whatever the number
    of tasks; `cum_share` at a bin is the share of tasks settled before its upper edge.
    """
    lower = (pl.col("latency_s") / bin_seconds).floor() * bin_seconds
    return (
        _settled_latencies(tasks)
        .group_by(lower.alias("lower_s"))
        .agg(pl.len().alias("count"))
        .sort("lower_s")
        .with_columns(
            (pl.col("lower_s") + bin_seconds).alias("upper_s"),
            ratio(pl.col("count").cum_sum(), pl.col("count").sum()).alias("cum_share"),
        )
        .select("lower_s", "upper_s", "count", "cum_share")
        .collect()
    )


def latency_ecdf(tasks: pl.LazyFrame, *, resolution_seconds: float = 1.0) -> pl.DataFrame:
    """Return the ECDF as (latency_s, cum_share) steps at a resolution (1 s by default).

    `cum_share` is the share of settled tasks whose latency is at most `latency_s` (latencies
    rounded up to the resolution).
    """
    step = (pl.col("latency_s") / resolution_seconds).ceil() * resolution_seconds
    return (
        _settled_latencies(tasks)
        .group_by(step.alias("latency_s"))
        .agg(pl.len().alias("count"))
        .sort("latency_s")
        .with_columns(ratio(pl.col("count").cum_sum(), pl.col("count").sum()).alias("cum_share"))
        .collect()
    )


def survival_curve(
    tasks: pl.LazyFrame, *, as_of: datetime, resolution_seconds: float = 1.0
) -> pl.DataFrame:
    """Return the Kaplan-Meier curve of "still not settled" against task age.

    Settled tasks are events at their latency; tasks not settled yet (any other status, with a
    creation time) are censored at `as_of - created_at`, so a backlog lowers nothing and is
    never hidden. Durations are rounded up to `resolution_seconds`. At each time `t`:
    `at_risk` = tasks with duration >= t, `survival` = prod(1 - events / at_risk) up to t.
    Censored tasks at `t` count as at risk at `t` (the usual convention). Tasks created after
    `as_of` are left out (they did not exist at `as_of`; see `created_after_as_of`).
    """
    age_at_as_of = (pl.lit(as_of) - pl.col("created_at")).dt.total_seconds(fractional=True)
    duration = pl.when(pl.col("is_settled")).then(pl.col("latency_s")).otherwise(age_at_as_of)
    step = (duration / resolution_seconds).ceil() * resolution_seconds
    durations = tasks.filter(
        _created_by(as_of)
        & pl.when(pl.col("is_settled"))
        .then(pl.col("latency_s") >= 0)
        .otherwise(pl.col("status").is_not_null())
    ).select(step.alias("t"), pl.col("is_settled").alias("event"))
    per_time = (
        durations.group_by("t")
        .agg(
            pl.col("event").sum().cast(pl.Int64).alias("events"),
            (~pl.col("event")).sum().cast(pl.Int64).alias("censored"),
        )
        .sort("t")
    )
    total = pl.col("events").sum() + pl.col("censored").sum()
    leaving = pl.col("events") + pl.col("censored")
    return (
        per_time.with_columns(
            (total - leaving.cum_sum() + leaving).alias("at_risk"),
        )
        .with_columns(
            (1.0 - pl.col("events") / pl.col("at_risk")).cum_prod().alias("survival"),
        )
        .select("t", "at_risk", "events", "censored", "survival")
        .collect()
    )


def ageing_buckets(
    tasks: pl.LazyFrame,
    *,
    as_of: datetime,
    edges: Sequence[float] = DEFAULT_AGEING_EDGES,
) -> pl.DataFrame:
    """Return how many unsettled tasks fall in each age bucket at `as_of`, per status.

    Unsettled means a status other than `settled` (pending, in_progress, verified, and any
    undocumented one) with a known creation time no later than `as_of` (a task created after
    it has no age yet; see `created_after_as_of`).
    """
    age = (pl.lit(as_of) - pl.col("created_at")).dt.total_seconds(fractional=True)
    labels = [_edge_label(None, edges[0])]
    labels += [_edge_label(lo, hi) for lo, hi in pairwise(edges)]
    labels.append(_edge_label(edges[-1], None))
    index = pl.sum_horizontal(*((age >= e).cast(pl.Int32) for e in edges))
    bucket = index.replace_strict(list(range(len(labels))), labels, return_dtype=pl.String)
    return (
        tasks.filter(
            pl.col("is_settled").not_() & pl.col("status").is_not_null() & _created_by(as_of)
        )
        .group_by(bucket.alias("age"), pl.col("status"))
        .agg(pl.len().alias("tasks"), age.max().alias("oldest_s"))
        .sort("status", "oldest_s")
        .collect()
    )


def created_after_as_of(tasks: pl.LazyFrame, *, as_of: datetime) -> pl.DataFrame:
    """Return one row about the tasks created after `as_of`, which are not aged.

    Columns: `tasks` (with a status, created after `as_of`), `unsettled` (of them, not
    settled), `first_created_at` and `last_created_at` (null when there are none). These tasks
    are left out of `survival_curve` and `ageing_buckets`.
    """
    after = pl.col("created_at").is_not_null() & (pl.col("created_at") > pl.lit(as_of))
    return (
        tasks.filter(after & pl.col("status").is_not_null())
        .select(
            pl.len().cast(pl.Int64).alias("tasks"),
            (~pl.col("is_settled")).sum().cast(pl.Int64).alias("unsettled"),
            pl.col("created_at").min().alias("first_created_at"),
            pl.col("created_at").max().alias("last_created_at"),
        )
        .collect()
    )


def _fmt(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g}h"
    if seconds >= 60:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def _edge_label(lo: float | None, hi: float | None) -> str:
    if lo is None:
        return f"<{_fmt(hi or 0)}"
    if hi is None:
        return f">={_fmt(lo)}"
    return f"{_fmt(lo)}-{_fmt(hi)}"
