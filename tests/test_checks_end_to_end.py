"""End to end: a simulated world with every anomaly kind, ingested, analysed, checked.

The simulator's ground truth is the expected answer: the checks must report exactly the
planted (kind, entity) pairs of the kinds they cover, with no misses and no false alarms.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from asg_audit.audit import analyze
from asg_audit.checks import findings_with_kinds, registered_checks
from asg_audit.collector import collect_sync
from asg_audit.config import load_config
from asg_audit.ingest_files import ingest_paths, track_file
from asg_audit.sim import WorldConfig, generate_world, run_simulator
from asg_audit.store import open_store


def _collect_missing(world, db: Path, task_ids: list[str]) -> None:
    """Poll the simulated Gateway for these tracked tasks with the real collector.

    Its `poll_state` tells a task the Gateway does not know (404 past the grace window:
    `not_found`) from one stuck in progress (a status), which is what `task.unknown` needs.
    """
    with run_simulator(world, time_scale=0.005) as sim:
        config = load_config(
            None,
            env={"ASG_API_KEY": sim.api_key, "ASG_BASE_URL": sim.gateway_url},
            overrides={"db_path": str(db)},
        )
        summary = collect_sync(config, task_ids=task_ids, clock=sim.clock, max_rps=200)
    assert summary.status == "completed"


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("e2e")
    world = generate_world(WorldConfig(seed=11, tasks=1500, anomalies="all"))
    db = tmp / "audit.duckdb"
    track_file(db, world.write_submissions(tmp / "submissions.ndjson"))
    ingest_paths(db, [world.write_results_export(tmp / "results.ndjson")])
    # Tracked tasks missing from the export: poll the Gateway for them, as the audit job does,
    # so that a task stuck in progress is told apart from one the API never knew.
    with open_store(db, read_only=True) as store:
        missing = (
            store.con.sql(
                "SELECT task_id FROM submissions ANTI JOIN results USING (task_id) ORDER BY 1"
            )
            .pl()["task_id"]
            .to_list()
        )
    _collect_missing(world, db, missing)
    as_of = datetime.fromtimestamp(world.now_at, UTC)
    return world, analyze(db, as_of=as_of)


def test_checks_end_to_end_find_exactly_the_planted_anomalies(audited) -> None:
    world, audit = audited
    # the kinds of the built-in checks; chain and billing checks have their own tests
    kinds = {
        c.kind
        for c in registered_checks().values()
        if c.kind and c.func.__module__.startswith("asg_audit.checks.")
    }
    expected = {(a["kind"], a["entity_id"]) for a in world.anomalies if a["kind"] in kinds}
    found = findings_with_kinds(audit.findings).filter(pl.col("kind").is_in(list(kinds)))
    actual = set(found.select("kind", "entity_id").iter_rows())
    assert {k for k, _ in expected} == kinds  # every kind of this issue was planted
    assert actual - expected == set(), "false alarms"
    assert expected - actual == set(), "missed anomalies"


def test_checks_end_to_end_raise_no_other_warnings(audited) -> None:
    _, audit = audited
    other = findings_with_kinds(audit.findings).filter(
        pl.col("kind").is_null() & pl.col("severity").is_in(["warn", "fail"])
    )
    assert other.height == 0, other.select("check_id", "entity_id", "message").to_dicts()


def test_checks_end_to_end_report_the_formula_and_cost_model_the_world_uses(audited) -> None:
    world, audit = audited
    assert audit["formula_fit"]["follows"][0] == world.config.confidence_formula
    best = audit["cost_model_fit"].row(0, named=True)
    assert best["model"] == "325 sats per agreeing worker"
    assert json.dumps(audit.summary())  # the summary is JSON-serialisable
