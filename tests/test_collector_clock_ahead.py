"""`collect --schedule adaptive` with the API's clock ahead of ours, against the simulator.

The tracked `created_at` come from the API's clock; when it is ahead of ours, some (or all) lie
in our future. The earliest of them is asked at once (the clock probe, see `asg_audit.pollrun`);
its answer makes them all count as created now. Two defects stalled such runs once Adaptive had
learned (its group minimum, 25 settlements, bumps the policy's revision and replans every
waiting task):

- the probe waited in the heap behind every task due since its created_at (at 10 requests a
  second, 60 of them), and the replan at the 25th settlement planned it from its created_at, an
  hour in our future: the tasks created in "our future" were never asked (API 1 h ahead);
- after the probe's answer, latencies were learned as the API's `settled_at` minus our "now":
  months, so the replan put every waiting task's first poll hours away (API months ahead).

Our clock here is the simulator's minus the difference; the simulator serves the truth.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from asg_audit.collector import collect
from asg_audit.config import load_config
from asg_audit.ingest_files import track_file
from asg_audit.sim import WorldConfig, generate_world, run_simulator
from asg_audit.store import open_store

SCALE = 0.01  # 100 clock s a wall second
TASKS = 90  # over 2 days, 27 created in the minute before the simulator's "now" (settling live)
RUN_FOR_S = 900.0  # clock seconds: minutes, where the stalled runs waited hours


class BehindClock:
    """Our clock: the simulator's (the API's) minus `behind_s` seconds."""

    def __init__(self, api_clock, behind_s: float) -> None:
        self.api_clock = api_clock
        self.behind_s = behind_s

    def now(self) -> float:
        return float(self.api_clock.now()) - self.behind_s

    async def sleep(self, seconds: float) -> None:
        await self.api_clock.sleep(seconds)


@pytest.mark.parametrize(
    "behind_s", [3600.0, 120 * 86400.0], ids=["api_clock_1h_ahead", "api_clock_months_ahead"]
)
def test_adaptive_collect_settles_every_task_when_the_apis_clock_is_ahead(
    tmp_path: Path, behind_s: float
) -> None:
    world = generate_world(
        WorldConfig(
            seed=5, tasks=TASKS, live_fraction=0.3, anomalies="none", span=timedelta(days=2)
        )
    )
    truth = world.ground_truth()["tasks"]
    assert {t["final_status"] for t in truth} == {"settled"}
    ours = world.now_at - behind_s  # our clock when the run starts
    in_our_future = [t.created_at - ours for t in world.tasks if t.created_at > ours + 5]
    # both sides of the learning point: more than 25 tasks in our past settle before the future
    # ones are asked, the earliest of those 38 min in our future (1 h), or every task is in our
    # future (months); either way longer than the run may take
    assert len(in_our_future) >= 20 and TASKS - len(in_our_future) in (0, *range(30, TASKS))
    assert min(in_our_future) > 2 * RUN_FOR_S
    db = tmp_path / "audit.duckdb"
    track_file(db, world.write_submissions(tmp_path / "submissions.ndjson"))
    with run_simulator(world, time_scale=SCALE) as sim:
        config = load_config(
            None,
            env={"ASG_API_KEY": sim.api_key, "ASG_BASE_URL": sim.gateway_url},
            overrides={"db_path": str(db), "collector": {"deadline_s": 600.0}},
        )
        summary = asyncio.run(
            collect(
                config,
                clock=BehindClock(sim.clock, behind_s),
                schedule="adaptive",
                run_for_s=RUN_FOR_S,
            )
        )
    with open_store(db) as store:
        states = dict(store.con.execute("SELECT task_id, state FROM poll_state").fetchall())
    assert summary.status == "completed", (summary.status, summary.stats)
    assert summary.settled == TASKS and summary.pending == 0 and summary.expired == 0
    assert states == {t["task_id"]: "done" for t in truth}
    # every task exists at the API: no 404s, and a few polls a task, not a loop
    assert summary.stats["http_404"] == 0
    assert summary.stats["requests"] <= 3 * TASKS
