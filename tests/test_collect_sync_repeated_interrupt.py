"""A second Ctrl-C during `collect_sync`'s stop neither orphans the run nor hangs the caller.

`collect_sync` set the run's stop event in its `except KeyboardInterrupt` handler: a second
Ctrl-C landing in that handler before `stop.set()` raised out of it with the stop never asked
for, and the worker thread went on polling and holding the store's write lock after
collect_sync had raised. And once the stop had begun, every further Ctrl-C was swallowed: a
stopping run that hung could not be interrupted at all. Now SIGINT sets the stop event before
its KeyboardInterrupt leaves the signal handler, and a repeated Ctrl-C starts a bounded wait,
after which `CollectNotStoppedError` (a KeyboardInterrupt) says the run could not be stopped.

The real collector in a child process, against the simulator on 127.0.0.1, sent real SIGINTs;
the second lands inside collect_sync's handling of the first (raised there, through Python's
own SIGINT handling, by a trace function at the first line run after the first interrupt).
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

STOP_GRACE_S = 1.5  # the child's `_STOP_GRACE_S` (hang test)
HANG_S = 12.0  # how long the hung stop's record of the run takes (hang test)

# `how`: plain (no loop), notebook (a cell run by a loop on this thread, Python's own Ctrl-C),
# asyncio_run (inside `asyncio.run`, whose first Ctrl-C cancels the task, the second raises).
# `mode`: race (a second SIGINT raised at the first line of collector.py run after the first
# interrupt), hang (the run's record of its end hangs for HANG_S).
_CHILD = (
    CHILD_SETUP
    + r"""
import asyncio, signal, threading, time
import asg_audit.collector as collector
import asg_audit.pollwriter as pollwriter

if a["mode"] == "hang":
    collector._STOP_GRACE_S = a["grace"]
    finish_run = pollwriter.PollWriter.finish_run
    def hung_finish_run(self, run_id, status, stats):
        if status == "interrupted":
            print(json.dumps({"hanging": True}), flush=True)
            time.sleep(a["hang"])
        return finish_run(self, run_id, status, stats)
    pollwriter.PollWriter.finish_run = hung_finish_run

injected = {"state": 0}
def local(frame, event, arg):
    if event == "exception" and injected["state"] == 0:
        if issubclass(arg[0], (KeyboardInterrupt, asyncio.CancelledError)):
            injected["state"] = 1
    elif event == "line" and injected["state"] == 1:
        injected["state"] = 2
        signal.raise_signal(signal.SIGINT)  # Python's handling of a real SIGINT, here and now
    return local
def trace(frame, event, arg):
    return local if frame.f_code.co_filename == collector.__file__ else None

def call(run_for_s):
    kwargs = {"clock": clock, "max_rps": 5, "run_for_s": run_for_s}
    if a["how"] == "plain":
        return collector.collect_sync(config, **kwargs)
    async def cell():
        return collector.collect_sync(config, **kwargs)
    if a["how"] == "asyncio_run":
        return asyncio.run(cell())
    return asyncio.new_event_loop().run_until_complete(cell())

print(json.dumps({"go": True}), flush=True)
if a["mode"] == "race":
    sys.settrace(trace)
try:
    summary = call(3000.0)
    out = {"returned": summary.status}
except KeyboardInterrupt as exc:
    out = {"raised": type(exc).__name__, "message": str(exc),
           "notes": getattr(exc, "__notes__", [])}
sys.settrace(None)
out["injected"] = injected["state"] == 2
out["threads"] = [t.name for t in threading.enumerate() if t.name.startswith("asg-")]
print(json.dumps(out), flush=True)
sys.stdin.read()  # alive, as a notebook's kernel is, while the store is written by another
"""
)


@pytest.fixture
def sim() -> Iterator[tuple[Any, Any]]:
    with stuck_simulator() as running_world:
        yield running_world


def _start(running: Any, world: Any, tmp_path: Path, how: str, mode: str) -> Any:
    return start(
        running, world, tmp_path, _CHILD, how=how, mode=mode, grace=STOP_GRACE_S, hang=HANG_S
    )


@pytest.mark.parametrize("how", ["plain", "notebook", "asyncio_run"])
def test_a_second_sigint_inside_the_handling_of_the_first_still_stops_the_run(
    sim: tuple[Any, Any], tmp_path: Path, how: str
) -> None:
    running, world = sim
    child, db = _start(running, world, tmp_path, how, "race")
    lines = reader(child)
    try:
        polling(running, lines)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out = line(lines, 60)
        took = time.monotonic() - sent
        assert out["injected"], "the second SIGINT was not raised inside the handling"
        assert out.get("raised") == "KeyboardInterrupt", out
        assert took < PROMPT_S, f"the KeyboardInterrupt came {took:.1f} s after the SIGINT"
        assert out["threads"] == [], "collector thread left running after collect_sync raised"
        if how != "asyncio_run":  # there the task is cancelled: asyncio raises its own
            assert any("recorded interrupted" in note for note in out["notes"]), out["notes"]
        wrote = track_other(db, tmp_path)  # the store is free, the child still alive
        assert wrote.returncode == 0, wrote.stderr
    finally:
        end(child)
    statuses, stored = collect_runs(db)
    assert statuses == ["interrupted"]
    assert stored > 0  # what was answered before the interrupt is written


@pytest.mark.parametrize("how", ["plain", "notebook"])
def test_a_repeated_sigint_gives_up_on_a_hung_stop_after_a_bounded_wait_saying_so(
    sim: tuple[Any, Any], tmp_path: Path, how: str
) -> None:
    running, world = sim
    child, db = _start(running, world, tmp_path, how, "hang")
    lines = reader(child)
    try:
        polling(running, lines)
        child.send_signal(signal.SIGINT)
        assert line(lines, 30) == {"hanging": True}  # the stop is under way, and hangs
        time.sleep(0.3)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out = line(lines, HANG_S + 30)
        took = time.monotonic() - sent
        assert took < STOP_GRACE_S + 3.0, (
            f"collect_sync gave up {took:.1f} s after the repeated SIGINT ({out})"
        )
        assert took >= STOP_GRACE_S - 0.1, f"gave up at once ({took:.2f} s), no wait ({out})"
        assert out.get("raised") == "CollectNotStoppedError", out
        assert "could not be stopped" in out["message"], out["message"]
        assert "asg-collect" in out["message"] and str(db) in out["message"], out["message"]
        # not silent: the thread it names is indeed still there
        assert "asg-collect" in out["threads"], out
    finally:
        # the hung writer's pool thread is joined at exit (concurrent.futures): HANG_S at most
        end(child, HANG_S + 10)


def test_collect_not_stopped_error_is_a_keyboard_interrupt() -> None:
    from asg_audit.collector import CollectNotStoppedError

    assert issubclass(CollectNotStoppedError, KeyboardInterrupt)
