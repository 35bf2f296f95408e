"""The first Ctrl-C stops `collect_sync` wherever it is called from.

Under `asyncio.run`, the first SIGINT cancels the main task and raises nothing; `collect_sync`
only started the stop when the task that called it was the one cancelled. Called from another
task (a TaskGroup's child, a task of `asyncio.create_task` the main task does not await
directly), the first Ctrl-C did nothing visible and the run went on polling. Likewise a caller's
own SIGINT handler that does not raise left the run going. Now every SIGINT during
`collect_sync` starts the stop before it goes on to the handler that was there: the run writes
what was answered, is recorded `interrupted` and releases the store; `asyncio.run` then raises
its KeyboardInterrupt, as it does when `collect_sync` runs in its main task.

The real collector in a child process, against the simulator on 127.0.0.1, a real SIGINT.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asg_audit.ingest import track_file
from asg_audit.sim import WorldConfig, generate_world, run_simulator
from asg_audit.store import open_store

REPO = Path(__file__).resolve().parents[1]
SCALE = 0.05  # wall seconds a simulated second
PROMPT_S = 5.0  # from the SIGINT to the end of the call (the run lasts 3,000 s: 150 wall s)

# `how`: taskgroup (a TaskGroup's child in asyncio.run), side_task (asyncio.create_task, the
# main task waiting in asyncio.wait), main_task (asyncio.run's own task), custom (no loop, the
# caller's SIGINT handler does not raise)
_CHILD = r"""
import asyncio, json, signal, sys, threading
from asg_audit.clock import ScaledClock
from asg_audit.collector import collect_sync
from asg_audit.config import load_config

a = json.loads(sys.argv[1])
clock = ScaledClock(a["sim_now"], time_scale=a["scale"], anchor=a["mono"])
config = load_config(None, env={"ASG_API_KEY": a["key"], "ASG_BASE_URL": a["url"]},
                     overrides={"db_path": a["db"],
                                "collector": {"deadline_s": 1e6, "flush_interval_s": 0.2}})
out = {}
hits = []

async def cell():
    out["status"] = collect_sync(config, clock=clock, max_rps=5, run_for_s=3000.0).status

async def main():
    if a["how"] == "taskgroup":
        async with asyncio.TaskGroup() as tg:
            tg.create_task(cell())
    elif a["how"] == "side_task":
        await asyncio.wait([asyncio.create_task(cell())])
    else:
        await cell()

print(json.dumps({"go": True}), flush=True)
try:
    if a["how"] == "custom":
        signal.signal(signal.SIGINT, lambda signum, frame: hits.append(signum))
        asyncio.new_event_loop().run_until_complete(cell())
    else:
        asyncio.run(main())
except KeyboardInterrupt as exc:
    out["raised"] = type(exc).__name__
out["hits"] = hits
out["threads"] = [t.name for t in threading.enumerate() if t.name.startswith("asg-")]
print(json.dumps(out), flush=True)
"""


@pytest.fixture
def sim() -> Iterator[tuple[Any, Any]]:
    # half of them stuck (pending for ever): the run has polls left to make until interrupted
    world = generate_world(
        WorldConfig(seed=3, tasks=200, live_fraction=0.5, anomalies={"stuck_task": 100})
    )
    with run_simulator(world, time_scale=SCALE) as running:
        yield running, world


def _lines(child: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _line(lines: queue.Queue[str], timeout: float) -> dict[str, Any]:
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no word from the child within {timeout} s") from None
    answer: dict[str, Any] = json.loads(line)
    return answer


def _answers(running: Any) -> int:
    by_status = running.stats()["gateway"]["by_status"]
    return int(by_status.get("200", 0)) + int(by_status.get("202", 0))


@pytest.mark.parametrize("how", ["taskgroup", "side_task", "main_task", "custom"])
def test_the_first_ctrl_c_stops_collect_sync_called_from_any_task(
    sim: tuple[Any, Any], tmp_path: Path, how: str
) -> None:
    running, world = sim
    db = tmp_path / "audit.duckdb"
    track_file(db, world.write_submissions(tmp_path / "submissions.ndjson"))
    args = {
        "sim_now": running.clock.now(),
        "mono": time.monotonic(),
        "scale": SCALE,
        "key": running.api_key,
        "url": running.gateway_url,
        "db": str(db),
        "how": how,
    }
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = _lines(child)
    try:
        assert _line(lines, 60) == {"go": True}
        before = _answers(running)
        deadline = time.monotonic() + 30
        while _answers(running) < before + 10:
            assert time.monotonic() < deadline, running.stats()["gateway"]
            time.sleep(0.05)
        time.sleep(0.5)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)  # once only
        out = _line(lines, PROMPT_S + 10)
        took = time.monotonic() - sent
    finally:
        if child.poll() is None:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    assert took < PROMPT_S, f"the call ended {took:.1f} s after the SIGINT ({out})"
    assert out["threads"] == [], out
    if how == "custom":  # the caller's handler had the signal, and the call returned
        assert out["hits"] == [signal.SIGINT], out
        assert "raised" not in out and out["status"] == "interrupted", out
    else:  # asyncio.run's Ctrl-C: the main task cancelled, then its KeyboardInterrupt
        assert out.get("raised") == "KeyboardInterrupt", out
        if how != "main_task":  # the task that called it was not cancelled: it returned
            assert out["status"] == "interrupted", out
    with open_store(db) as store:
        runs = store.con.execute(
            "SELECT run_id, status FROM runs WHERE command = 'collect' ORDER BY started_at"
        ).fetchall()
        stored = store.con.execute(
            "SELECT count(*) FROM observations WHERE run_id = ?", [runs[-1][0]]
        ).fetchall()[0][0]
    assert [status for _, status in runs] == ["interrupted"]
    assert stored > 0  # what was answered before the interrupt is written
