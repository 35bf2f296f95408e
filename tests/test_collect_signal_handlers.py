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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _collect_child import CHILD_SETUP, answers, start, stuck_simulator, wait_for_answers

from asg_audit.store import open_store

# `how`: collect_sync (handle_signals=True from the main thread) or asyncio_run (asyncio.run of
# collect directly). `stop`: the parent's SIGTERM stops the run (it lasts 3,000 s), else the run
# ends by itself (2 s). Then the child signals itself: its own handlers must answer, and it lives.
_CHILD = (
    CHILD_SETUP
    + r"""
import asyncio, os, signal, time
from asg_audit.collector import collect, collect_sync

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
)


@pytest.fixture
def sim() -> Iterator[tuple[Any, Any]]:
    with stuck_simulator(seed=5, tasks=120) as running_world:
        yield running_world


def _start(running: Any, world: Any, tmp_path: Path, how: str, stop: bool) -> Any:
    return start(running, world, tmp_path, _CHILD, stdin=False, stderr=True, how=how, stop=stop)


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
    before = answers(running)
    child, db = _start(running, world, tmp_path, how, stop)
    if stop:
        wait_for_answers(running, before, 0.3, child)
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
