"""`collect(handle_signals=True)` puts back the SIGINT and SIGTERM handlers it found.

asyncio (uvloop too) resets a signal to its default when its handler is removed, so after
`collect_sync(config, handle_signals=True)` from the main thread, or `asyncio.run(collect(config,
handle_signals=True))`, SIGINT was `default_int_handler` and SIGTERM SIG_DFL: the caller's
handlers were gone and a later SIGTERM killed its process; inside `asyncio.run`, a Ctrl-C after
the run raised KeyboardInterrupt where it was awaited instead of cancelling the main task. Now
`collect` restores what was there before it added its handlers, whoever calls it.

The real collector in a child process, against the simulator on 127.0.0.1, real signals.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
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

# `how`: collect_sync (handle_signals=True from the main thread) or asyncio_run (asyncio.run of
# collect directly). `stop`: the parent's SIGTERM stops the run (it lasts 3,000 s), else the run
# ends by itself (2 s). Then the child signals itself: its own handlers must answer, and it lives.
_CHILD = r"""
import asyncio, json, os, signal, sys, time
from asg_audit.clock import ScaledClock
from asg_audit.collector import collect, collect_sync
from asg_audit.config import load_config

a = json.loads(sys.argv[1])
clock = ScaledClock(a["sim_now"], time_scale=a["scale"], anchor=a["mono"])
config = load_config(None, env={"ASG_API_KEY": a["key"], "ASG_BASE_URL": a["url"]},
                     overrides={"db_path": a["db"],
                                "collector": {"deadline_s": 1e6, "flush_interval_s": 0.2}})
hits = []
def mine(signum, frame):
    hits.append(signum)
if a["how"] not in ("asyncio_run_default", "loop_handler"):
    signal.signal(signal.SIGINT, mine)
    signal.signal(signal.SIGTERM, mine)
kwargs = {"clock": clock, "max_rps": 5, "run_for_s": 3000.0 if a["stop"] else 2.0,
          "handle_signals": True}
print(json.dumps({"go": True}), flush=True)
out = {}
if a["how"] == "collect_sync":
    out["status"] = collect_sync(config, **kwargs).status
elif a["how"] == "asyncio_run":
    out["status"] = asyncio.run(collect(config, **kwargs)).status
elif a["how"] == "loop_handler":  # a service's own handler, added to the loop
    async def service():
        loop = asyncio.get_running_loop()
        shut = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, shut.set)
        out["status"] = (await collect(config, **kwargs)).status
        os.kill(os.getpid(), signal.SIGTERM)  # after the run: the service's handler answers
        try:
            await asyncio.wait_for(shut.wait(), 5)
            out["shutdown_called"] = True
        except TimeoutError:
            out["shutdown_called"] = False  # the signal reached asyncio's no-op
    asyncio.run(service())
else:  # asyncio_run_default: Python's and asyncio.run's own handling of Ctrl-C
    async def main():
        out["status"] = (await collect(config, **kwargs)).status
        signal.raise_signal(signal.SIGINT)  # a Ctrl-C after the run
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            out["after"] = "cancelled"  # asyncio.run's Ctrl-C: the main task is cancelled
            raise
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        out.setdefault("after", "KeyboardInterrupt raised in the coroutine")
        out["raised"] = True
out["sigint_is_mine"] = signal.getsignal(signal.SIGINT) is mine
out["sigterm_is_mine"] = signal.getsignal(signal.SIGTERM) is mine
out["sigint"] = repr(signal.getsignal(signal.SIGINT))
out["sigterm"] = repr(signal.getsignal(signal.SIGTERM))
if a["how"] not in ("asyncio_run_default", "loop_handler"):
    before = list(hits)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)
    out["hits_after_run"] = hits[len(before):]
print(json.dumps(out), flush=True)
"""


@pytest.fixture
def sim() -> Iterator[tuple[Any, Any]]:
    # half of them stuck (pending for ever): the run has polls left to make until stopped
    world = generate_world(
        WorldConfig(seed=5, tasks=120, live_fraction=0.5, anomalies={"stuck_task": 60})
    )
    with run_simulator(world, time_scale=SCALE) as running:
        yield running, world


def _start(running: Any, world: Any, tmp_path: Path, how: str, stop: bool) -> Any:
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
        "stop": stop,
    }
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return child, db


def _answers(running: Any) -> int:
    by_status = running.stats()["gateway"]["by_status"]
    return int(by_status.get("200", 0)) + int(by_status.get("202", 0))


def _finish(child: subprocess.Popen[str]) -> tuple[int, dict[str, Any], str]:
    try:
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return child.returncode, (lines[-1] if len(lines) > 1 else {}), stderr


@pytest.mark.parametrize("stop", [False, True], ids=["run-ends", "stopped-by-sigterm"])
@pytest.mark.parametrize("how", ["collect_sync", "asyncio_run"])
def test_the_callers_handlers_are_back_after_a_run_that_handled_signals(
    sim: tuple[Any, Any], tmp_path: Path, how: str, stop: bool
) -> None:
    running, world = sim
    before = _answers(running)
    child, db = _start(running, world, tmp_path, how, stop)
    if stop:
        deadline = time.monotonic() + 30
        while _answers(running) < before + 10:
            assert child.poll() is None and time.monotonic() < deadline, running.stats()
            time.sleep(0.05)
        time.sleep(0.3)
        child.send_signal(signal.SIGTERM)  # the run's own handler: it stops, cleanly
    code, out, stderr = _finish(child)
    # a SIGTERM after the run used to kill the process (SIG_DFL): rc -15, nothing printed
    assert code == 0, (code, out, stderr[-2000:])
    assert out["status"] == ("interrupted" if stop else "partial"), out
    assert out["sigint_is_mine"] and out["sigterm_is_mine"], out
    assert out["hits_after_run"] == [signal.SIGTERM, signal.SIGINT], out
    with open_store(db) as store:
        runs = store.con.execute("SELECT status FROM runs WHERE command = 'collect'").fetchall()
    assert runs == [(out["status"],)]


def test_inside_asyncio_run_a_ctrl_c_after_the_run_still_cancels_the_main_task(
    sim: tuple[Any, Any], tmp_path: Path
) -> None:
    running, world = sim
    child, _ = _start(running, world, tmp_path, "asyncio_run_default", False)
    code, out, stderr = _finish(child)
    assert code == 0, (code, out, stderr[-2000:])
    assert out["status"] == "partial", out  # run_for_s ended it, tasks pending
    # asyncio.run's handler was back: its Ctrl-C cancelled the task, not raised where it awaited
    assert out["after"] == "cancelled", out
    assert out["raised"], out  # and asyncio.run raised its KeyboardInterrupt
    # then asyncio.run put back Python's own handlers, as it found them
    assert out["sigint"] == repr(signal.default_int_handler), out
    assert out["sigterm"] == repr(signal.SIG_DFL), out


def test_a_handler_the_caller_added_to_the_loop_answers_after_the_run(
    sim: tuple[Any, Any], tmp_path: Path
) -> None:
    # `loop.add_signal_handler` of the caller was replaced by collect's own and deleted with it:
    # the signal then reached asyncio's no-op, and a service's SIGTERM did nothing at all
    running, world = sim
    child, _ = _start(running, world, tmp_path, "loop_handler", False)
    code, out, stderr = _finish(child)
    assert code == 0, (code, out, stderr[-2000:])
    assert out["status"] == "partial", out
    assert out["shutdown_called"] is True, out
