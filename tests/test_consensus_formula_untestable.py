"""Confidence formula without the submissions: A/T is untestable when T is unknown.

Spec section 5: the auditor "must test both" A/T and A/W; section 8, claim 1: "report the share
that fits each, and records that fit neither". A task whose T is unknown (not tracked) and whose
confidence misses A/W has not been shown to fit neither, and says nothing about which formula
the service follows; `follows` and the fail findings may only rest on tasks where both formulas
were tested (or where no threshold of 2 to 10 could give the confidence as A/T).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from _analyses_frames import T0, result, results_frame, submission, submissions_frame

from asg_audit.analyses import consensus, enrich_tasks
from asg_audit.audit import analyze
from asg_audit.checks import CheckContext, run_checks
from asg_audit.config import AuditConfig
from asg_audit.ingest_files import ingest_paths, track_file
from asg_audit.report.charts import draw_charts
from asg_audit.report.content import headline_values
from asg_audit.sim import WorldConfig, generate_world
from asg_audit.store import open_store

# A=3, W=5: A/W = 0.6; A/T = 1.0 for T=3; 0.8 is A/t for no threshold t of 2 to 10.
A_OVER_T = result("at", worker_count=5, agreement_count=3, confidence=1.0)
A_OVER_W = result("aw", worker_count=5, agreement_count=3, confidence=0.6)
NO_FORMULA = result("no", worker_count=5, agreement_count=3, confidence=0.8)


def _fit(rows, subs=()) -> dict:
    tasks = enrich_tasks(results_frame(rows).lazy(), submissions_frame(list(subs)).lazy())
    return consensus.formula_fit(tasks).row(0, named=True)


def _findings(rows, subs=(), *, check_id: str) -> pl.DataFrame:
    ctx = CheckContext(
        {"results": results_frame(rows), "submissions": submissions_frame(list(subs))},
        config=AuditConfig(),
        as_of=T0 + timedelta(hours=1),
    )
    return run_checks(ctx, only=[check_id])


def test_consensus_fit_without_t_is_undetermined_not_a_over_w() -> None:
    rows = [A_OVER_T, A_OVER_W, result("aw2", worker_count=4, agreement_count=3, confidence=0.75)]
    got = _fit(rows)
    assert got["follows"] is None
    assert (got["tasks"], got["t_known"], got["t_unknown"]) == (3, 0, 3)
    assert (got["fit_only_a_over_w"], got["fit_neither"], got["undetermined"]) == (0, 0, 1)
    # A/W is counted apart without T (fit_a_over_w measures the tasks A/T is measured on)
    assert (got["fit_a_over_w"], got["fit_a_over_w_t_unknown"]) == (0, 2)
    assert got["share_a_over_t"] is None  # nothing to measure it on
    assert got["share_a_over_w"] is None
    assert got["share_neither"] == 0.0


def test_consensus_fit_follows_only_tasks_with_t_known() -> None:
    # two tasks with T tell A/T; three without T fit A/W, which must not outvote them
    known = [result(f"k{i}", worker_count=5, agreement_count=3, confidence=1.0) for i in range(2)]
    unknown = [result(f"u{i}", worker_count=5, agreement_count=3, confidence=0.6) for i in range(3)]
    got = _fit(known + unknown, [submission(r["task_id"]) for r in known])
    assert got["follows"] == "A/T"
    assert (got["t_known"], got["fit_only_a_over_t"], got["fit_a_over_w_t_unknown"]) == (2, 2, 3)
    assert got["share_a_over_t"] == 1.0


def test_consensus_fit_without_t_still_finds_a_confidence_no_threshold_gives() -> None:
    got = _fit([NO_FORMULA])
    assert (got["fit_neither"], got["undetermined"], got["share_neither"]) == (1, 0, 1.0)
    assert got["follows"] == "neither"


def test_consensus_fit_of_no_tasks_is_null_not_none() -> None:
    got = _fit([])
    assert got["tasks"] == 0
    assert got["follows"] is None
    assert [got[k] for k in ("share_a_over_t", "share_a_over_w", "share_neither")] == [None] * 3


def test_consensus_neither_check_does_not_fail_an_untestable_task() -> None:
    fail = _findings([A_OVER_T, A_OVER_W], check_id="confidence.neither_formula")
    assert fail.height == 0
    info = _findings([A_OVER_T, A_OVER_W], check_id="confidence.formula_untestable")
    assert info.select("entity_id", "severity").rows() == [("at", "info")]
    assert "T=3" in info["message"][0] and "untestable" in info["message"][0]


def test_consensus_neither_check_fails_what_no_threshold_explains() -> None:
    fail = _findings([NO_FORMULA, A_OVER_T], check_id="confidence.neither_formula")
    assert fail.select("entity_id", "severity").rows() == [("no", "fail")]
    assert "T unknown" in fail["message"][0]
    assert fail["difference"][0] == pytest.approx(0.8 - 0.75)  # nearest: A/4
    assert _findings([NO_FORMULA], check_id="confidence.formula_untestable").height == 0


def test_consensus_checks_with_t_known_are_unchanged() -> None:
    subs = [submission(r["task_id"]) for r in (A_OVER_T, A_OVER_W, NO_FORMULA)]
    rows = [A_OVER_T, A_OVER_W, NO_FORMULA]
    assert _findings(rows, subs, check_id="confidence.neither_formula")["entity_id"].to_list() == [
        "no"
    ]
    assert _findings(rows, subs, check_id="confidence.formula_untestable").height == 0
    wrong_t = [submission(r["task_id"], consensus_threshold=5) for r in rows]
    # with T=5 known, confidence 1.0 is neither A/T = 3/5 nor A/W = 3/5: a real finding
    got = _findings(rows, wrong_t, check_id="confidence.neither_formula")
    assert sorted(got["entity_id"].to_list()) == ["at", "no"]


@pytest.fixture(scope="module")
def a_over_t_world(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("untestable")
    world = generate_world(
        WorldConfig(seed=3, tasks=300, anomalies="none", confidence_formula="A/T")
    )
    results = world.write_results_export(tmp / "results.ndjson")
    ingest_only = tmp / "ingest_only.duckdb"
    ingest_paths(ingest_only, [results])
    tracked = tmp / "tracked.duckdb"
    track_file(tracked, world.write_submissions(tmp / "subs.ndjson"))
    ingest_paths(tracked, [results])
    return world, ingest_only, tracked


def test_consensus_ingest_only_store_claims_no_formula_and_fails_nothing(a_over_t_world) -> None:
    _, ingest_only, _ = a_over_t_world
    audit = analyze(ingest_only)
    fit = audit["formula_fit"].row(0, named=True)
    assert fit["follows"] is None
    assert fit["t_known"] == 0 and fit["fit_neither"] == 0
    assert audit.summary()["confidence_follows"] is None
    assert headline_values(audit)["confidence_follows"] is None
    fails = audit.findings.filter(pl.col("severity") != "info")
    assert fails.height == 0, fails.select("check_id", "message").head(3).to_dicts()
    info = audit.findings.filter(pl.col("check_id") == "confidence.formula_untestable")
    # one info finding per task whose A/T and A/W differ: exactly the undetermined ones
    assert info.height == fit["undetermined"] > 0
    assert info.height + fit["fit_a_over_w_t_unknown"] == fit["tasks"]


def test_consensus_tracked_store_follows_the_world_formula(a_over_t_world) -> None:
    world, _, tracked = a_over_t_world
    audit = analyze(tracked)
    assert audit["formula_fit"]["follows"][0] == world.config.confidence_formula == "A/T"
    assert audit.findings.filter(pl.col("check_id").str.starts_with("confidence.")).height == 0


@pytest.mark.parametrize("content", ["empty", "only submissions"])
def test_consensus_store_without_results_has_null_confidence_follows(
    tmp_path: Path, content: str
) -> None:
    db = tmp_path / "s.duckdb"
    with open_store(db):
        pass
    if content == "only submissions":
        subs = tmp_path / "subs.ndjson"
        world = generate_world(WorldConfig(seed=5, tasks=20, anomalies="none"))
        track_file(db, world.write_submissions(subs))
    audit = analyze(db, as_of=datetime(2026, 12, 1, tzinfo=UTC))
    assert audit.summary()["confidence_follows"] is None
    assert headline_values(audit)["confidence_follows"] is None


def test_consensus_formula_chart_says_undetermined_and_counts_the_untestable(
    a_over_t_world,
) -> None:
    _, ingest_only, tracked = a_over_t_world
    audit = analyze(ingest_only)
    fit = audit["formula_fit"].row(0, named=True)
    chart = draw_charts(audit.frames, slo_seconds=60.0)["formula_fit"]
    assert "follows undetermined (no task with a known threshold)" in chart.alt
    assert "None" not in chart.alt
    assert f"undetermined (T unknown) {fit['undetermined']:,}" in chart.alt
    assert f"A/W, T unknown {fit['fit_a_over_w_t_unknown']:,}" in chart.alt
    tracked_chart = draw_charts(analyze(tracked).frames, slo_seconds=60.0)["formula_fit"]
    assert tracked_chart.alt.endswith("The data follows A/T.")
