"""Means of floats do not depend on the order of the store's rows (tester T2: two stores built
from the same records showed 0.9458433036982908 and 0.945843303698291 as the mean confidence,
so a comparison of their summaries showed a change that was not one)."""

from __future__ import annotations

import random

import polars as pl

from asg_audit.analyses._tasks import stable_mean

VALUES = [random.Random(3).uniform(0.5, 1.0) for _ in range(3000)]


def _orders() -> list[list[float]]:
    orders = []
    for seed in range(8):
        shuffled = list(VALUES)
        random.Random(seed).shuffle(shuffled)
        orders.append(shuffled)
    return orders


def test_a_plain_float_mean_depends_on_the_chunks_and_stable_mean_does_not() -> None:
    # a frame read from the store comes in chunks, split where the reader's batches ended
    series = pl.Series(VALUES)
    chunked = [pl.concat([series[:cut], series[cut:]], rechunk=False) for cut in (700, 1500, 2900)]
    assert all(c.n_chunks() == 2 for c in chunked)
    plain = {s.mean() for s in [series, *chunked]}
    assert len(plain) > 1  # the premise: where the chunks end changes the last digit
    stable = {
        pl.DataFrame({"x": s}).select(stable_mean(pl.col("x"))).item()
        for s in [series, *chunked, *(pl.Series(o) for o in _orders())]
    }
    assert len(stable) == 1


def test_the_mean_confidence_of_the_summary_does_not_depend_on_the_chunks() -> None:
    from asg_audit.audit import _count_tasks

    n = len(VALUES)
    tasks = pl.DataFrame(
        {"is_settled": [True] * n, "status": ["settled"] * n, "confidence": VALUES}
    )
    means = set()
    for size in range(37, n, 37 * 4):  # the store's reader ends its batches anywhere
        chunks = [tasks[i : i + size] for i in range(0, n, size)]
        means.add(_count_tasks(pl.concat(chunks, rechunk=False).lazy())["confidence_mean"].item())
    assert len(means) == 1, means
