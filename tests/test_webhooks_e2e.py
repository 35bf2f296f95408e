"""End to end: the simulator registers our receiver and delivers to it on 127.0.0.1.

The simulator's ground truth (its world) is the expected answer: every task that settles after
the registration is in `results` with the world's label, txid and settlement time, once, even
though the simulator loses first attempts, retries, sends duplicates and delivers out of order.
"""

from __future__ import annotations

import time

import duckdb
import httpx
import pytest
from _webhooks_server import ThreadServer

from asg_audit.cli import main
from asg_audit.sim import FaultConfig, WorldConfig, generate_world, run_simulator
from asg_audit.sim.clock import parse_ts
from asg_audit.webhook_writer import utc_now
from asg_audit.webhooks import create_webhook_app

FAULTS = FaultConfig(webhook_duplicate_rate=0.3, webhook_failure_rate=0.3)


def _rows(db, sql):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def delivered(tmp_path_factory):
    """Run the simulator against a receiver until every delivery has been made."""
    db = tmp_path_factory.mktemp("e2e") / "audit.duckdb"
    world = generate_world(WorldConfig(seed=41, tasks=400, live_fraction=0.25))
    with run_simulator(world, time_scale=0.01, faults=FAULTS) as sim:
        # As the demo: received in simulated time, freshness against the wall clock.
        app = create_webhook_app(
            db, [sim.webhook_secret], clock=sim.clock.now_dt, freshness_clock=utc_now
        )
        with ThreadServer(app) as srv:
            mp = pytest.MonkeyPatch()
            mp.setenv("ASG_BASE_URL", sim.gateway_url)
            mp.setenv("ASG_API_KEY", sim.api_key)
            mp.setenv("ASG_WEBHOOK_SECRET", sim.webhook_secret)
            try:
                assert main(["webhooks", "register", "--url", srv.hook_url, "--db", str(db)]) == 0
            finally:
                mp.undo()
            registered_at = sim.state.webhooks[0].registered_at  # the simulator's own record
            # Tasks submitted now settle (and are delivered) while we listen, however slowly
            # this machine started the receiver.
            specs = [
                {
                    "task_type": "sentiment",
                    "consensus_threshold": 3,
                    "label_spec": {"options": ["positive", "negative"]},
                }
                for _ in range(40)
            ]
            r = httpx.post(
                sim.gateway_url + "/v1/tasks/batch",
                json={"tasks": specs},
                headers={"Authorization": f"Bearer {sim.api_key}"},
            )
            assert r.status_code == 202
            candidates = [*world.tasks, *sim.state.live_tasks.values()]
            expected = {
                t.task_id: t
                for t in candidates
                if t.final_status == "settled" and t.settled_at >= registered_at
            }
            last = max(t.settled_at for t in expected.values())
            # deliveries start up to 2.5 s (simulated) after settlement, duplicates up to 5 s
            # later, and a lost first attempt is retried after 1 s: all done 40 s after the last.
            deadline = time.monotonic() + 30
            while sim.clock.now() < last + 40:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            stats = sim.stats()["gateway"]["webhooks"]
    return db, expected, stats


def test_webhooks_e2e_every_settled_task_arrives_once(delivered):
    db, expected, _ = delivered
    assert len(expected) >= 20
    rows = _rows(db, "SELECT task_id, observation_count FROM results")
    assert {task_id for task_id, _ in rows} == set(expected)
    assert all(count == 1 for _, count in rows)


def test_webhooks_e2e_fields_match_ground_truth(delivered):
    db, expected, _ = delivered
    rows = _rows(
        db, "SELECT task_id, consensus_label, bsv_txid, epoch(settled_at), sources FROM results"
    )
    for task_id, label, txid, settled_at, sources in rows:
        task = expected[task_id]
        assert label == task.reported["consensus_label"]
        assert txid == (task.reported["bsv_txid"] or "").lower() or None
        assert settled_at == task.reported["settled_at"]
        assert sources == ["webhook"]


def test_webhooks_e2e_duplicates_and_retries_counted_not_stored(delivered):
    db, expected, stats = delivered
    outcomes = dict(_rows(db, "SELECT outcome, count(*) FROM webhook_deliveries GROUP BY 1"))
    assert stats["duplicates"] > 0 and stats["lost"] > 0
    assert outcomes["stored"] == len(expected)
    assert outcomes["stored"] + outcomes.get("duplicate", 0) == stats["delivered"]
    assert set(outcomes) <= {"stored", "duplicate"}


def test_webhooks_e2e_out_of_order_arrivals_all_stored(delivered):
    db, expected, _ = delivered
    arrivals = [
        r[0]
        for r in _rows(
            db,
            "SELECT task_id FROM webhook_deliveries WHERE outcome = 'stored' ORDER BY received_at",
        )
    ]
    settled = [expected[t].settled_at for t in arrivals]
    assert settled != sorted(settled)  # the simulator did deliver out of order
    assert len(arrivals) == len(expected)


def test_webhooks_e2e_delivery_timestamp_follows_settlement(delivered):
    db, _, _ = delivered
    rows = _rows(db, "SELECT count(*) FROM results WHERE delivered_at < settled_at")
    assert rows == [(0,)]
    assert parse_ts("2026-01-01T00:00:00Z") > 0  # the simulator's clock helpers are in use
