"""A collector run's numbers as shown: the progress snapshot (with its ETA floor and what
the pending tasks wait for), the progress line, when a log line is worth printing, and the
end summary's stats (`runs.stats`). Pure functions of the run's counts and tasks."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from asg_audit.pollnotfound import final_after
from asg_audit.polltask import PollTask
from asg_audit.pollwriter import CollectorSettings, CollectProgress, CollectSummary
from asg_audit.progress import format_eta
from asg_audit.ratelimit import TokenBucket
from asg_audit.schedule import SchedulePolicy

__all__ = [
    "HEARTBEAT_MIN_S",
    "LogGate",
    "PendingWait",
    "WaitingProgress",
    "collect_line",
    "last_poll_in",
    "new_stats",
    "pending_wait",
    "snapshot",
    "summary_stats",
]

# the progress line's ETA looks at every pending task's next poll only up to this many
ETA_SCAN_MAX: Final = 5000
# without a terminal, a line whose counts did not change is logged at most this often
HEARTBEAT_MIN_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class PendingWait:
    """What the pending tasks wait for, in wall seconds from now (None: not known).

    `last_poll_in_s`: until the last one's next poll (or its 404 grace window's end, or the
    closed gate's reopening): the ETA floor. `next_poll_in_s`: until the first one's next poll.
    `open_ended`: the pending tasks whose end no clock gives: asked at least once and not
    answering 404 (a 202 pending, an error); each may settle at any poll, or only expire at
    its deadline.
    """

    last_poll_in_s: float | None = None
    next_poll_in_s: float | None = None
    open_ended: int = 0


@dataclass(frozen=True, slots=True)
class WaitingProgress(CollectProgress):
    """A collector's progress with what its pending tasks wait for (`pending_wait`)."""

    # wall seconds until the first pending task's next poll (None: not known)
    first_poll_in_s: float | None = None
    # pending tasks asked before and not answering 404: when they end is not known
    open_ended: int = 0


def new_stats() -> dict[str, Any]:
    """Return a run's request counts, all zero (its answers by kind, retries, reversals)."""
    stats: dict[str, Any] = {
        k: 0
        for k in (
            "requests",
            "http_200",
            "http_202",
            "http_404",
            "http_429",
            "http_5xx",
            "http_other",
            "transport_errors",
            "unusable_bodies",
            "retries",
            "reversals",
        )
    }
    stats["control_probes"] = 0
    stats["http_other_statuses"] = {}  # status -> count, of `http_other`
    return stats


def snapshot(
    summary: CollectSummary,
    stats: Mapping[str, Any],
    pending: int,
    next_poll_in_s: float | PendingWait | None,
    parked: int = 0,
) -> CollectProgress:
    """Return the progress counts, in the summary's categories; given a `PendingWait`, a
    `WaitingProgress` that also says what the pending tasks wait for.

    `pending` counts the tasks still polled, `parked` those left for the next run: the line's
    `pending` is both, as the summary's and poll_state's are."""
    s, st = summary, stats
    counts = {
        "settled": s.settled,
        "pending": pending + parked,
        "parked": parked,
        "not_found": s.not_found,
        "expired": s.expired,
        "throttled": st["http_429"],
        "requests": st["requests"],
        "failed": s.failed,
        "transport_errors": st["transport_errors"],
        "server_errors": st["http_5xx"],
    }
    if isinstance(next_poll_in_s, PendingWait):
        wait = next_poll_in_s
        return WaitingProgress(
            **counts,
            next_poll_in_s=wait.last_poll_in_s,
            first_poll_in_s=wait.next_poll_in_s,
            open_ended=wait.open_ended if pending else 0,  # parked ones are not waiting
        )
    return CollectProgress(**counts, next_poll_in_s=next_poll_in_s)


def last_poll_in(
    now: float,
    clock0: float,
    wall0: float,
    gate: float,
    heap: list[tuple[float, int, str]],
    tasks: Mapping[str, PollTask],
    grace_s: float,
) -> float | None:
    """Return the wall seconds until the last pending task's next poll (a floor for the
    ETA: the slow tail waits for its polls whatever the rate), or None when not known.

    `clock0` and `wall0` are the run's start on its clock and on `time.monotonic`; `gate` is
    when the request gate reopens (-inf without one). No poll goes before a closed gate
    reopens, so the gate is a floor too (also for a heap too big to scan).
    """
    return pending_wait(now, clock0, wall0, gate, heap, tasks, grace_s).last_poll_in_s


def pending_wait(
    now: float,
    clock0: float,
    wall0: float,
    gate: float,
    heap: list[tuple[float, int, str]],
    tasks: Mapping[str, PollTask],
    grace_s: float,
) -> PendingWait:
    """Return what the pending tasks wait for (`PendingWait`), in wall seconds from now.

    Arguments as `last_poll_in`. A heap over `ETA_SCAN_MAX` is not scanned: only the closed
    gate is known then.
    """
    # clock seconds to wall seconds (a simulator's clock may run scaled)
    wall = time.monotonic() - wall0
    ratio = (now - clock0) / wall if wall > 1.0 else 1.0
    gated = gate > now
    latest = gate if gated else None
    first: float | None = None
    open_ended = 0
    if len(heap) <= ETA_SCAN_MAX:
        for at, version, task_id in heap:
            t = tasks[task_id]
            if t.version != version or t.state != "pending":
                continue
            # a task answering 404 is not final before its grace window ends
            end = final_after(t, at, grace_s)
            latest = end if latest is None else max(latest, end)
            first = at if first is None else min(first, at)
            if t.first_404_at is None and t.attempts > 0:
                open_ended += 1
        if gated:
            latest = None if latest is None else max(latest, gate)
            first = None if first is None else max(first, gate)
    if ratio <= 0:
        return PendingWait(open_ended=open_ended)

    def wall_s(at: float | None) -> float | None:
        return None if at is None else max(0.0, at - now) / ratio

    return PendingWait(wall_s(latest), wall_s(first), open_ended)


def collect_line(snap: CollectProgress, rate: float, throttled: bool) -> str:
    """Return the collector's progress line for `snap`, `rate` finished tasks per wall second
    (over the recent window) and whether 429s held the run back in that window.

    The ETA is `pending / rate`, never less than the wait for the last pending task's poll.
    With nothing finishing it is that wait only when the wait says when the tasks end (a 404
    grace window, a closed gate); `?` before anything finished, while 429s hold the run back,
    and while pending tasks keep answering: a `WaitingProgress` then says what they wait for,
    `ETA ? (3 pending, next poll in 55s)`, rather than count down to their next poll and
    start again.
    """
    done = snap.settled + snap.failed + snap.not_found + snap.expired
    # a final answer the normaliser rejects is taken back, so `done` can fall: never a
    # negative rate (nor `-0.0`)
    rate = rate if rate > 0 else 0.0
    active = snap.pending - snap.parked  # parked tasks wait for no poll of this run
    eta = active / rate if rate > 0 else None
    floor = snap.next_poll_in_s if active else None
    open_ended = snap.open_ended if isinstance(snap, WaitingProgress) else 0
    if eta is not None and floor is not None:
        # a throughput ETA says 0 s for a slow tail that waits for its next polls
        eta = max(eta, floor)
    elif eta is None and floor is not None and floor > 0:
        eta = floor if done > 0 and not throttled and not open_ended else None
    if not active:
        eta = 0.0
    text = (
        f"settled {snap.settled:,} | failed {snap.failed:,} | pending {snap.pending:,}"
        f" | not found {snap.not_found:,} | expired {snap.expired:,}"
        f" | throttled {snap.throttled:,} | 5xx {snap.server_errors:,}"
        f" | transport errors {snap.transport_errors:,}"
        f" | {rate:,.1f} tasks/s | ETA {format_eta(eta)}"
    )
    if eta is None and open_ended and active:
        first = snap.first_poll_in_s if isinstance(snap, WaitingProgress) else None
        if first is not None:
            text += f" ({active:,} pending, next poll in {format_eta(first)})"
    return text


class LogGate:
    """Whether a progress log line (no terminal) is worth printing: every `every_s` when its
    counts changed, else only every `heartbeat_s` (at least `HEARTBEAT_MIN_S`): a run waiting
    on a few pending tasks does not repeat the same line every 10 s."""

    def __init__(self, every_s: float, heartbeat_s: float | None = None) -> None:
        self.every_s = every_s
        self.heartbeat_s = max(HEARTBEAT_MIN_S, 6 * every_s) if heartbeat_s is None else heartbeat_s
        self._last_at: float | None = None
        self._last_counts: tuple[int, ...] | None = None

    def due(self, snap: CollectProgress, now: float) -> bool:
        """Whether to log `snap` at `now` (monotonic seconds); if so, it counts as logged."""
        counts = (
            snap.settled,
            snap.failed,
            snap.pending,
            snap.not_found,
            snap.expired,
            snap.throttled,
            snap.server_errors,
            snap.transport_errors,
        )
        if self._last_at is not None:
            wait = self.every_s if counts != self._last_counts else self.heartbeat_s
            if now - self._last_at < wait:
                return False
        self._last_at, self._last_counts = now, counts
        return True


def summary_stats(
    summary: CollectSummary,
    stats: Mapping[str, Any],
    policy: SchedulePolicy,
    settings: CollectorSettings,
    bucket: TokenBucket,
    cpu_s: float,
    wall_s: float,
) -> dict[str, Any]:
    """Return the run's stats as recorded (`runs.stats`): its counts, settings and costs."""
    s = summary
    out = {
        **stats,
        "schedule": getattr(policy, "name", type(policy).__name__),
        "max_rps": settings.max_rps,
        "concurrency": settings.concurrency,
        "tracked": s.tracked,
        "already_final": s.already_final,
        "rechecked": s.rechecked,
        "skipped_unsafe_ids": s.skipped_unsafe_ids,
        "settled": s.settled,
        "reversed": s.reversed,
        "failed": s.failed,
        "not_found": s.not_found,
        "expired": s.expired,
        "pending": s.pending,
        "throttle_events": bucket.throttle_events,
        "final_rate": round(bucket.rate, 3),
        "cpu_s": round(cpu_s, 4),
        "wall_s": round(wall_s, 3),
    }
    if s.failure is not None:
        out["error"] = s.failure  # what `asg-audit runs` shows
    return out
