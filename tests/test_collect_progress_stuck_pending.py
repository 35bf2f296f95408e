"""The collect progress ETA with a few tasks that keep answering pending.

With 3 tasks that stayed pending, the ETA counted down to about 5 s and started again at 55 s,
for 15 minutes: it was the wait for their next poll, shown as if they would end then. Nothing
says when such a task ends (it may settle at any poll, or expire at its deadline), so the line
says `ETA ?` and what they wait for, `(3 pending, next poll in 55s)`. Without a terminal, a
line whose counts did not change is logged at a slow heartbeat, not every 10 s.
"""

from __future__ import annotations

import math

import pytest

from asg_audit.pollprogress import (
    HEARTBEAT_MIN_S,
    LogGate,
    PendingWait,
    WaitingProgress,
    collect_line,
    last_poll_in,
    new_stats,
    pending_wait,
    snapshot,
)
from asg_audit.polltask import PollTask
from asg_audit.pollwriter import CollectProgress, CollectSummary
from asg_audit.schedule import TaskFacts

NOW = 1000.0


def _tasks(
    entries: list[tuple[str, float, float | None, int]],
) -> tuple[list[tuple[float, int, str]], dict[str, PollTask]]:
    """(task id, next poll at, first 404 at, attempts) -> the run's heap and tasks."""
    heap, tasks = [], {}
    for task_id, at, first_404, attempts in entries:
        t = PollTask(facts=TaskFacts(task_id, None, None, None), next_poll_at=at)
        t.first_404_at = first_404
        t.attempts = attempts
        tasks[task_id] = t
        heap.append((at, t.version, task_id))
    return heap, tasks


def _wait(
    entries: list[tuple[str, float, float | None, int]], gate: float = -math.inf
) -> PendingWait:
    heap, tasks = _tasks(entries)
    # clock0 = NOW and a wall start just now: clock seconds are wall seconds
    import time

    return pending_wait(NOW, NOW, time.monotonic(), gate, heap, tasks, 60.0)


def _snap(wait: PendingWait | None, **counts: int) -> CollectProgress:
    summary = CollectSummary(run_id="r", status="running")
    for key in ("settled", "failed", "not_found", "expired"):
        setattr(summary, key, counts.get(key, 0))
    stats = new_stats()
    stats["http_429"] = counts.get("throttled", 0)
    return snapshot(summary, stats, counts.get("pending", 0), wait)


STUCK = [
    ("tsk_a", NOW + 55.0, None, 30),
    ("tsk_b", NOW + 58.0, None, 30),
    ("tsk_c", NOW + 57.0, None, 31),
]


def test_stuck_pending_tasks_say_what_they_wait_for_not_a_countdown() -> None:
    wait = _wait(STUCK)
    assert wait.open_ended == 3
    assert wait.next_poll_in_s == pytest.approx(55.0, abs=0.5)
    assert wait.last_poll_in_s == pytest.approx(58.0, abs=0.5)
    snap = _snap(wait, settled=2991, failed=3, not_found=3, pending=3)
    assert isinstance(snap, WaitingProgress)
    line = collect_line(snap, 0.0, throttled=False)
    assert line.endswith("| 0.0 tasks/s | ETA ? (3 pending, next poll in 55s)"), line
    assert line.startswith("settled 2,991 | failed 3 | pending 3 | not found 3 | expired 0")


def test_a_404_grace_window_is_still_an_eta() -> None:
    """Tasks answering 404 end when their grace window does: that is a real ETA."""
    wait = _wait([("tsk_n0", NOW + 10.0, NOW - 30.0, 4), ("tsk_n1", NOW + 10.0, NOW - 20.0, 3)])
    assert wait.open_ended == 0
    line = collect_line(_snap(wait, settled=5, pending=2), 0.0, throttled=False)
    assert line.endswith("ETA 40s"), line


def test_throughput_eta_keeps_the_floor_of_the_last_poll() -> None:
    wait = _wait(STUCK)
    line = collect_line(_snap(wait, settled=100, pending=3), 10.0, throttled=False)
    assert line.endswith("ETA 57s") or line.endswith("ETA 58s"), line


def test_nothing_answered_yet_is_a_plain_unknown() -> None:
    wait = _wait([("tsk_a", NOW + 5.0, None, 0)])
    assert wait.open_ended == 0  # never asked yet
    line = collect_line(_snap(wait, pending=1), 0.0, throttled=False)
    assert line.endswith("ETA ?"), line  # no wait named: none answered pending yet


def test_a_closed_gate_delays_the_next_poll() -> None:
    wait = _wait(STUCK, gate=NOW + 90.0)
    assert wait.next_poll_in_s == pytest.approx(90.0, abs=0.5)
    assert last_poll_in(
        NOW, NOW, __import__("time").monotonic(), NOW + 90.0, *_tasks(STUCK), 60.0
    ) == pytest.approx(90.0, abs=0.5)


def test_a_plain_snapshot_reads_as_before() -> None:
    """A `CollectProgress` without the wait (built by hand) keeps the old ETA floor."""
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
    assert collect_line(snap, 0.0, throttled=False).endswith("ETA 40s")
    assert not isinstance(_snap(None, pending=1), WaitingProgress)


def test_unchanged_counts_are_logged_at_a_heartbeat_only() -> None:
    gate = LogGate(10.0)
    assert gate.heartbeat_s == HEARTBEAT_MIN_S
    stuck = _snap(_wait(STUCK), settled=2991, failed=3, not_found=3, pending=3)
    # 15 minutes of the same counts, a snapshot every 0.5 s
    logged = [t / 2 for t in range(1800) if gate.due(stuck, t / 2)]
    assert len(logged) == 15  # once a minute, not 81 times
    assert logged[:2] == [0.0, 60.0]
    # a change is logged at the usual period
    moved = _snap(_wait(STUCK[:2]), settled=2992, failed=3, not_found=3, pending=2)
    assert gate.due(moved, 900.0)
    assert not gate.due(moved, 905.0)
    again = _snap(_wait(STUCK[:1]), settled=2993, failed=3, not_found=3, pending=1)
    assert gate.due(again, 910.0)
