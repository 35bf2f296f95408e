"""Each consensus invariant's share is over the tasks it can be tested on.

`consensus_invariants` divided every invariant's violations by all tasks, pending and failed
ones included, which have no counts, confidence or label: 3 bad confidences among 6 settled
tasks read 6.5% next to 40 pending tasks. Now each row also says how many tasks it was tested
on (`tested`, a new column; `share` keeps its name). A real store, ingested from files.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from _analyses_frames import result, results_frame, submission, submissions_frame
from _records import settled_record

from asg_audit.analyses import consensus
from asg_audit.analyses._tasks import enrich_tasks
from asg_audit.audit import analyze
from asg_audit.ingest_files import ingest_paths

CONFIDENCE = "0.5 < confidence <= 1"
MAJORITY = "agreement_count >= majority (floor(T/2)+1, 2 of 3, or > W/2 without T)"


@pytest.fixture(scope="module")
def invariants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    tmp = tmp_path_factory.mktemp("fix_g_invariants")
    statuses = ("pending", "in_progress", "verified", "failed")
    pending = [
        {"task_id": f"tsk_p{i}", "status": statuses[i % 4], "created_at": "2026-10-01T00:00:00Z"}
        for i in range(40)
    ]
    bad = {0: 4 / 3, 1: 1.5, 2: -0.2}  # 3 of 6 settled tasks break 0.5 < confidence <= 1
    settled = [
        settled_record(f"tsk_s{i}", bsv_txid=f"{i + 1:064x}", confidence=bad.get(i, 1.0))
        for i in range(6)
    ]
    export = tmp / "r.ndjson"
    export.write_text("".join(json.dumps(r) + "\n" for r in pending + settled), encoding="utf-8")
    db = tmp / "s.duckdb"
    ingest_paths(db, [export], progress=False)
    frame = analyze(db).frames["invariants"]
    assert frame.columns == ["invariant", "violations", "tested", "share"]
    return {row["invariant"]: row for row in frame.iter_rows(named=True)}


def test_invariant_share_is_over_the_tasks_with_a_confidence(invariants) -> None:
    row = invariants[CONFIDENCE]
    assert (row["violations"], row["tested"]) == (3, 6)
    assert row["share"] == pytest.approx(0.5)


def test_invariant_counts_are_tested_on_settled_tasks_only(invariants) -> None:
    for name in ("agreement_count >= 1", "agreement_count <= worker_count", MAJORITY):
        assert (invariants[name]["violations"], invariants[name]["tested"]) == (0, 6), name
        assert invariants[name]["share"] == 0


def test_invariant_without_its_figures_has_no_share(invariants) -> None:
    # no submissions tracked: no threshold T and no options, so nothing to test these on
    for name in ("worker_count >= T (or the fixed 3-label rule)", "label in options"):
        assert (invariants[name]["tested"], invariants[name]["share"]) == (0, None), name


def test_invariant_majority_is_tested_where_one_to_w_agree() -> None:
    rows = [
        result("ok"),  # 2 of 3 with T = 3
        result("above", agreement_count=4),  # A > W: broken elsewhere, not testable here
        result("zero", agreement_count=0, confidence=0.0),  # A < 1: likewise
        result("below", agreement_count=1, confidence=1 / 3),  # 1 of 3 below the majority
        result("label", consensus_label="Cat"),  # not among the options
    ]
    subs = [submission(r["task_id"]) for r in rows]
    tasks = enrich_tasks(results_frame(rows).lazy(), submissions_frame(subs).lazy())
    got = consensus.consensus_invariants(tasks)
    by_name = {r["invariant"]: r for r in got.iter_rows(named=True)}
    assert (by_name[MAJORITY]["violations"], by_name[MAJORITY]["tested"]) == (1, 3)
    assert by_name[MAJORITY]["share"] == pytest.approx(1 / 3)
    assert by_name["label in options"]["tested"] == 5
    assert got.schema["tested"] == pl.Int64


def test_invariants_of_no_tasks_have_no_share() -> None:
    tasks = enrich_tasks(results_frame([]).lazy())
    got = consensus.consensus_invariants(tasks)
    assert got["tested"].to_list() == [0] * got.height
    assert got["share"].null_count() == got.height


def test_invariant_report_shows_the_share_over_tested_tasks(tmp_path: Path) -> None:
    from asg_audit.report import render

    records = [settled_record(f"tsk_s{i}", bsv_txid=f"{i + 1:064x}") for i in range(2)]
    records[0]["confidence"] = 1.5
    records += [{"task_id": f"tsk_p{i}", "status": "pending"} for i in range(18)]
    export = tmp_path / "r.ndjson"
    export.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    db = tmp_path / "s.duckdb"
    ingest_paths(db, [export], progress=False)
    out = render(analyze(db), tmp_path / "reports", formats=("md",))
    md = (out.folder / "report.md").read_text(encoding="utf-8")
    assert "| 0.5 &lt; confidence &lt;= 1 | 1 | 2 | 50.0% |" in md  # 1 of 2, not 1 of 20
