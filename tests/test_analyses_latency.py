"""Latency analyses: percentiles against numpy, survival against a hand computation."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest
from _analyses_frames import T0, result, results_frame, submission, submissions_frame
from polars.testing import assert_frame_equal

from asg_audit.analyses import enrich_tasks, latency


def _tasks(latencies: list[float], **extra) -> pl.LazyFrame:
    rows = [
        result(f"t{i}", settled_at=T0 + timedelta(seconds=s), **extra)
        for i, s in enumerate(latencies)
    ]
    return enrich_tasks(results_frame(rows).lazy())


def test_latency_percentiles_equal_numpy_linear() -> None:
    rng = np.random.default_rng(3)
    values = np.round(rng.lognormal(np.log(42), 0.5, 997), 3).tolist()
    got = latency.summarize_latency(_tasks(values), slo_seconds=60).row(0, named=True)
    arr = np.array(values)
    for q in (50, 90, 95, 99):
        assert got[f"p{q}_s"] == pytest.approx(np.percentile(arr, q), abs=1e-6)
    assert got["n"] == 997
    assert got["mean_s"] == pytest.approx(arr.mean())
    assert got["max_s"] == pytest.approx(arr.max())
    assert got["share_over_slo"] == pytest.approx((arr > 60).mean())


def test_latency_by_threshold_groups_by_submission_threshold() -> None:
    rows = [
        result("a", settled_at=T0 + timedelta(seconds=10)),
        result("b", settled_at=T0 + timedelta(seconds=30)),
    ]
    subs = [submission("a", consensus_threshold=3), submission("b", consensus_threshold=5)]
    tasks = enrich_tasks(results_frame(rows).lazy(), submissions_frame(subs).lazy())
    got = latency.summarize_latency(tasks, slo_seconds=60, by="threshold")
    assert got.select("threshold", "n", "max_s").rows() == [(3, 1, 10.0), (5, 1, 30.0)]


def test_latency_excludes_settlements_before_creation() -> None:
    got = latency.summarize_latency(_tasks([-5.0, 10.0]), slo_seconds=60)
    assert got["n"][0] == 1


def test_latency_histogram_counts_and_ecdf_end_at_one() -> None:
    tasks = _tasks([1, 2, 6, 12, 12.5])
    hist = latency.latency_histogram(tasks, bin_seconds=5)
    assert hist.select("lower_s", "count").rows() == [(0.0, 2), (5.0, 1), (10.0, 2)]
    assert hist["cum_share"][-1] == pytest.approx(1.0)
    ecdf = latency.latency_ecdf(tasks)
    assert ecdf.select("latency_s", "count").rows() == [
        (1.0, 1),
        (2.0, 1),
        (6.0, 1),
        (12.0, 1),
        (13.0, 1),
    ]


def test_latency_survival_equals_hand_computed_kaplan_meier() -> None:
    # events at 10, 20, 20, 40; censored (still in progress at as_of) at 20 and 30
    as_of = T0 + timedelta(seconds=100)
    rows = [
        result(f"e{i}", settled_at=T0 + timedelta(seconds=s))
        for i, s in enumerate([10, 20, 20, 40])
    ]
    rows += [
        result(
            "c20", status="in_progress", settled_at=None, created_at=as_of - timedelta(seconds=20)
        ),
        result("c30", status="pending", settled_at=None, created_at=as_of - timedelta(seconds=30)),
    ]
    got = latency.survival_curve(enrich_tasks(results_frame(rows).lazy()), as_of=as_of)
    # n=6; t=10: 1 event of 6 -> 5/6; t=20: 2 events of 5 (1 censored) -> 5/6*3/5 = 1/2;
    # t=30: 0 events of 2 -> 1/2; t=40: 1 event of 1 -> 0
    expected = pl.DataFrame(
        {
            "t": [10.0, 20.0, 30.0, 40.0],
            "at_risk": [6, 5, 2, 1],
            "events": [1, 2, 0, 1],
            "censored": [0, 1, 1, 0],
            "survival": [5 / 6, 0.5, 0.5, 0.0],
        },
        schema_overrides={"at_risk": pl.Int64, "events": pl.Int64, "censored": pl.Int64},
    )
    assert_frame_equal(got, expected)


def test_latency_ageing_buckets_count_unsettled_tasks_by_age() -> None:
    as_of = T0 + timedelta(hours=3)
    rows = [
        result(
            "young", status="pending", settled_at=None, created_at=as_of - timedelta(seconds=30)
        ),
        result("old", status="in_progress", settled_at=None, created_at=as_of - timedelta(hours=2)),
        result(
            "older", status="in_progress", settled_at=None, created_at=as_of - timedelta(hours=3)
        ),
        result("done"),
    ]
    got = latency.ageing_buckets(enrich_tasks(results_frame(rows).lazy()), as_of=as_of)
    assert got.select("status", "age", "tasks").rows() == [
        ("in_progress", "1h-6h", 2),
        ("pending", "<1m", 1),
    ]


def test_latency_empty_input_gives_zero_count() -> None:
    got = latency.summarize_latency(enrich_tasks(results_frame([]).lazy()), slo_seconds=60)
    assert got["n"][0] == 0
    assert got["p50_s"][0] is None


def test_latency_frames_grow_with_tasks_not_with_the_longest_latency() -> None:
    # A settlement ten years late is one more row, not 63 million empty 5-second bins.
    ten_years = 10 * 365 * 86400.0
    tasks = _tasks([3, 7, 12, ten_years])
    hist = latency.latency_histogram(tasks, bin_seconds=5)
    assert hist.select("lower_s", "count").rows() == [
        (0.0, 1),
        (5.0, 1),
        (10.0, 1),
        (ten_years, 1),
    ]
    assert latency.latency_ecdf(tasks).height == 4
    survival = latency.survival_curve(tasks, as_of=T0 + timedelta(seconds=ten_years + 1))
    assert survival.height == 4 and survival["survival"][-1] == 0.0
