"""Cost analyses: expected cost, fee rounding, model fit, shared txids, spend."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import polars as pl
from _analyses_frames import T0, result, results_frame, txid

from asg_audit.analyses import costs, enrich_tasks
from asg_audit.config import CostModel


def _tasks(rows) -> pl.LazyFrame:
    return enrich_tasks(results_frame(rows).lazy())


def test_costs_expected_cost_rounds_fee_half_up_in_integer_sats() -> None:
    model = CostModel(payout_per_worker_sats=325, fee_percent=Decimal("8.64"), fee_included=True)
    frame = pl.DataFrame({"agreement_count": [1, 2, 3]})
    got = frame.select(costs.expected_cost_expr(model))["agreement_count"].to_list()
    # 325 * 8.64% = 28.08 -> 28; 650 -> 56.16 -> 56; 975 -> 84.24 -> 84
    assert got == [353, 706, 1059]
    assert frame.select(costs.expected_cost_expr(model)).dtypes == [pl.Int64]


def test_costs_fixed_model_ignores_worker_count() -> None:
    frame = pl.DataFrame({"agreement_count": [2, 5]})
    got = frame.select(costs.expected_cost_expr(CostModel(kind="fixed", reward_sats=1000)))
    assert got.to_series().to_list() == [1000, 1000]


def test_costs_model_fit_ranks_the_explaining_model_first() -> None:
    rows = [
        result(f"t{i}", agreement_count=a, worker_count=3, cost_sats=1000)
        for i, a in enumerate([2, 3, 2, 3])
    ]
    tasks = _tasks(rows)
    models = costs.candidate_models(tasks, CostModel())
    got = costs.cost_model_fit(tasks, models, configured=CostModel())
    assert got.row(0, named=True)["model"] == "1000 sats per task"
    assert got.row(0, named=True)["share"] == 1.0


def test_costs_unknown_costs_are_counted_not_compared() -> None:
    rows = [result("a"), result("b", cost_sats=None, cost_unknown=True)]
    tasks = _tasks(rows)
    unknown = costs.unknown_costs(tasks).row(0, named=True)
    assert (unknown["settled"], unknown["unknown"], unknown["known_total_sats"]) == (2, 1, 650)
    assert costs.cost_comparison(tasks, CostModel())["tasks"].sum() == 1


def test_costs_shared_txids_report_spread_and_total() -> None:
    shared = txid("batch")
    rows = [
        result("a", bsv_txid=shared, settled_at=T0 + timedelta(seconds=40)),
        result("b", bsv_txid=shared, settled_at=T0 + timedelta(seconds=41)),
        result("c"),
    ]
    got = costs.shared_txids(_tasks(rows)).row(0, named=True)
    assert (got["tasks"], got["total_cost_sats"], got["spread_s"]) == (2, 1300, 1.0)
    assert got["task_ids"] == ["a", "b"]


def test_costs_txid_health_counts_missing_and_malformed() -> None:
    rows = [
        result("ok"),
        result("none", bsv_txid=None),
        result("bad", bsv_txid="abc123..."),
        result("zero", bsv_txid="0" * 64),
    ]
    got = costs.txid_health(_tasks(rows)).row(0, named=True)
    assert (got["well_formed"], got["malformed"], got["missing"]) == (1, 2, 1)


def test_costs_spend_by_month_sums_known_costs() -> None:
    rows = [
        result("a"),
        result("b", settled_at=T0 + timedelta(days=30)),
        result("c", cost_sats=None, cost_unknown=True),
    ]
    got = costs.spend_by_period(_tasks(rows), every="1mo")
    assert got.select("tasks", "cost_sats", "unknown_costs").rows() == [(2, 650, 1), (1, 650, 0)]
