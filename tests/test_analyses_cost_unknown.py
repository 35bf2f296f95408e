"""`cost.unknown` counts costs reported as 0, apart from results that stated no cost (tester M).

A small simulator world: its results export for most settled tasks (some reporting cost 0),
and its webhook log for all of them (a `task.settled` payload has no cost, spec section 7).
Also `billing_window`'s reason for a month the window does not touch.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from asg_audit import analyze
from asg_audit.audit import billing_window
from asg_audit.ingest_files import ingest_paths, track_file
from asg_audit.report.content import headline_values
from asg_audit.sim import WorldConfig, generate_world

WEBHOOK_ONLY = 4  # settled tasks left out of the results export: known by webhook only


def _cost(body: dict[str, object]) -> object:
    settlement = body.get("settlement")
    nested = settlement.get("total_cost_sats") if isinstance(settlement, dict) else None
    for value in (body.get("cost_sats"), body.get("total_cost_sats"), nested):
        if value is not None:
            return value
    return None


def test_cost_unknown_counts_zero_costs_apart_from_no_cost_reported(tmp_path: Path) -> None:
    world = generate_world(WorldConfig(seed=5, tasks=60, anomalies="none", unknown_cost_rate=0.2))
    export = [json.loads(line) for line in world.write_results_export(tmp_path / "r.ndjson").open()]
    settled = sorted({b["task_id"] for b in export if b.get("status") == "settled"})
    dropped = set(settled[:WEBHOOK_ONLY])
    kept = [b for b in export if b["task_id"] not in dropped]
    zero = {b["task_id"] for b in kept if b.get("status") == "settled" and _cost(b) == 0}
    assert zero, "the world should report some costs as 0"
    results = tmp_path / "results.ndjson"
    results.write_text("".join(json.dumps(b) + "\n" for b in kept))
    db = tmp_path / "audit.duckdb"
    track_file(db, world.write_submissions(tmp_path / "s.ndjson"))
    ingest_paths(db, [results, world.write_webhook_log(tmp_path / "webhooks.ndjson")])

    audit = analyze(db, as_of=datetime.fromtimestamp(world.now_at, UTC))
    summary = audit.summary()
    assert summary["unknown_costs"] == len(zero)  # was len(zero) + WEBHOOK_ONLY
    assert summary["no_cost_reported"] == WEBHOOK_ONLY
    headline = headline_values(audit)
    assert (headline["unknown_costs"], headline["no_cost_reported"]) == (len(zero), WEBHOOK_ONLY)
    frame = audit["unknown_costs"].row(0, named=True)
    assert frame["settled"] == frame["known"] + frame["unknown"] + frame["no_cost_reported"]
    assert frame["unknown_share"] == len(zero) / frame["settled"]

    # the spend tables count the tasks left out of their sums the same way
    for table in ("spend_by_day", "spend_by_month"):
        spend = audit[table]
        assert spend["unknown_costs"].sum() == len(zero), table
        assert spend["no_cost_reported"].sum() == WEBHOOK_ONLY, table
    # ... and so does the report's spend table
    from asg_audit import render

    report = render(audit, tmp_path / "reports", formats="md")
    section = (
        report.paths["md"]
        .read_text()
        .split("**Spend per month \\(UTC months of settlement\\)**", 1)[1]
        .strip()
        .split("\n\n")[0]
    )
    header, _, *rows = section.splitlines()
    assert "cost 0 \\(unknown\\)" in header and "no cost reported" in header
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert len(cells) == audit["spend_by_month"].height
    assert sum(int(c[-2]) for c in cells) == len(zero)
    assert sum(int(c[-1]) for c in cells) == WEBHOOK_ONLY

    (row,) = audit.findings.filter(pl.col("check_id") == "cost.unknown").iter_rows(named=True)
    assert row["difference"] == len(zero)
    assert row["actual"] == (
        f"{len(zero)} of {frame['settled']} report 0, {WEBHOOK_ONLY} report no cost"
    )
    assert row["message"] == (
        f"{len(zero)} settled task(s) report cost 0 (unknown) and {WEBHOOK_ONLY} settled"
        " task(s) report no cost at all: left out of cost checks"
    )


def test_cost_unknown_for_webhook_only_tasks_does_not_say_they_reported_0(tmp_path: Path) -> None:
    world = generate_world(WorldConfig(seed=6, tasks=20, anomalies="none", unknown_cost_rate=0.2))
    db = tmp_path / "audit.duckdb"
    track_file(db, world.write_submissions(tmp_path / "s.ndjson"))
    ingest_paths(db, [world.write_webhook_log(tmp_path / "webhooks.ndjson")])
    audit = analyze(db, as_of=datetime.fromtimestamp(world.now_at, UTC))
    n = len(world.webhook_log())
    assert (audit.summary()["unknown_costs"], audit.summary()["no_cost_reported"]) == (0, n)
    (row,) = audit.findings.filter(pl.col("check_id") == "cost.unknown").iter_rows(named=True)
    assert row["difference"] == 0
    assert row["message"] == f"{n} settled task(s) report no cost at all: left out of cost checks"
    assert "cost 0" not in row["message"]


def test_billing_window_names_a_month_the_window_does_not_touch() -> None:
    world = generate_world(WorldConfig(seed=5, tasks=10, anomalies="none"))
    months = sorted({*world.months, "2026-09", "2026-10", "2026-11"})
    since, until = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 31, tzinfo=UTC)
    reasons = dict(billing_window(months, since, until).select("month", "reason").iter_rows())
    assert reasons["2026-09"] == "skipped: the window does not cover this month"
    assert reasons["2026-11"] == "skipped: the window does not cover this month"
    assert reasons["2026-10"] == "skipped: the window covers only part of this month"
    whole = billing_window(["2026-10"], since, datetime(2026, 11, 1, tzinfo=UTC))
    assert whole["compared"].to_list() == [True]


def test_the_unknown_costs_analysis_called_directly_counts_the_same() -> None:
    from asg_audit.analyses.costs import spend_by_period, unknown_costs

    tasks = pl.LazyFrame(
        {
            "is_settled": [True, True, True, True, False],
            "cost_sats": [650, None, None, None, None],
            "cost_unknown": [False, True, False, None, True],  # 0 / no cost / no cost
            "settled_at": [datetime(2026, 10, 1, tzinfo=UTC)] * 5,
        }
    )
    row = unknown_costs(tasks).row(0, named=True)
    assert (row["settled"], row["known"], row["unknown"], row["no_cost_reported"]) == (4, 1, 1, 2)
    assert row["known_total_sats"] == 650 and row["unknown_share"] == 0.25
    month = spend_by_period(tasks, every="1mo").row(0, named=True)
    assert (month["tasks"], month["unknown_costs"], month["no_cost_reported"]) == (4, 1, 2)
