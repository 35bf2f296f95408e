"""`collect` when the API is misconfigured or away, against the simulator on 127.0.0.1.

A wrong base URL answers 404 to everything and must not make any task `not_found`; an API that
never answers must end the run quickly as failed; tasks a wrong run left `not_found` (or
`expired`) are polled again by a later run; the deadline counts on our clock, not the API's.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from asg_audit.clock import ScaledClock
from asg_audit.collector import collect
from asg_audit.config import AuditConfig, load_config
from asg_audit.errors import ApiError
from asg_audit.ingest_files import track_file
from asg_audit.sim import WorldConfig, generate_world, run_simulator
from asg_audit.store import open_store

SCALE = 0.005
EXPECTED_STATE = {
    "settled": "done",
    "failed": "failed",
    "timed_out": "failed",
    "unknown": "not_found",
    "stuck": "expired",
}


def _world(tasks: int = 120, seed: int = 31, live_fraction: float = 0.0, anomalies: str = "all"):
    return generate_world(
        WorldConfig(seed=seed, tasks=tasks, live_fraction=live_fraction, anomalies=anomalies)
    )


def _tracked(world, tmp_path: Path) -> Path:
    db = tmp_path / "audit.duckdb"
    track_file(db, world.write_submissions(tmp_path / "submissions.ndjson"))
    return db


def _config(url: str, key: str, db: Path, **collector) -> AuditConfig:
    return load_config(
        None,
        env={"ASG_API_KEY": key, "ASG_BASE_URL": url},
        overrides={"db_path": str(db), "collector": {"deadline_s": 700.0, **collector}},
    )


def _expected(world) -> dict[str, str]:
    return {t["task_id"]: EXPECTED_STATE[t["final_status"]] for t in world.ground_truth()["tasks"]}


def _states(db: Path) -> dict[str, str]:
    with open_store(db) as store:
        return dict(store.con.execute("SELECT task_id, state FROM poll_state").fetchall())


def _run_statuses(db: Path) -> list[str]:
    with open_store(db) as store:
        rows = store.con.execute(
            "SELECT status FROM runs WHERE command = 'collect' ORDER BY started_at"
        ).fetchall()
    return [r[0] for r in rows]


def test_collect_wrong_base_url_fails_the_run_and_marks_nothing_not_found(tmp_path: Path) -> None:
    world = _world()
    with run_simulator(world, time_scale=SCALE) as sim:
        db = _tracked(world, tmp_path)
        wrong = _config(sim.gateway_url + "/wrongprefix", sim.api_key, db)
        with pytest.raises(ApiError) as caught:
            asyncio.run(collect(wrong, clock=sim.clock, max_rps=200))
        assert caught.value.exit_code == 3
        message = str(caught.value)
        assert sim.gateway_url + "/wrongprefix" in message and "404" in message
        assert sim.api_key not in message
        assert "not_found" not in set(_states(db).values())
        assert _run_statuses(db) == ["failed"]
        # the URL fixed: every task ends as the world says
        right = _config(sim.gateway_url, sim.api_key, db)
        summary = asyncio.run(collect(right, clock=sim.clock, max_rps=200))
    assert summary.status == "completed"
    assert _states(db) == _expected(world)


def test_collect_wrong_base_url_is_caught_by_the_control_task(tmp_path: Path) -> None:
    # only unknown tasks left to poll: a task seen settled before tells a wrong URL (its 404)
    # from tasks that are really unknown (its 200)
    world = _world(seed=32)
    expected = _expected(world)
    settled = [t for t, s in expected.items() if s == "done"][:5]
    unknown = [t for t, s in expected.items() if s == "not_found"]
    assert unknown
    with run_simulator(world, time_scale=SCALE) as sim:
        db = _tracked(world, tmp_path)
        right = _config(sim.gateway_url, sim.api_key, db)
        asyncio.run(collect(right, clock=sim.clock, max_rps=200, task_ids=settled))
        wrong = _config(sim.gateway_url + "/v2", sim.api_key, db)
        with pytest.raises(ApiError, match="answered 404 too"):
            asyncio.run(collect(wrong, clock=sim.clock, max_rps=200, task_ids=unknown))
        assert all(_states(db).get(t) != "not_found" for t in unknown)
        summary = asyncio.run(collect(right, clock=sim.clock, max_rps=200, task_ids=unknown))
    assert summary.status == "completed" and summary.not_found == len(unknown)
    assert summary.stats["control_probes"] == 1
    assert _run_statuses(db) == ["completed", "failed", "completed"]


@pytest.mark.parametrize("state", ["not_found", "expired"])
def test_collect_polls_again_tasks_an_earlier_run_left_not_found_or_expired(
    tmp_path: Path, state: str
) -> None:
    # what a wrong base URL (or a clock skew) did before the fix: every task final at once
    world = _world(seed=33)
    db = _tracked(world, tmp_path)
    with run_simulator(world, time_scale=SCALE) as sim:
        with open_store(db) as store, store.transaction():
            store.con.execute(
                "INSERT INTO poll_state SELECT task_id, ?, 1, NULL, 404, NULL, to_timestamp(?)"
                " FROM submissions",
                [state, sim.clock.now()],
            )
        config = _config(sim.gateway_url, sim.api_key, db)
        summary = asyncio.run(collect(config, clock=sim.clock, max_rps=200))
    assert summary.rechecked == len(world.tasks)
    assert _states(db) == _expected(world)


def test_collect_expired_task_rests_then_is_rechecked_with_a_longer_cool_down(
    tmp_path: Path,
) -> None:
    world = _world(seed=34)
    stuck = {t for t, s in _expected(world).items() if s == "expired"}
    assert stuck
    with run_simulator(world, time_scale=SCALE) as sim:
        db = _tracked(world, tmp_path)
        config = _config(sim.gateway_url, sim.api_key, db)
        asyncio.run(collect(config, clock=sim.clock, max_rps=200))
        again = asyncio.run(collect(config, clock=sim.clock, max_rps=200))
        assert again.tracked == 0  # resting: not due yet
        with open_store(db) as store, store.transaction():
            store.con.execute(
                "UPDATE poll_state SET next_poll_at = next_poll_at - INTERVAL 2 HOUR,"
                " updated_at = updated_at - INTERVAL 2 HOUR WHERE state = 'expired'"
            )
        third = asyncio.run(collect(config, clock=sim.clock, max_rps=200))
    assert third.rechecked == len(stuck) and third.expired == len(stuck)
    with open_store(db) as store:
        rests = store.con.execute(
            "SELECT DISTINCT round(epoch(next_poll_at) - epoch(updated_at)) FROM poll_state"
            " WHERE state = 'expired'"
        ).fetchall()
    assert rests == [(7200.0,)]


def test_collect_deadline_counts_on_our_clock_not_the_apis(tmp_path: Path) -> None:
    # our clock is 46 days ahead of the API's: live tasks look 46 days old by created_at
    world = _world(tasks=60, seed=35, live_fraction=1.0, anomalies="none")
    with run_simulator(world, time_scale=SCALE) as sim:
        db = _tracked(world, tmp_path)
        ahead = ScaledClock(sim.clock.now() + 46 * 86400, time_scale=SCALE)
        config = _config(sim.gateway_url, sim.api_key, db)
        summary = asyncio.run(collect(config, clock=ahead, max_rps=200))
    assert summary.expired == 0
    assert _states(db) == _expected(world)


def test_collect_unreachable_api_fails_fast_and_records_the_run(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    config = _config("http://127.0.0.1:1/api", "sk_sandbox_x", db)
    clock = ScaledClock(time.time(), time_scale=0.1)  # 10 clock seconds a wall second
    started = time.monotonic()
    with pytest.raises(ApiError) as caught:
        asyncio.run(collect(config, clock=clock, task_ids=["tsk_a", "tsk_b", "tsk_c"]))
    assert time.monotonic() - started < 10
    assert caught.value.exit_code == 3
    message = str(caught.value)
    assert "cannot reach the Gateway at http://127.0.0.1:1/api" in message
    assert "pw" not in message.replace("/api", "")
    assert _run_statuses(db) == ["failed"]
    assert set(_states(db).values()) <= {"pending"}


def test_collect_progress_counts_match_the_summary(tmp_path: Path) -> None:
    from asg_audit.pollwriter import CollectProgress, CollectProgressReporter

    world = _world(seed=36)
    snaps: list[CollectProgress] = []

    class Recording(CollectProgressReporter):
        def update(self, snap) -> None:
            snaps.append(snap)

    with run_simulator(world, time_scale=SCALE) as sim:
        db = _tracked(world, tmp_path)
        config = _config(sim.gateway_url, sim.api_key, db)
        summary = asyncio.run(
            collect(config, clock=sim.clock, max_rps=200, progress=Recording(live=False))
        )
    assert summary.failed > 0
    last = snaps[-1]
    assert (last.settled, last.failed, last.not_found, last.expired, last.pending) == (
        summary.settled,
        summary.failed,
        summary.not_found,
        summary.expired,
        summary.pending,
    )


def test_collect_progress_eta_waits_for_the_last_pending_poll() -> None:
    from asg_audit.pollwriter import CollectProgress, CollectProgressReporter

    reporter = CollectProgressReporter(live=False)
    snap = CollectProgress(
        settled=1491,
        pending=1,
        not_found=0,
        expired=0,
        throttled=0,
        requests=4000,
        failed=3,
        transport_errors=18,
        next_poll_in_s=40.0,
    )
    line = reporter.line(snap)
    assert "settled 1,491 | failed 3 | pending 1" in line
    assert "transport errors 18" in line
    assert line.endswith("ETA 40s")
