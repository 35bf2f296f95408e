"""Costs and txids: expected vs reported cost, unknown costs, txid health, spend, model fit.

Money stays integer sats throughout. The expected cost of a task under a `CostModel`:
`per_worker`: payout x agreement_count; `fixed`: reward. When `fee_included`, the platform fee
(fee_percent of that base, rounded half up to a whole sat) is added. A reported cost of 0 is
unknown (`cost_sats` null, `cost_unknown` true): counted, never compared. Comparisons are made
only on tasks with valid counts (`counts_valid`), since the expected cost depends on them.

Every sum of sats is exact: a per-record cost is at most 21 million BSV (2.1e15 sats), and
4,393 of those already pass int64, where a sum would wrap around to a negative figure. Sums are
computed as Int128 (`sum_sats`); the frames a user gets (`unknown_costs`, `shared_txids`,
`spend_by_period`) hold them as Decimal(38, 0) (`SATS_SUM`, `exposed_sats`): as exact (any
sum of up to 10^19 int64 figures), and, unlike polars' Int128, Arrow's decimal128(38, 0), so
`to_arrow()`, `to_pandas()` (Python Decimals) and DuckDB (DECIMAL(38,0)) take them.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Final

import polars as pl

from asg_audit.analyses._tasks import ratio
from asg_audit.config import CostModel

# A settled task whose answer reported cost 0: unknown, not free (spec 8.5).
COST_REPORTED_ZERO = pl.col("cost_unknown").fill_null(False) & pl.col("cost_sats").is_null()
# A settled task no answer stated a cost for (a webhook has none; a result without the field).
NO_COST_REPORTED = pl.col("cost_sats").is_null() & ~pl.col("cost_unknown").fill_null(False)

__all__ = [
    "COST_REPORTED_ZERO",
    "NO_COST_REPORTED",
    "SATS_SUM",
    "candidate_models",
    "cost_comparison",
    "cost_model_fit",
    "describe_model",
    "expected_cost_expr",
    "exposed_sats",
    "fee_expr",
    "shared_txids",
    "spend_by_period",
    "sum_sats",
    "txid_health",
    "unknown_costs",
]


# The dtype of a sum of sats in a frame a user gets: exact, and Arrow's decimal128(38, 0).
SATS_SUM: Final = pl.Decimal(38, 0)


def sum_sats(expr: pl.Expr) -> pl.Expr:
    """Return the sum of `expr` (integer sats) as an Int128, exactly: never wrapped around int64.

    Nulls are skipped, as `sum` does (no value: 0). For computing; a frame given to users
    holds the sum as `SATS_SUM` (`exposed_sats`).
    """
    return expr.cast(pl.Int128).sum()


def exposed_sats(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """Return `frame` with its sums of sats `columns` as `SATS_SUM` (Decimal(38, 0)).

    Polars cannot hand an Int128 to Arrow (`to_arrow()`, `to_pandas()`, DuckDB fail with
    `'_pli128'`); a decimal of scale 0 holds the same integers. A sum past 10^38 - 1 (10^19
    int64 figures) raises rather than wraps.
    """
    return frame.with_columns(pl.col(c).cast(SATS_SUM, strict=True) for c in columns)


def expected_cost_expr(model: CostModel) -> pl.Expr:
    """Return the expected cost in sats (Int64) of each task under `model`."""
    if model.kind == "per_worker":
        base = pl.col("agreement_count").cast(pl.Int64) * model.payout_per_worker_sats
    else:
        # Shaped like the column (not a scalar literal), so it is one value per task anywhere.
        base = pl.col("agreement_count").fill_null(0).cast(pl.Int64) * 0 + model.reward_sats
    if not model.fee_included or model.fee_percent == 0:
        return base
    return base + fee_expr(base, model.fee_percent)


def fee_expr(base: pl.Expr, fee_percent: Decimal) -> pl.Expr:
    """Return `fee_percent` of `base` (integer sats) in whole sats, rounded half up, exactly.

    In integers: whole units of the base, then the remainder (< unit), so that no product
    leaves int64 whatever the base (`CostModel` allows at most 6 decimal places).
    """
    num, den = fee_percent.as_integer_ratio()
    unit = 100 * den  # fee = base * num / unit
    whole = (base // unit) * num
    part = ((base % unit) * (2 * num) + unit) // (2 * unit)
    return whole + part


def describe_model(model: CostModel) -> str:
    """Return a short human description of a cost model."""
    if model.kind == "per_worker":
        text = f"{model.payout_per_worker_sats} sats per agreeing worker"
    else:
        text = f"{model.reward_sats} sats per task"
    if model.fee_included and model.fee_percent:
        text += f" + {model.fee_percent}% fee"
    return text


def _known_cost(tasks: pl.LazyFrame) -> pl.LazyFrame:
    return tasks.filter(pl.col("is_settled") & pl.col("cost_sats").is_not_null())


def cost_comparison(tasks: pl.LazyFrame, model: CostModel) -> pl.DataFrame:
    """Return expected vs reported cost, as task counts per (A, expected, reported) pair.

    Only settled tasks with a known cost and valid counts; grouped so the frame stays small
    (the per-task differences are the `cost.mismatch` findings).
    """
    return (
        _known_cost(tasks)
        .filter(pl.col("counts_valid"))
        .group_by(
            "agreement_count",
            expected_cost_expr(model).alias("expected_sats"),
            pl.col("cost_sats").alias("reported_sats"),
        )
        .agg(pl.len().alias("tasks"))
        .with_columns((pl.col("reported_sats") - pl.col("expected_sats")).alias("difference_sats"))
        .sort("tasks", "agreement_count", "reported_sats", descending=[True, False, False])
        .collect()
    )


def unknown_costs(tasks: pl.LazyFrame) -> pl.DataFrame:
    """Return settled tasks, those with a known cost, those that reported cost 0 (`unknown`,
    spec 8.5) and those no answer stated a cost for (`no_cost_reported`: webhook only, no cost
    field); `unknown_share` is `unknown` over `settled` (null when none is settled);
    `known_total_sats` is a `SATS_SUM`."""
    counts = (
        tasks.filter(pl.col("is_settled"))
        .select(
            pl.len().alias("settled"),
            pl.col("cost_sats").is_not_null().sum().alias("known"),
            COST_REPORTED_ZERO.sum().alias("unknown"),
            NO_COST_REPORTED.sum().alias("no_cost_reported"),
            sum_sats(pl.col("cost_sats")).alias("known_total_sats"),
        )
        .with_columns(ratio("unknown", "settled").alias("unknown_share"))
        .collect()
    )
    return exposed_sats(counts, "known_total_sats")


def txid_health(tasks: pl.LazyFrame) -> pl.DataFrame:
    """Return settled tasks by txid state: well-formed, malformed, missing."""
    settled = tasks.filter(pl.col("is_settled"))
    txid = pl.col("bsv_txid")
    missing = txid.is_null() | (txid == "")
    return settled.select(
        pl.len().alias("settled"),
        pl.col("txid_well_formed").fill_null(False).sum().alias("well_formed"),
        (~missing & ~pl.col("txid_well_formed").fill_null(False)).sum().alias("malformed"),
        missing.sum().alias("missing"),
    ).collect()


def shared_txids(tasks: pl.LazyFrame) -> pl.DataFrame:
    """Return every well-formed txid used by more than one task, with aggregate figures.

    `spread_s` is the time between the first and the last `settled_at` of its tasks: a batch
    payment covers tasks settled together, a re-used txid spans unrelated settlements.
    `total_cost_sats` is a `SATS_SUM`.
    """
    well = tasks.filter(pl.col("txid_well_formed").fill_null(False))
    # Most txids pay for one task. Find the hashes that occur more than once (sorting integers
    # is cheap where grouping millions of 64-character strings is not), keep only the tasks
    # with such a hash, then group those by the txid itself: a hash collision only adds a
    # candidate, which the exact grouping drops again (tasks == 1).
    h = pl.col("bsv_txid").hash().alias("h")
    repeated = (
        well.select(h.sort())
        .filter(pl.col("h") == pl.col("h").shift(1))
        .unique()
        .collect()
        .to_series()
    )
    candidates = (
        well.filter(h.is_in(repeated.implode()))
        .select("bsv_txid", "task_id", "cost_sats", "settled_at")
        # sorted here, so each txid's list of task ids comes out sorted (group order is kept)
        .sort("task_id")
    )
    shared = (
        candidates.group_by("bsv_txid")
        .agg(
            pl.len().alias("tasks"),
            sum_sats(pl.col("cost_sats")).alias("total_cost_sats"),
            pl.col("cost_sats").null_count().alias("unknown_costs"),
            pl.col("settled_at").min().alias("first_settled_at"),
            pl.col("settled_at").max().alias("last_settled_at"),
            pl.col("task_id").alias("task_ids"),
        )
        .filter(pl.col("tasks") > 1)
        .with_columns(
            (pl.col("last_settled_at") - pl.col("first_settled_at"))
            .dt.total_seconds(fractional=True)
            .alias("spread_s")
        )
        .collect()
    )
    return exposed_sats(_sort_by_tasks_and_txid(shared), "total_cost_sats")


def _sort_by_tasks_and_txid(shared: pl.DataFrame) -> pl.DataFrame:
    """Return the shared txids ordered by (tasks desc, txid).

    By the leading 60 bits of the (hex) txid first: sorting a million 64-character strings
    read from the store is several times slower, their bytes being scattered over the whole
    column. Only when two txids share those bits is the full txid compared.
    """
    prefix = pl.col("bsv_txid").str.slice(0, 15).str.to_integer(base=16, strict=False)
    ordered = shared.sort(pl.col("tasks"), prefix, descending=[True, False])
    key = ordered.select(pl.col("tasks"), prefix.alias("p"))
    tied = key.select(
        ((pl.col("p") == pl.col("p").shift(1)) & (pl.col("tasks") == pl.col("tasks").shift(1)))
        .fill_null(False)
        .any()
    ).item()
    if tied:
        return shared.sort("tasks", "bsv_txid", descending=[True, False])
    return ordered


def spend_by_period(tasks: pl.LazyFrame, *, every: str = "1d") -> pl.DataFrame:
    """Return settled tasks and known spend per period of `settled_at` (`1d`, `1mo`, ...),
    with the tasks left out of the spend: `unknown_costs` (reported 0) and `no_cost_reported`;
    `cost_sats` (the known spend) is a `SATS_SUM`."""
    spend = (
        tasks.filter(pl.col("is_settled") & pl.col("settled_at").is_not_null())
        .group_by(pl.col("settled_at").dt.truncate(every).alias("period_start"))
        .agg(
            pl.len().alias("tasks"),
            sum_sats(pl.col("cost_sats")).alias("cost_sats"),
            COST_REPORTED_ZERO.sum().alias("unknown_costs"),
            NO_COST_REPORTED.sum().alias("no_cost_reported"),
        )
        .sort("period_start")
        .collect()
    )
    return exposed_sats(spend, "cost_sats")


def candidate_models(tasks: pl.LazyFrame, configured: CostModel) -> list[CostModel]:
    """Return the cost models worth testing: configured, documented, and inferred from the data.

    Documented: 325 sats per agreeing worker; 1,000 sats per task (the usage example);
    325 per worker with a 25% fee on top. Inferred: the most common per-agreeing-worker cost
    and the most common cost per task among known costs.
    """
    models = [
        configured,
        CostModel(kind="per_worker", payout_per_worker_sats=325),
        CostModel(kind="fixed", reward_sats=1000),
        CostModel(
            kind="per_worker",
            payout_per_worker_sats=325,
            fee_percent=Decimal(25),
            fee_included=True,
        ),
    ]
    known = _known_cost(tasks).filter(pl.col("counts_valid"))
    per_worker = pl.col("cost_sats") // pl.col("agreement_count")
    modes = known.select(
        per_worker.filter(pl.col("cost_sats") % pl.col("agreement_count") == 0)
        .mode()
        .min()
        .alias("per_worker"),
        pl.col("cost_sats").mode().min().alias("fixed"),
    ).collect()
    if modes.height:
        pw, fixed = modes["per_worker"][0], modes["fixed"][0]
        if pw is not None and pw >= 0:
            models.append(CostModel(kind="per_worker", payout_per_worker_sats=int(pw)))
        if fixed is not None and fixed >= 0:
            models.append(CostModel(kind="fixed", reward_sats=int(fixed)))
    # one row per distinct expectation: a fee not included (or of 0%) charges nothing, the
    # reward of a per-worker model (the payout of a fixed one) is not used
    unique: dict[tuple[str, int, Decimal], CostModel] = {}
    for m in models:
        unique.setdefault(_charges(m), m)
    return list(unique.values())


def _charges(model: CostModel) -> tuple[str, int, Decimal]:
    """Return what a model charges: (kind, sats per worker or per task, fee percent charged)."""
    sats = model.payout_per_worker_sats if model.kind == "per_worker" else model.reward_sats
    return model.kind, sats, model.fee_percent if model.fee_included else Decimal(0)


def cost_model_fit(
    tasks: pl.LazyFrame,
    models: Sequence[CostModel],
    *,
    tolerance_sats: int = 0,
    configured: CostModel | None = None,
) -> pl.DataFrame:
    """Return, per candidate model, the share of known-cost tasks it explains (best first)."""
    known = _known_cost(tasks).filter(pl.col("counts_valid"))
    exprs = [
        ((pl.col("cost_sats") - expected_cost_expr(m)).abs() <= tolerance_sats).sum().alias(f"m{i}")
        for i, m in enumerate(models)
    ]
    counts = known.select(pl.len().alias("tasks"), *exprs).collect()
    total = int(counts["tasks"][0]) if counts.height else 0
    rows = [
        {
            "model": describe_model(m),
            "kind": m.kind,
            "configured": m == configured,
            "explained": int(counts[f"m{i}"][0]) if total else 0,
            "tasks": total,
        }
        for i, m in enumerate(models)
    ]
    return (
        pl.DataFrame(
            rows,
            schema={
                "model": pl.String,
                "kind": pl.String,
                "configured": pl.Boolean,
                "explained": pl.Int64,
                "tasks": pl.Int64,
            },
        )
        .with_columns(ratio("explained", "tasks").alias("share"))
        .sort("explained", descending=True, maintain_order=True)
    )
