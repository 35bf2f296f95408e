"""A collector run's numbers as shown: the progress snapshot (with its ETA floor) and the end
summary's stats (`runs.stats`). Pure functions of the run's counts and tasks."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from asg_audit.pollnotfound import final_after
from asg_audit.polltask import PollTask
from asg_audit.pollwriter import CollectorSettings, CollectProgress, CollectSummary
from asg_audit.ratelimit import TokenBucket
from asg_audit.schedule import SchedulePolicy

__all__ = ["last_poll_in", "new_stats", "snapshot", "summary_stats"]

# the progress line's ETA looks at every pending task's next poll only up to this many
ETA_SCAN_MAX: Final = 5000


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
    summary: CollectSummary, stats: Mapping[str, Any], pending: int, next_poll_in_s: float | None
) -> CollectProgress:
    """Return the progress counts, in the summary's categories."""
    s, st = summary, stats
    return CollectProgress(
        settled=s.settled,
        pending=pending,
        not_found=s.not_found,
        expired=s.expired,
        throttled=st["http_429"],
        requests=st["requests"],
        failed=s.failed,
        transport_errors=st["transport_errors"],
        server_errors=st["http_5xx"],
        next_poll_in_s=next_poll_in_s,
    )


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
    # clock seconds to wall seconds (a simulator's clock may run scaled)
    wall = time.monotonic() - wall0
    ratio = (now - clock0) / wall if wall > 1.0 else 1.0
    latest = gate if gate > now else None
    if len(heap) <= ETA_SCAN_MAX:
        # a task answering 404 is not final before its grace window ends
        latest = max(
            (
                final_after(tasks[task_id], at, grace_s)
                for at, version, task_id in heap
                if tasks[task_id].version == version and tasks[task_id].state == "pending"
            ),
            default=latest,
        )
        if latest is not None and gate > now:
            latest = max(latest, gate)
    if latest is None or ratio <= 0:
        return None
    return max(0.0, latest - now) / ratio


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
