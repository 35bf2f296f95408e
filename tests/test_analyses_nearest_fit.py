"""The nearest confidence formula (`with_nearest_fit`): the same answers, a small plan.

The nearest of A/W and A/t (t = T when known, else every threshold of 2 to 10) was chosen by
chained when/then that named the nearest so far twice per threshold: the expression doubled
with each of the nine thresholds (about 255,000 characters), and `confidence.neither_formula`
took 3.7 s of analyze's 8 s on 1M tasks. The answers are checked against a plain-Python
computation of the same rule, on every threshold, formula, tie and odd value.
"""

from __future__ import annotations

import math
from datetime import timedelta
from itertools import product
from typing import Any

import polars as pl
from _analyses_frames import T0, result, results_frame, submission, submissions_frame

from asg_audit.analyses import consensus, enrich_tasks
from asg_audit.audit import analyze_frames
from asg_audit.config import AuditConfig
from asg_audit.model import RESULTS_SCHEMA

NAN = math.nan
INF = math.inf
TOL = 1e-6  # confidence.neither_formula's default level


def _div(x: float, y: float) -> float:
    """IEEE division, as polars does it (Python raises on a zero divisor)."""
    if y == 0:
        return NAN if x == 0 or math.isnan(x) else math.copysign(INF, x) * math.copysign(1, y)
    return x / y


def _order(d: float) -> tuple[int, float]:
    return (1, 0.0) if math.isnan(d) else (0, d)  # polars orders NaN above every number


def reference(c: Any, a: Any, w: Any, t: Any) -> tuple[Any, Any]:
    """(nearest value, its threshold) by the documented rule, in plain Python.

    A/W first, then A/t for t = 2..10 (all A/T when T is known); a candidate replaces the
    nearest so far only when strictly nearer; without A/W's distance it is A/W.
    """
    a_over_w = None if a is None or w is None else _div(float(a), float(w))
    if c is None or a_over_w is None:
        return a_over_w, None
    best, best_t, best_d = a_over_w, None, abs(c - a_over_w)
    for k in consensus.THRESHOLDS:
        cand_t = t if t is not None else k
        cand = _div(float(a), float(cand_t))
        d = abs(c - cand)
        if _order(d) < _order(best_d):
            best, best_t, best_d = cand, cand_t, d
    return best, best_t


def _same(x: Any, y: Any) -> bool:
    if x is None or y is None:
        return x is None and y is None
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    # polars may divide by a constant divisor through its reciprocal: one ulp apart at most
    return x == y or math.isclose(x, y, rel_tol=4.5e-16, abs_tol=0.0)


def _grid() -> pl.DataFrame:
    rows = []
    counts = [None, 0, 1, 2, 3, 5, 7, 10, -1]
    for a, w, t in product(counts, [None, 0, 1, 3, 4, 5, 7, 10], [None, 0, 2, 3, 5, 7, 10, 12]):
        confidences = [None, NAN, INF, -INF, 0.0, 0.5, 0.8, 1.0, 1.5, -0.25]
        if a is not None:
            # exactly A/k for every threshold, and just inside and outside the tolerance
            for k in [*consensus.THRESHOLDS, w or 1, t or 1]:
                exact = a / k
                confidences += [exact, exact + TOL / 2, exact - 2 * TOL]
            # half way between two thresholds: a tie, the smaller t wins
            confidences += [(a / 4 + a / 5) / 2, (a / 2 + a / 3) / 2]
        rows += [(c, a, w, t) for c in confidences]
    schema = {
        "confidence": pl.Float64,
        "agreement_count": pl.Int32,
        "worker_count": pl.Int32,
        "consensus_threshold": pl.Int32,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def test_nearest_fit_is_the_plain_python_rule_on_every_threshold_and_odd_value() -> None:
    grid = _grid()
    got = (
        consensus.with_nearest_fit(grid.lazy())
        .select(pl.col("nearest_fit").alias("v"), pl.col("nearest_fit_t").alias("t"))
        .collect()
    )
    assert got.schema == pl.Schema({"v": pl.Float64, "t": pl.Int32})
    wrong = []
    for row, v, t in zip(grid.iter_rows(), got["v"], got["t"], strict=True):
        want_v, want_t = reference(*row)
        if t != want_t or not _same(v, want_v):
            wrong.append((row, (v, t), (want_v, want_t)))
    assert not wrong, (len(wrong), wrong[:10])
    # every threshold is chosen somewhere, and A/W too
    chosen = set(got["t"].to_list())
    assert set(consensus.THRESHOLDS) <= chosen and None in chosen


def test_nearest_fit_plan_stays_small() -> None:
    plan = consensus.with_nearest_fit(_grid().lazy()).explain(optimized=False)
    # grows with the number of thresholds; the nested form was about 255,000 characters
    assert len(plan) < 40_000, len(plan)
    assert ".fold(" not in plan  # no fold through Python (seconds at 10M tasks)
    fit = consensus.formula_class_expr(TOL)
    assert len(str(fit)) < 40_000, len(str(fit))


def _classes(
    rows: list[dict[str, Any]], thresholds: dict[str, int], valid: set[str]
) -> dict[str, str]:
    """Each valid task's formula class, from the plain-Python nearest (formula_fit's rule)."""
    out = {}
    for r in rows:
        a, w, c = r["agreement_count"], r["worker_count"], r["confidence"]
        t = thresholds.get(r["task_id"])
        if r["task_id"] not in valid or c is None:
            continue
        nearest, _ = reference(c, a, w, t)
        at = t is not None and abs(c - a / t) <= TOL
        aw = abs(c - a / w) <= TOL
        if not abs(c - nearest) <= TOL:
            out[r["task_id"]] = "neither"
        elif t is None:
            out[r["task_id"]] = "a_over_w_t_unknown" if aw else "undetermined"
        else:
            out[r["task_id"]] = "both" if at and aw else "a_over_t" if at else "a_over_w"
    return out


def test_findings_and_formula_fit_are_those_of_the_plain_python_rule() -> None:
    rows: list[dict[str, Any]] = []
    thresholds: dict[str, int] = {}
    n = 0
    for w in (3, 4, 5, 7, 10):
        for a in range(w // 2 + 1, w + 1):
            confidences = {a / w, 0.8, 0.55, 0.99, 1.0}
            for k in consensus.THRESHOLDS:
                confidences |= {a / k, a / k + TOL / 3, a / k + 3 * TOL}
            for c in sorted(confidences):
                for t in (None, 2, 3, 5, 7, 10):
                    n += 1
                    tid = f"t{n:05d}"
                    rows.append(result(tid, agreement_count=a, worker_count=w, confidence=c))
                    if t is not None:
                        thresholds[tid] = t
    subs = [submission(tid, consensus_threshold=t) for tid, t in thresholds.items()]
    audit = analyze_frames(
        results_frame(rows),
        submissions_frame(subs),
        config=AuditConfig(),
        as_of=T0 + timedelta(hours=1),
    )
    # counts_valid (1 <= A <= W, A a majority) is enrich_tasks' business, not this test's
    tasks = enrich_tasks(results_frame(rows).lazy(), submissions_frame(subs).lazy()).collect()
    valid = set(tasks.filter(pl.col("counts_valid"))["task_id"].to_list())
    assert 0 < len(valid) < len(rows)
    classes = _classes(rows, thresholds, valid)
    by_class: dict[str, set[str]] = {}
    for tid, cls in classes.items():
        by_class.setdefault(cls, set()).add(tid)
    assert set(by_class) == {
        "neither",
        "a_over_w_t_unknown",
        "undetermined",
        "both",
        "a_over_t",
        "a_over_w",
    }

    findings = audit.findings
    neither = findings.filter(pl.col("check_id") == "confidence.neither_formula")
    assert set(neither["entity_id"].to_list()) == by_class["neither"]
    untestable = findings.filter(pl.col("check_id") == "confidence.formula_untestable")
    assert set(untestable["entity_id"].to_list()) == by_class["undetermined"]
    by_id = {r["task_id"]: r for r in rows}
    for tid, message in untestable.select("entity_id", "message").iter_rows():
        r = by_id[tid]
        _, t = reference(r["confidence"], r["agreement_count"], r["worker_count"], None)
        assert message.endswith(f"it fits A/T if T={t}"), message

    fit = audit["formula_fit"].row(0, named=True)
    count = {cls: len(ids) for cls, ids in by_class.items()}
    assert fit["tasks"] == len(classes)
    assert fit["fit_neither"] == count["neither"]
    assert fit["undetermined"] == count["undetermined"]
    assert fit["fit_a_over_w_t_unknown"] == count["a_over_w_t_unknown"]
    assert fit["fit_both"] == count["both"]
    assert fit["fit_only_a_over_t"] == count["a_over_t"]
    assert fit["fit_only_a_over_w"] == count["a_over_w"]


def test_enrich_tasks_computes_the_nearest_fit_once_as_columns() -> None:
    """The per-task frame carries the nearest fit (the consensus analyses and three checks read
    the columns instead of evaluating the expression over every task each)."""
    grid = _grid()
    grid = grid.with_columns(  # a joined results frame: every result column, T carried
        pl.lit(None, dtype).alias(name)
        for name, dtype in RESULTS_SCHEMA.items()
        if name not in grid.columns
    ).with_columns(task_id=pl.format("t{}", pl.int_range(pl.len())))
    enriched = enrich_tasks(grid.lazy()).collect()
    assert enriched.schema["nearest_fit"] == pl.Float64
    assert enriched.schema["nearest_fit_t"] == pl.Int32
    for row, v, t in zip(
        grid.select(
            "confidence", "agreement_count", "worker_count", "consensus_threshold"
        ).iter_rows(),
        enriched["nearest_fit"],
        enriched["nearest_fit_t"],
        strict=True,
    ):
        want_v, want_t = reference(*row)
        assert t == want_t and _same(v, want_v), (row, (v, t), (want_v, want_t))
    # a frame that already carries them keeps them (as analyze's store read may)
    carried = enrich_tasks(enriched.lazy().with_columns(nearest_fit=pl.lit(0.25))).collect()
    assert carried["nearest_fit"].unique().to_list() == [0.25]
