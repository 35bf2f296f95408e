"""Ctrl-C (Jupyter's "interrupt kernel") during `collect_sync` stops the run cleanly.

`collect_sync` ran the collect on a worker thread and waited in a bare `thread.join()`: a
KeyboardInterrupt either came at once while the run went on polling and holding the store's
write lock (left `running` at exit), or, the signal landing on another thread, was not seen
until the whole run had ended. Called with no loop running, asyncio's own Ctrl-C cancelled the
run, which was then recorded `failed`. Now the interrupt stops the run through its stop event:
what was answered is written, the run is recorded `interrupted`, the store released, and the
KeyboardInterrupt raised again, promptly, on the first call in a process and on a later one.

The real collector in a child process, against the simulator on 127.0.0.1, sent a real SIGINT.
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
PROMPT_S = 5.0  # from the SIGINT to the KeyboardInterrupt in the caller (the run lasts 3,000 s)

# `how`: plain (no loop), notebook (a cell run by a loop on this thread, Python's own Ctrl-C,
# as ipykernel runs one), asyncio_run (inside `asyncio.run`, whose Ctrl-C cancels the task)
_CHILD = r"""
import asyncio, json, sys, threading, time
from asg_audit.clock import ScaledClock
from asg_audit.collector import collect_sync
from asg_audit.config import load_config

a = json.loads(sys.argv[1])
clock = ScaledClock(a["sim_now"], time_scale=a["scale"], anchor=a["mono"])
config = load_config(None, env={"ASG_API_KEY": a["key"], "ASG_BASE_URL": a["url"]},
                     overrides={"db_path": a["db"],
                                "collector": {"deadline_s": 1e6, "flush_interval_s": 0.2}})

def call(run_for_s):
    kwargs = {"clock": clock, "max_rps": 5, "run_for_s": run_for_s}
    if a["how"] == "plain":
        return collect_sync(config, **kwargs)
    async def cell():
        return collect_sync(config, **kwargs)
    if a["how"] == "asyncio_run":
        return asyncio.run(cell())
    return asyncio.new_event_loop().run_until_complete(cell())

if a["second"]:
    print(json.dumps({"first": call(2.0).status}), flush=True)
print(json.dumps({"go": True}), flush=True)
try:
    summary = call(3000.0)
    out = {"returned": summary.status}
except KeyboardInterrupt as exc:
    out = {"raised": type(exc).__name__, "notes": getattr(exc, "__notes__", [])}
out["threads"] = [t.name for t in threading.enumerate() if t.name.startswith("asg-")]
print(json.dumps(out), flush=True)
sys.stdin.read()  # alive, as a notebook's kernel is, while the store is written by another
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
    """The child's output lines, read by a thread as they come."""
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
    return int(running.stats()["gateway"]["by_status"].get("200", 0)) + int(
        running.stats()["gateway"]["by_status"].get("202", 0)
    )


@pytest.mark.parametrize(
    ("how", "second"),
    [
        ("notebook", False),
        ("notebook", True),
        ("plain", False),
        ("plain", True),
        ("asyncio_run", False),
    ],
    ids=["notebook-first", "notebook-second", "plain-first", "plain-second", "asyncio_run"],
)
def test_an_interrupted_collect_sync_stops_records_interrupted_and_frees_the_store(
    sim: tuple[Any, Any], tmp_path: Path, how: str, second: bool
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
        "second": second,
    }
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(args)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = _lines(child)
    try:
        if second:
            assert _line(lines, 60)["first"] == "partial"
        assert _line(lines, 60) == {"go": True}
        # some answers in, so there is something to write
        before = _answers(running)
        deadline = time.monotonic() + 30
        while _answers(running) < before + 10:
            assert time.monotonic() < deadline, running.stats()["gateway"]
            time.sleep(0.05)
        time.sleep(0.5)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out = _line(lines, 60)
        took = time.monotonic() - sent
        assert out.get("raised") == "KeyboardInterrupt", out
        assert took < PROMPT_S, f"the KeyboardInterrupt came {took:.1f} s after the SIGINT"
        assert out["threads"] == [], "collector threads left running"
        if how != "asyncio_run":  # there the task is cancelled: asyncio raises its own
            assert any("recorded interrupted" in note for note in out["notes"]), out["notes"]
        # another process writes to the store at once (the child still alive)
        extra = tmp_path / "extra.ndjson"
        extra.write_text(
            json.dumps(
                {"task_id": "extra-1", "status": "pending", "created_at": "2026-11-01T00:00:00Z"}
            )
            + "\n"
        )
        wrote = subprocess.run(
            [sys.executable, "-m", "asg_audit", "track", "--db", str(db), str(extra)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert wrote.returncode == 0, wrote.stderr
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    with open_store(db) as store:
        runs = store.con.execute(
            "SELECT run_id, status FROM runs WHERE command = 'collect' ORDER BY started_at"
        ).fetchall()
        run_id, status = runs[-1]
        stored = store.con.execute(
            "SELECT count(*) FROM observations WHERE run_id = ?", [run_id]
        ).fetchall()[0][0]
    assert status == "interrupted"
    assert len(runs) == (2 if second else 1)
    assert stored > 0  # what was answered before the interrupt is written
