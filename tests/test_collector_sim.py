"""The real collector against the simulator on 127.0.0.1, in scaled time.

The simulator's ground truth is the expected answer: every tracked task must end as the world
says it is (settled -> done, an undocumented final status -> failed, unknown -> not_found,
stuck -> expired), or still pending for the next run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from asg_audit.collector import collect, collect_sync
from asg_audit.config import AuditConfig, load_config
from asg_audit.errors import AuthError
from asg_audit.ingest_files import track_file
from asg_audit.schedule import Adaptive, TaskFacts
from asg_audit.sim import WorldConfig, generate_world, run_simulator
from asg_audit.store import open_store

SCALE = 0.005  # one simulated minute in 0.3 wall seconds
EXPECTED_STATE = {
    "settled": "done",
    "failed": "failed",
    "timed_out": "failed",
    "unknown": "not_found",
    "stuck": "expired",
}
REPO = Path(__file__).resolve().parents[1]


def _world(tasks: int = 200, seed: int = 11, live_fraction: float = 0.3):
    config = WorldConfig(seed=seed, tasks=tasks, live_fraction=live_fraction, anomalies="all")
    return generate_world(config)


def _tracked(world, tmp_path: Path) -> Path:
    db = tmp_path / "audit.duckdb"
    track_file(db, world.write_submissions(tmp_path / "submissions.ndjson"))
    return db


def _config(sim, db: Path, **collector) -> AuditConfig:
    return load_config(
        None,
        env={"ASG_API_KEY": sim.api_key, "ASG_BASE_URL": sim.gateway_url},
        overrides={"db_path": str(db), "collector": {"deadline_s": 700.0, **collector}},
    )


def _expected(world) -> dict[str, str]:
    return {t["task_id"]: EXPECTED_STATE[t["final_status"]] for t in world.ground_truth()["tasks"]}


def _states(db: Path) -> dict[str, str]:
    with open_store(db) as store:
        return dict(store.con.execute("SELECT task_id, state FROM poll_state").fetchall())


@pytest.fixture
def sim_world() -> Iterator[tuple]:
    world = _world()
    with run_simulator(world, time_scale=SCALE) as sim:
        yield sim, world


def test_collector_every_task_ends_as_the_ground_truth_says(sim_world, tmp_path: Path) -> None:
    sim, world = sim_world
    db = _tracked(world, tmp_path)
    summary = asyncio.run(collect(_config(sim, db), clock=sim.clock, max_rps=200))
    assert summary.status == "completed"
    assert _states(db) == _expected(world)
    with open_store(db) as store:
        settled = store.con.execute(
            "SELECT count(*) FROM results WHERE status = 'settled'"
        ).fetchall()[0][0]
        stats = json.loads(
            store.con.execute("SELECT stats FROM runs WHERE command = 'collect'").fetchall()[0][0]
        )
    assert settled == sum(1 for s in _expected(world).values() if s == "done")
    assert stats["requests"] == sim.stats()["gateway"]["by_endpoint"]["GET /v1/tasks/{id}/result"]


def test_collector_the_schedule_learns_each_settlement_exactly_once(sim_world, tmp_path) -> None:
    # learned from the answer at once, and not a second time from the written record
    sim, world = sim_world
    db = _tracked(world, tmp_path)
    learned: list[str] = []

    class Counting(Adaptive):
        def observe_settled(self, task: TaskFacts, latency_s: float) -> None:
            learned.append(task.task_id)
            super().observe_settled(task, latency_s)

    summary = asyncio.run(
        collect(_config(sim, db), clock=sim.clock, max_rps=200, schedule=Counting())
    )
    assert summary.status == "completed"
    assert len(learned) == len(set(learned)) == summary.settled


def test_collector_under_harsh_faults_ends_every_task_and_keeps_bad_bodies(tmp_path: Path) -> None:
    world = _world(seed=12, live_fraction=0.0)
    # the server admits 10 requests per simulated second: asking for 25 provokes 429s
    with run_simulator(world, time_scale=0.1, faults="harsh", gateway_rps_limit=10) as sim:
        db = _tracked(world, tmp_path)
        # stuck tasks expire a simulated minute after their first poll (6 s of wall time)
        config = _config(sim, db, not_found_grace_s=10.0, deadline_s=60.0)
        summary = asyncio.run(collect(config, clock=sim.clock, max_rps=25))
        server = sim.stats()["gateway"]
    expected = _expected(world)
    states = _states(db)
    assert set(states) == set(expected)
    for task_id, state in states.items():
        assert state in (expected[task_id], "pending"), task_id
    assert sum(states[t] == expected[t] for t in expected) >= 0.9 * len(expected)
    assert summary.stats["http_429"] > 0 and summary.stats["http_5xx"] > 0
    with open_store(db) as store:
        rejects = store.frame("rejects")
    faults = server["faults"]
    assert rejects.height == faults.get("truncated", 0) + faults.get("malformed", 0)
    assert rejects.height == summary.stats["unusable_bodies"]
    assert rejects.get_column("origin").str.contains(r"^GET /v1/tasks/[^/]+/result$").all()


def test_collector_never_sends_more_than_max_rps_in_a_second(tmp_path: Path) -> None:
    world = _world(tasks=60, seed=13, live_fraction=0.0)
    # 0.1 s of wall time a simulated second: scheduling stalls on this shared machine must not
    # bunch requests into one server window
    with run_simulator(world, time_scale=0.1) as sim:
        db = _tracked(world, tmp_path)
        config = _config(sim, db, not_found_grace_s=10.0, deadline_s=60.0)
        asyncio.run(collect(config, clock=sim.clock, max_rps=5))
        per_second = sim.stats()["gateway"]["per_second"]
    assert max(per_second.values()) <= 5
    assert sum(per_second.values()) >= len(world.tasks)


def test_collector_auth_refused_stops_the_run_and_records_it(sim_world, tmp_path: Path) -> None:
    sim, world = sim_world
    db = _tracked(world, tmp_path)
    config = _config(sim, db).replace(api_key=None)
    config = load_config(
        None,
        env={"ASG_API_KEY": "sk_sandbox_wrong", "ASG_BASE_URL": sim.gateway_url},
        overrides={"db_path": str(db)},
    )
    with pytest.raises(AuthError) as caught:
        asyncio.run(collect(config, clock=sim.clock))
    assert caught.value.exit_code == 3
    assert "sk_sandbox_wrong" not in str(caught.value)
    with open_store(db) as store:
        assert store.con.execute(
            "SELECT status FROM runs WHERE command = 'collect'"
        ).fetchall() == [("auth_refused",)]


def test_collector_partial_run_resumes_without_loss_or_duplicates(
    sim_world, tmp_path: Path
) -> None:
    sim, world = sim_world
    db = _tracked(world, tmp_path)
    first = asyncio.run(collect(_config(sim, db), clock=sim.clock, max_rps=200, run_for_s=20))
    assert first.status == "partial" and first.pending > 0
    second = asyncio.run(collect(_config(sim, db), clock=sim.clock, max_rps=200))
    assert second.status == "completed"
    assert second.already_final == first.settled + first.failed + first.not_found + first.expired
    assert _states(db) == _expected(world)
    with open_store(db) as store:
        dupes = store.con.execute(
            "SELECT count(*) FROM (SELECT task_id FROM observations WHERE status = 'settled'"
            " GROUP BY task_id HAVING count(*) > 1)"
        ).fetchall()[0][0]
    assert dupes == 0


_CHILD = """
import json, sys
from asg_audit.clock import ScaledClock
from asg_audit.collector import collect_sync
from asg_audit.config import load_config
a = json.loads(sys.argv[1])
clock = ScaledClock(a["sim_now"], time_scale=a["scale"], anchor=a["mono"])
config = load_config(None, env={"ASG_API_KEY": a["key"], "ASG_BASE_URL": a["url"]},
                     overrides={"db_path": a["db"],
                               "collector": {"deadline_s": 700.0, "flush_interval_s": 0.05}})
collect_sync(config, clock=clock, max_rps=1)
"""


def test_collector_resumes_after_kill_9_without_loss_or_duplicates(
    sim_world, tmp_path: Path
) -> None:
    sim, world = sim_world
    db = _tracked(world, tmp_path)
    args = {
        "sim_now": sim.clock.now(),
        "mono": time.monotonic(),
        "scale": SCALE,
        "key": sim.api_key,
        "url": sim.gateway_url,
        "db": str(db),
    }
    child = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(args)], cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while sim.stats()["gateway"]["by_status"].get("200", 0) < 100:
            assert child.poll() is None, "the collector ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    with open_store(db) as store:
        written = store.count("poll_state")
    assert 0 < written < len(world.tasks)  # killed mid-run, some batches committed
    summary = asyncio.run(collect(_config(sim, db), clock=sim.clock, max_rps=200))
    assert summary.status == "completed"
    assert _states(db) == _expected(world)
    with open_store(db) as store:
        dupes = store.con.execute(
            "SELECT count(*) FROM (SELECT task_id FROM observations WHERE status = 'settled'"
            " GROUP BY task_id HAVING count(*) > 1)"
        ).fetchall()[0][0]
        settled = store.con.execute(
            "SELECT count(DISTINCT task_id) FROM observations WHERE status = 'settled'"
        ).fetchall()[0][0]
    assert dupes == 0
    assert settled == sum(1 for s in _expected(world).values() if s == "done")


def test_collector_sync_works_inside_a_running_event_loop(sim_world, tmp_path: Path) -> None:
    sim, world = sim_world
    db = _tracked(world, tmp_path)

    async def notebook_cell():
        return collect_sync(_config(sim, db), clock=sim.clock, max_rps=200)

    summary = asyncio.run(notebook_cell())
    assert summary.status == "completed"
    assert summary.tracked == len(world.tasks)


def test_collector_polls_at_once_when_the_apis_created_at_is_ahead_of_our_clock(
    sim_world, tmp_path: Path
) -> None:
    # the API's clock a day ahead of ours: the submissions' created_at are in our future
    sim, world = sim_world
    subs = tmp_path / "ahead.ndjson"
    lines = world.write_submissions(tmp_path / "submissions.ndjson").read_text().splitlines()
    with subs.open("w") as fh:
        for line in lines:
            row = json.loads(line)
            created = datetime.fromisoformat(row["created_at"].replace("Z", "+00:00"))
            row["created_at"] = (created + timedelta(days=1)).isoformat()
            fh.write(json.dumps(row) + "\n")
    db = tmp_path / "audit.duckdb"
    track_file(db, subs)
    summary = asyncio.run(collect(_config(sim, db), clock=sim.clock, max_rps=200, run_for_s=120.0))
    settled = {
        t["task_id"] for t in world.ground_truth()["tasks"] if t["final_status"] == "settled"
    }
    states = _states(db)
    # within two simulated minutes, not a day: every task settled before the start is done
    done_before = {
        t["task_id"]
        for t in world.ground_truth()["tasks"]
        if t["final_status"] == "settled" and not t.get("live")
    }
    assert summary.status == "partial" and summary.stats["requests"] > 0
    assert done_before and done_before <= settled
    assert {k for k, v in states.items() if v == "done"} >= done_before


def test_collector_tasks_tracked_before_the_api_creates_them_are_polled_once_created(
    tmp_path: Path,
) -> None:
    """A stream: 60 tasks tracked at the start, created by the API over 300 s (a 404 until
    then). The earliest of those in our future is asked at once; its 404 says they are not
    created yet, so each waits for its created_at and none becomes not_found (the grace is
    60 s), as with the API's clock ahead (the test above) they would be asked at once."""
    import dataclasses

    span = timedelta(seconds=1860 + 300 + 300 + 600)
    config = WorldConfig(seed=7, tasks=60, live_fraction=0.0, anomalies="none", span=span)
    world = generate_world(config)
    first = min(t.created_at for t in world.tasks)
    world = dataclasses.replace(world, now_at=first)
    db = _tracked(world, tmp_path)
    with run_simulator(world, time_scale=0.02) as sim:
        summary = asyncio.run(collect(_config(sim, db), clock=sim.clock, max_rps=200))
        polls = sim.stats()["gateway"]["by_endpoint"]["GET /v1/tasks/{id}/result"]
    assert summary.status == "completed"
    assert _states(db) == _expected(world)
    assert set(_states(db).values()) == {"done"}
    # the one early question, then the schedule's polls: a few per task, not a 404 loop
    assert polls < 60 * 6
