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
)

# `how`: taskgroup (a TaskGroup's child in asyncio.run), side_task (asyncio.create_task, the
# main task waiting in asyncio.wait), main_task (asyncio.run's own task), custom (no loop, the
# caller's SIGINT handler does not raise)
_CHILD = (
    CHILD_SETUP
    + r"""
import asyncio, signal, threading
from asg_audit.collector import collect_sync

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
)


@pytest.fixture
def sim() -> Iterator[tuple[Any, Any]]:
    with stuck_simulator() as running_world:
        yield running_world


@pytest.mark.parametrize("how", ["taskgroup", "side_task", "main_task", "custom"])
def test_the_first_ctrl_c_stops_collect_sync_called_from_any_task(
    sim: tuple[Any, Any], tmp_path: Path, how: str
) -> None:
    running, world = sim
    child, db = start(running, world, tmp_path, _CHILD, stdin=False, how=how)
    lines = reader(child)
    try:
        polling(running, lines)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)  # once only
        out = line(lines, PROMPT_S + 10)
        took = time.monotonic() - sent
    finally:
        end(child)
    assert took < PROMPT_S, f"the call ended {took:.1f} s after the SIGINT ({out})"
    assert out["threads"] == [], out
    if how == "custom":  # the caller's handler had the signal, and the call returned
        assert out["hits"] == [signal.SIGINT], out
        assert "raised" not in out and out["status"] == "interrupted", out
    else:  # asyncio.run's Ctrl-C: the main task cancelled, then its KeyboardInterrupt
        assert out.get("raised") == "KeyboardInterrupt", out
        if how != "main_task":  # the task that called it was not cancelled: it returned
            assert out["status"] == "interrupted", out
    statuses, stored = collect_runs(db)
    assert statuses == ["interrupted"]
    assert stored > 0  # what was answered before the interrupt is written
