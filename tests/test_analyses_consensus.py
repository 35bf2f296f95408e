"""Consensus analyses: Wilson intervals, formula fit, invariants, margins."""

from __future__ import annotations

import math

import polars as pl
import pytest
from _analyses_frames import result, results_frame, submission, submissions_frame

from asg_audit.analyses import consensus, enrich_tasks


def _textbook_wilson(s: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = s / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize(("s", "n"), [(2, 3), (22, 33), (1, 1), (0, 5), (950, 1000)])
def test_consensus_wilson_equals_textbook_formula(s: int, n: int) -> None:
    got = pl.select(consensus.wilson_interval(pl.lit(s), pl.lit(n))).row(0)
    assert got == pytest.approx(_textbook_wilson(s, n), abs=1e-12)


def test_consensus_wilson_bounds_contain_the_rate_and_stay_in_0_1() -> None:
    # Every s of n up to 600 (180,000 intervals): at s = n the upper bound rounded to
    # 0.9999999999999999 for n = 27, 30, 42, 48... while the rate is exactly 1.0.
    pairs = [(s, n) for n in range(1, 601) for s in range(n + 1)]
    grid = pl.DataFrame(pairs, schema={"s": pl.Int64, "n": pl.Int64}, orient="row")
    got = grid.with_columns(
        (pl.col("s") / pl.col("n")).alias("rate"),
        *consensus.wilson_interval(pl.col("s"), pl.col("n")),
    )
    outside = got.filter(
        (pl.col("wilson_low") > pl.col("rate"))
        | (pl.col("wilson_high") < pl.col("rate"))
        | (pl.col("wilson_low") < 0)
        | (pl.col("wilson_high") > 1)
    )
    assert got.height == sum(k + 1 for k in range(1, 601))
    assert outside.height == 0, outside.head(5)


def test_consensus_agreement_rates_pool_counts_per_label() -> None:
    rows = [
        result("a", consensus_label="cat", agreement_count=2, worker_count=3),
        result("b", consensus_label="cat", agreement_count=3, worker_count=3),
        result("c", consensus_label="dog", agreement_count=2, worker_count=4),
    ]
    got = consensus.agreement_rates(enrich_tasks(results_frame(rows).lazy()), by="label")
    assert got.select("label", "agreeing", "labels").rows() == [("cat", 5, 6), ("dog", 2, 4)]
    low, high = _textbook_wilson(5, 6)
    assert got["wilson_low"][0] == pytest.approx(low)
    assert got["wilson_high"][0] == pytest.approx(high)


def test_consensus_formula_fit_tells_a_over_t_from_a_over_w() -> None:
    # T=3, W=4, A=3: A/T = 1.0, A/W = 0.75
    rows = [
        result("t1", worker_count=4, agreement_count=3, confidence=1.0),
        result("t2", worker_count=4, agreement_count=3, confidence=1.0),
        result("w1", worker_count=4, agreement_count=3, confidence=0.75),
        result("n1", worker_count=4, agreement_count=3, confidence=0.8),
    ]
    subs = [submission(r["task_id"]) for r in rows]
    tasks = enrich_tasks(results_frame(rows).lazy(), submissions_frame(subs).lazy())
    got = consensus.formula_fit(tasks).row(0, named=True)
    assert (got["fit_a_over_t"], got["fit_a_over_w"], got["fit_neither"]) == (2, 1, 1)
    assert got["share_neither"] == pytest.approx(0.25)
    assert got["follows"] == "A/T"


def test_consensus_invariants_count_each_violation() -> None:
    rows = [
        result("ok"),
        result("above", agreement_count=4),
        result("below", agreement_count=1, confidence=1 / 3),
        result("label", consensus_label="Cat"),
    ]
    subs = [submission(r["task_id"]) for r in rows]
    tasks = enrich_tasks(results_frame(rows).lazy(), submissions_frame(subs).lazy())
    got = dict(consensus.consensus_invariants(tasks).select("invariant", "violations").rows())
    assert got["agreement_count <= worker_count"] == 1
    assert got["agreement_count >= majority (floor(T/2)+1, 2 of 3, or > W/2 without T)"] == 1
    assert got["label in options"] == 1
    assert got["0.5 < confidence <= 1"] == 1


def test_consensus_fixed_two_of_three_rule_counts_as_majority() -> None:
    rows = [result("fixed", worker_count=3, agreement_count=2)]
    subs = [submission("fixed", consensus_threshold=7)]
    tasks = enrich_tasks(results_frame(rows).lazy(), submissions_frame(subs).lazy()).collect()
    assert tasks["majority"][0] == 2
    assert tasks["counts_valid"][0]


def test_consensus_margin_rates_count_ties_and_low_margins() -> None:
    rows = [
        result("tie", worker_count=4, agreement_count=2),
        result("low", worker_count=3, agreement_count=2),
        result("clear", worker_count=5, agreement_count=5),
    ]
    got = consensus.margin_rates(enrich_tasks(results_frame(rows).lazy())).row(0, named=True)
    assert (got["ties"], got["low_margin"], got["tasks"]) == (1, 1, 3)
