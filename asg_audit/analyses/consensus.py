"""Consensus: confidence, agreement rates with Wilson intervals, formula fit, invariants.

All functions take the enriched task frame (`enrich_tasks`). Agreement is `A/W` pooled over
tasks (sum of A over sum of W), with a Wilson score interval treating each counted label as a
trial. Formula fit is measured only on tasks whose counts are valid (`counts_valid`): a task
with broken counts says nothing about which confidence formula the service uses.
"""

from __future__ import annotations

from typing import Final

import polars as pl

__all__ = [
    "DEFAULT_CONFIDENCE_TOLERANCE",
    "DEFAULT_LOW_MARGIN",
    "Z_95",
    "agreement_rates",
    "confidence_distribution",
    "consensus_invariants",
    "fits_expr",
    "formula_fit",
    "margin_rates",
    "wilson_interval",
]

Z_95: Final = 1.959963984540054  # two-sided 95% normal quantile
DEFAULT_CONFIDENCE_TOLERANCE: Final = 1e-6
# A winning margin (A - (W - A)) at or below this is "low": one changed label flips or ties it.
DEFAULT_LOW_MARGIN: Final = 1


def wilson_interval(successes: pl.Expr, trials: pl.Expr, *, z: float = Z_95) -> list[pl.Expr]:
    """Return expressions for the Wilson score interval bounds `wilson_low`, `wilson_high`.

    p = s/n; centre = (p + z^2/2n) / (1 + z^2/n); half = z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n).
    The bounds are clamped so that `wilson_low <= p <= wilson_high` holds in floats too.
    """
    n = trials.cast(pl.Float64)
    p = successes.cast(pl.Float64) / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom
    # In exact arithmetic low <= p <= high and both lie in [0, 1]; in floats the bound at p = 1
    # rounds to 0.9999999999999999 for n = 27, 30, 42, ... (and at p = 0 just above 0), so a
    # reader (the agreement chart's error bars) would see a rate outside its own interval.
    low, high = centre - half, centre + half
    return [
        pl.when(low > p).then(p).otherwise(low).clip(0.0, 1.0).alias("wilson_low"),
        pl.when(high < p).then(p).otherwise(high).clip(0.0, 1.0).alias("wilson_high"),
    ]


def fits_expr(tolerance: float) -> tuple[pl.Expr, pl.Expr]:
    """Return (fits A/T, fits A/W) boolean expressions; null when the formula cannot be tested."""
    c = pl.col("confidence")
    a = pl.col("agreement_count").cast(pl.Float64)
    at = (c - a / pl.col("consensus_threshold")).abs() <= tolerance
    aw = (c - a / pl.col("worker_count")).abs() <= tolerance
    return at, aw


def confidence_distribution(tasks: pl.LazyFrame, *, bins: int = 20) -> pl.DataFrame:
    """Return counts of confidence values in `bins` equal bins over [0, 1] (out of range apart).

    Values outside [0, 1] are counted apart, in the `below` and `above` ranges.
    """
    c = pl.col("confidence")
    width = 1.0 / bins
    lower = pl.when(c < 0).then(None).otherwise((c / width).floor().clip(0, bins - 1) * width)
    return (
        tasks.filter(c.is_not_null() & c.is_not_nan())
        .group_by(
            pl.when(c < 0)
            .then(pl.lit("below"))
            .when(c > 1)
            .then(pl.lit("above"))
            .otherwise(pl.lit("in_range"))
            .alias("range"),
            lower.alias("lower"),
        )
        .agg(pl.len().alias("count"))
        .with_columns((pl.col("count") / pl.col("count").sum()).alias("share"))
        .sort("range", "lower", nulls_last=True)
        .collect()
    )


def agreement_rates(tasks: pl.LazyFrame, *, by: str | None = None) -> pl.DataFrame:
    """Return pooled agreement `A/W` with its Wilson 95% interval, overall or per group.

    `by` is None, `label` (consensus label) or `threshold`. Only tasks with both counts and
    `1 <= A <= W` are counted (a rate needs A out of W).
    """
    a, w = pl.col("agreement_count"), pl.col("worker_count")
    usable = tasks.filter(a.is_not_null() & w.is_not_null() & (a >= 1) & (a <= w))
    aggs = [
        pl.len().alias("tasks"),
        a.sum().cast(pl.Int64).alias("agreeing"),
        w.sum().cast(pl.Int64).alias("labels"),
    ]
    keys = {
        "label": pl.col("consensus_label").alias("label"),
        "threshold": pl.col("consensus_threshold").alias("threshold"),
    }
    if by is None:
        grouped = usable.select(aggs)
    elif by in keys:
        grouped = usable.group_by(keys[by]).agg(aggs).sort(by, nulls_last=True)
    else:
        raise ValueError(f"by: expected None, 'label' or 'threshold', got {by!r}")
    return grouped.with_columns(
        (pl.col("agreeing") / pl.col("labels")).alias("rate"),
        *wilson_interval(pl.col("agreeing"), pl.col("labels")),
    ).collect()


def formula_fit(
    tasks: pl.LazyFrame, *, tolerance: float = DEFAULT_CONFIDENCE_TOLERANCE
) -> pl.DataFrame:
    """Return how many tasks fit `A/T`, `A/W`, both, only one, or neither, with shares.

    Counted on tasks with valid counts and a confidence. `A/T` is testable only when the
    submission (and so T) is known: `t_known` says how many tasks could be tested for it.
    """
    at, aw = fits_expr(tolerance)
    base = tasks.filter(pl.col("counts_valid") & pl.col("confidence").is_not_null())
    at_f, aw_f = at.fill_null(False), aw.fill_null(False)
    n = pl.len()
    return (
        base.select(
            n.alias("tasks"),
            pl.col("consensus_threshold").is_not_null().sum().alias("t_known"),
            at_f.sum().alias("fit_a_over_t"),
            aw_f.sum().alias("fit_a_over_w"),
            (at_f & aw_f).sum().alias("fit_both"),
            (at_f & ~aw_f).sum().alias("fit_only_a_over_t"),
            (aw_f & ~at_f).sum().alias("fit_only_a_over_w"),
            (~at_f & ~aw_f).sum().alias("fit_neither"),
        )
        .with_columns(
            (pl.col(c) / pl.col("tasks")).alias(f"share_{c.removeprefix('fit_')}")
            for c in ("fit_a_over_t", "fit_a_over_w", "fit_neither")
        )
        .with_columns(
            pl.when(pl.col("fit_only_a_over_t") > pl.col("fit_only_a_over_w"))
            .then(pl.lit("A/T"))
            .when(pl.col("fit_only_a_over_w") > pl.col("fit_only_a_over_t"))
            .then(pl.lit("A/W"))
            .when(pl.col("fit_both") > 0)
            .then(pl.lit("A/T or A/W (indistinguishable)"))
            .otherwise(pl.lit("none"))
            .alias("follows")
        )
        .collect()
    )


def consensus_invariants(tasks: pl.LazyFrame) -> pl.DataFrame:
    """Return one row per invariant of spec section 5 with the number of tasks breaking it."""
    a, w, t = pl.col("agreement_count"), pl.col("worker_count"), pl.col("consensus_threshold")
    c = pl.col("confidence")
    rules = {
        "agreement_count >= 1": a < 1,
        "agreement_count <= worker_count": a > w,
        "agreement_count >= majority (floor(T/2)+1, 2 of 3, or > W/2 without T)": (
            (a >= 1)
            & (a <= w)
            & pl.when(t.is_not_null()).then(a < pl.col("majority")).otherwise(2 * a <= w)
        ),
        "worker_count >= T (or the fixed 3-label rule)": (w < t) & (w != 3),
        "0.5 < confidence <= 1": (c <= 0.5) | (c > 1) | c.is_nan(),
        "label in options": pl.col("label_outside_options"),
    }
    counts = tasks.select(
        pl.len().alias("_tasks"),
        *(expr.fill_null(False).sum().alias(name) for name, expr in rules.items()),
    ).collect()
    total = int(counts["_tasks"][0])
    return pl.DataFrame(
        {
            "invariant": list(rules),
            "violations": [int(counts[name][0]) for name in rules],
        },
        schema={"invariant": pl.String, "violations": pl.Int64},
    ).with_columns((pl.col("violations") / max(total, 1)).alias("share"))


def margin_rates(tasks: pl.LazyFrame, *, low_margin: int = DEFAULT_LOW_MARGIN) -> pl.DataFrame:
    """Return tie (A = W - A) and low-margin (0 < A - (W - A) <= low_margin) counts and rates."""
    a, w = pl.col("agreement_count"), pl.col("worker_count")
    m = pl.col("margin")
    usable = tasks.filter(a.is_not_null() & w.is_not_null() & (a >= 0) & (a <= w))
    return (
        usable.select(
            pl.len().alias("tasks"),
            (m == 0).sum().alias("ties"),
            ((m > 0) & (m <= low_margin)).sum().alias("low_margin"),
        )
        .with_columns(
            (pl.col("ties") / pl.col("tasks")).alias("tie_rate"),
            (pl.col("low_margin") / pl.col("tasks")).alias("low_margin_rate"),
        )
        .collect()
    )
