"""Consensus: confidence, agreement rates with Wilson intervals, formula fit, invariants.

All functions take the enriched task frame (`enrich_tasks`). Agreement is `A/W` pooled over
tasks (sum of A over sum of W), with a Wilson score interval treating each counted label as a
trial. Formula fit is measured only on tasks whose counts are valid (`counts_valid`): a task
with broken counts says nothing about which confidence formula the service uses. `A/T` needs
the submission's threshold T: on a task without it, only `A/W` is tested, and a confidence
missing `A/W` is "neither" only if no threshold the API accepts could give it as `A/T`.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from asg_audit.analyses._tasks import LABEL_TESTABLE, THRESHOLDS, ratio, with_nearest_fit

__all__ = [
    "DEFAULT_CONFIDENCE_TOLERANCE",
    "DEFAULT_LOW_MARGIN",
    "THRESHOLDS",
    "Z_95",
    "agreement_rates",
    "confidence_distribution",
    "consensus_invariants",
    "fits_expr",
    "formula_class_expr",
    "formula_fit",
    "margin_rates",
    "wilson_interval",
    "with_nearest_fit",
]

Z_95: Final = 1.959963984540054  # two-sided 95% normal quantile
DEFAULT_CONFIDENCE_TOLERANCE: Final = 1e-6
# A winning margin (A - (W - A)) at or below this is "low": one changed label flips or ties it.
DEFAULT_LOW_MARGIN: Final = 1


def wilson_interval(successes: pl.Expr, trials: pl.Expr, *, z: float = Z_95) -> list[pl.Expr]:
    """Return expressions for the Wilson score interval bounds `wilson_low`, `wilson_high`.

    p = s/n; centre = (p + z^2/2n) / (1 + z^2/n); half = z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n).
    The bounds are clamped so that `wilson_low <= p <= wilson_high` holds in floats too; both
    are null when there are no trials (0/0 has no interval).
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
    some = n > 0
    return [
        pl.when(some)
        .then(pl.when(low > p).then(p).otherwise(low).clip(0.0, 1.0))
        .alias("wilson_low"),
        pl.when(some)
        .then(pl.when(high < p).then(p).otherwise(high).clip(0.0, 1.0))
        .alias("wilson_high"),
    ]


def fits_expr(tolerance: float) -> tuple[pl.Expr, pl.Expr]:
    """Return (fits A/T, fits A/W) boolean expressions; null when the formula cannot be tested."""
    c = pl.col("confidence")
    a = pl.col("agreement_count").cast(pl.Float64)
    at = (c - a / pl.col("consensus_threshold")).abs() <= tolerance
    aw = (c - a / pl.col("worker_count")).abs() <= tolerance
    return at, aw


def formula_class_expr(tolerance: float) -> pl.Expr:
    """Return each task's confidence-formula class (null for tasks not counted).

    `a_over_t`, `a_over_w`, `both`: which formulas fit, T known (both testable). `neither`: no
    formula fits, T known, or T unknown and no threshold of 2 to 10 gives `A/T` either.
    `a_over_w_t_unknown`: fits `A/W`; `A/T` untestable. `undetermined`: misses `A/W` but fits
    `A/t` for some threshold t, so without T it is not known whether it follows `A/T`.
    Only tasks with valid counts and a confidence are classed.
    """
    at, aw = fits_expr(tolerance)
    nearest = pl.col("nearest_fit")  # enrich_tasks: computed once per task
    c = pl.col("confidence")
    some_fit = ((c - nearest).abs() <= tolerance).fill_null(False)
    aw = aw.fill_null(False)
    t_known = pl.col("consensus_threshold").is_not_null()
    at = at.fill_null(False)
    return (
        pl.when(~(pl.col("counts_valid") & c.is_not_null()))
        .then(None)
        .when(~some_fit)
        .then(pl.lit("neither"))
        .when(~t_known)
        .then(pl.when(aw).then(pl.lit("a_over_w_t_unknown")).otherwise(pl.lit("undetermined")))
        .when(at & aw)
        .then(pl.lit("both"))
        .when(at)
        .then(pl.lit("a_over_t"))
        .otherwise(pl.lit("a_over_w"))
    )


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
        .with_columns(ratio("count", pl.col("count").sum()).alias("share"))
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
        ratio("agreeing", "labels").alias("rate"),
        *wilson_interval(pl.col("agreeing"), pl.col("labels")),
    ).collect()


def formula_fit(
    tasks: pl.LazyFrame, *, tolerance: float = DEFAULT_CONFIDENCE_TOLERANCE
) -> pl.DataFrame:
    """Return how many tasks fit `A/T`, `A/W`, both, only one, or neither, with shares.

    Counted on tasks with valid counts and a confidence (`tasks`). `A/T` is testable only when
    the submission (and so T) is known: `t_known` tasks, `t_unknown` the others. The `fit_*`
    counts by formula are over the `t_known` tasks, where both formulas were tested
    (`fit_a_over_t` = `fit_both` + `fit_only_a_over_t`, `fit_a_over_w` = `fit_both` +
    `fit_only_a_over_w`: the two side by side measure the same tasks), except `fit_neither`,
    which also counts a task without T whose confidence fits no `A/t` for any threshold of 2 to
    10 (spec section 5). A task without T fitting `A/W` is `fit_a_over_w_t_unknown`; one
    missing `A/W` but fitting some `A/t` is `undetermined`: it is not known to fit neither.

    Shares: `share_a_over_t` and `share_a_over_w` of `t_known`, `share_neither` of the tasks
    not undetermined; null when their base is 0. `follows` is decided on the
    tasks with T known only: `A/T` or `A/W` (the one more tasks fit alone), `A/T or A/W
    (indistinguishable)` (only tasks fitting both), `A/T or A/W (as many tasks fit each)`,
    `neither` (every task fits neither, none undetermined), or null when nothing could be
    decided: no tasks, or T unknown for every task fitting a formula.
    """
    cls = pl.col("_class")
    n = pl.len()
    counted = (
        tasks.select(
            formula_class_expr(tolerance).alias("_class"),
            pl.col("consensus_threshold").is_not_null().alias("_t_known"),
        )
        .filter(cls.is_not_null())
        .select(
            n.alias("tasks"),
            pl.col("_t_known").sum().alias("t_known"),
            (~pl.col("_t_known")).sum().alias("t_unknown"),
            cls.is_in(["a_over_t", "both"]).sum().alias("fit_a_over_t"),
            cls.is_in(["a_over_w", "both"]).sum().alias("fit_a_over_w"),
            (cls == "both").sum().alias("fit_both"),
            (cls == "a_over_t").sum().alias("fit_only_a_over_t"),
            (cls == "a_over_w").sum().alias("fit_only_a_over_w"),
            (cls == "neither").sum().alias("fit_neither"),
            (cls == "a_over_w_t_unknown").sum().alias("fit_a_over_w_t_unknown"),
            (cls == "undetermined").sum().alias("undetermined"),
        )
    )
    only_t, only_w = pl.col("fit_only_a_over_t"), pl.col("fit_only_a_over_w")

    return counted.with_columns(
        ratio("fit_a_over_t", "t_known").alias("share_a_over_t"),
        ratio("fit_a_over_w", "t_known").alias("share_a_over_w"),
        ratio("fit_neither", pl.col("tasks") - pl.col("undetermined")).alias("share_neither"),
        pl.when(only_t > only_w)
        .then(pl.lit("A/T"))
        .when(only_w > only_t)
        .then(pl.lit("A/W"))
        .when(only_t > 0)
        .then(pl.lit("A/T or A/W (as many tasks fit each)"))
        .when(pl.col("fit_both") > 0)
        .then(pl.lit("A/T or A/W (indistinguishable)"))
        .when((pl.col("fit_neither") > 0) & (pl.col("fit_neither") == pl.col("tasks")))
        .then(pl.lit("neither"))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias("follows"),
    ).collect()


def consensus_invariants(tasks: pl.LazyFrame) -> pl.DataFrame:
    """Return one row per invariant of spec section 5 with the number of tasks breaking it.

    Columns: `invariant`, `violations`, `tested` (the tasks it can be tested on: those holding
    the figures it needs) and `share` (violations / tested; null when no task can be tested).
    A pending or failed task has no counts, confidence or label, so it is in no invariant's
    `tested`; the majority rule is tested only where 1 <= A <= W (the two rules before it).
    """
    a, w, t = pl.col("agreement_count"), pl.col("worker_count"), pl.col("consensus_threshold")
    c = pl.col("confidence")
    counts_known = a.is_not_null() & w.is_not_null()
    # `analyze` keeps `options` only where the label is outside them: whether the label could
    # be tested comes as its own flag (enrich_tasks derives it where `options` is whole).
    names = tasks.collect_schema().names()
    if "label_testable" in names:
        label_testable = pl.col("label_testable")
    elif "options" in names:
        label_testable = LABEL_TESTABLE
    else:
        label_testable = pl.lit(False)
    # name: (violated, testable)
    rules = {
        "agreement_count >= 1": (a < 1, a.is_not_null()),
        "agreement_count <= worker_count": (a > w, counts_known),
        "agreement_count >= majority (floor(T/2)+1, 2 of 3, or > W/2 without T)": (
            pl.when(t.is_not_null()).then(a < pl.col("majority")).otherwise(2 * a <= w),
            counts_known & (a >= 1) & (a <= w),
        ),
        "worker_count >= T (or the fixed 3-label rule)": (
            (w < t) & (w != 3),
            w.is_not_null() & t.is_not_null(),
        ),
        "0.5 < confidence <= 1": ((c <= 0.5) | (c > 1) | c.is_nan(), c.is_not_null()),
        "label in options": (pl.col("label_outside_options"), label_testable),
    }
    counts = tasks.select(
        *(
            expr
            for i, (violated, testable) in enumerate(rules.values())
            for expr in (
                (testable.fill_null(False) & violated.fill_null(False)).sum().alias(f"v{i}"),
                testable.fill_null(False).sum().alias(f"t{i}"),
            )
        )
    ).collect()
    return pl.DataFrame(
        {
            "invariant": list(rules),
            "violations": [int(counts[f"v{i}"][0]) for i in range(len(rules))],
            "tested": [int(counts[f"t{i}"][0]) for i in range(len(rules))],
        },
        schema={"invariant": pl.String, "violations": pl.Int64, "tested": pl.Int64},
    ).with_columns(ratio("violations", "tested").alias("share"))


def margin_rates(tasks: pl.LazyFrame, *, low_margin: int = DEFAULT_LOW_MARGIN) -> pl.DataFrame:
    """Return tie (A = W - A) and low-margin (0 < A - (W - A) <= low_margin) counts and rates
    (null when no task has counts)."""
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
            ratio("ties", "tasks").alias("tie_rate"),
            ratio("low_margin", "tasks").alias("low_margin_rate"),
        )
        .collect()
    )
