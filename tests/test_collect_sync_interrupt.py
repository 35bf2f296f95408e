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

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _collect_child import (
    CHILD_SETUP,
    PROMPT_S,
    collect_runs,
    end,
    line,
    polling,
    reader,
    start,
    stuck_simulator,
    track_other,
)

# `how`: plain (no loop), notebook (a cell run by a loop on this thread, Python's own Ctrl-C,
# as ipykernel runs one), asyncio_run (inside `asyncio.run`, whose Ctrl-C cancels the task)
_CHILD = (
    CHILD_SETUP
    + r"""
import asyncio, threading
from asg_audit.collector import collect_sync

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
)


@pytest.fixture
def sim() -> Iterator[tuple[Any, Any]]:
    with stuck_simulator() as running_world:
        yield running_world


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
    child, db = start(running, world, tmp_path, _CHILD, how=how, second=second)
    lines = reader(child)
    try:
        if second:
            assert line(lines, 60)["first"] == "partial"
        polling(running, lines)  # some answers in, so there is something to write
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out = line(lines, 60)
        took = time.monotonic() - sent
        assert out.get("raised") == "KeyboardInterrupt", out
        assert took < PROMPT_S, f"the KeyboardInterrupt came {took:.1f} s after the SIGINT"
        assert out["threads"] == [], "collector threads left running"
        if how != "asyncio_run":  # there the task is cancelled: asyncio raises its own
            assert any("recorded interrupted" in note for note in out["notes"]), out["notes"]
        # another process writes to the store at once (the child still alive)
        wrote = track_other(db, tmp_path)
        assert wrote.returncode == 0, wrote.stderr
    finally:
        end(child)
    statuses, stored = collect_runs(db)
    assert statuses[-1] == "interrupted"
    assert len(statuses) == (2 if second else 1)
    assert stored > 0  # what was answered before the interrupt is written
