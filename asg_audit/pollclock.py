"""The clock probe of a collector run: whether the API's clock is ahead of ours.

Tasks tracked with a `created_at` in our future: the earliest is asked at once (the clock
probe), before any other poll and whatever a replan decides meanwhile; an error answer (429,
5xx, transport) asks it again with the usual backoff. An answer means the API's clock is ahead
of ours, so they all count as created now: every plan from then on (the replan at once, the
replans when Adaptive learns, the second look before a first poll) starts from that time,
while latencies are still learned on the API's clock (its `settled_at` minus its
`created_at`, `PollTask.api_created_at`). A 404 means they are not created yet, and each is
polled from its `created_at` as planned.

`ClockProbe` holds which task is the probe and decides from its answer; the run
(`asg_audit.pollrun`) counts the request and replans.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from typing import Final, Literal

from asg_audit import gateway as gw
from asg_audit.polltask import PollTask, policy_next
from asg_audit.schedule import SchedulePolicy

__all__ = ["ClockProbe", "not_created"]

# a tracked created_at this far in our future asks whether the API's clock is ahead of ours
CLOCK_AHEAD_MARGIN_S: Final = 5.0

ProbeVerdict = Literal["ahead", "not_created", "none"]


class ClockProbe:
    """Which task (if any) is the clock probe, and what its answer means."""

    def __init__(self) -> None:
        self.task_id: str | None = None  # the task created in our future asked at once

    def plan(self, tasks: Iterable[PollTask], now: float) -> PollTask | None:
        """Tasks created in our future: make the earliest the probe, due now, and return it
        (to be pushed), or None when there are none.

        Either the API's clock is ahead of ours (the task exists: every such task was created
        by now on our clock, and waiting out the difference would delay them all), or the
        task is not created yet (a 404: the others keep their planned polls). See `answered`.
        """
        ahead = [
            t
            for t in tasks
            if t.facts.created_at is not None and t.facts.created_at > now + CLOCK_AHEAD_MARGIN_S
        ]
        if not ahead:
            return None
        probe = min(ahead, key=lambda t: t.facts.created_at or 0.0)
        self.task_id = probe.facts.task_id
        probe.next_poll_at = now
        return probe

    def is_probe(self, t: PollTask) -> bool:
        return t.facts.task_id == self.task_id

    def first(self, t: PollTask) -> bool:
        """Whether `t` is the clock probe waiting to be asked at once (no error retry)."""
        return t.facts.task_id == self.task_id and t.errors == 0

    def heap_at(self, t: PollTask, now: float) -> float:
        """Return `t`'s place in the run's heap: the probe due goes before every other poll
        due (a backlog of tasks due since their created_at would otherwise go first, and a
        replan could move it meanwhile)."""
        at = t.next_poll_at
        if self.first(t) and at <= now:
            return -math.inf
        return at

    def answered(
        self,
        t: PollTask,
        outcome: gw.Outcome,
        sent_at: float,
        now: float,
        tasks: Iterable[PollTask],
        policy: SchedulePolicy,
    ) -> ProbeVerdict:
        """Return what the probe `t`'s answer says: `ahead` (every pending task created in our
        future now counts as created now, told to `policy`: the run replans), `not_created`
        (a 404 of a task not created yet, see `not_created`) or `none` (nothing about the
        clocks: handled as an answer like any other).

        An error (429, 5xx, transport, an unusable body) says nothing about the clocks: the
        task stays the probe and is asked again after the usual backoff.
        """
        if not isinstance(outcome, gw.Ready | gw.Pending | gw.NotFound):
            return "none"
        self.task_id = None
        if isinstance(outcome, gw.Ready | gw.Pending):
            # the API's clock is ahead: every task created in our future exists already
            for other in tasks:
                created = other.facts.created_at
                if other.state == "pending" and created is not None and created > now:
                    other.facts = replace(other.facts, created_at=now)
                    policy.observe_tracked(other.facts)
            return "ahead"
        created = t.facts.created_at
        if created is None or created <= sent_at:
            return "none"
        return "not_created"


def not_created(t: PollTask, http_status: int | None, now: float, policy: SchedulePolicy) -> None:
    """The probe `t` answered 404 before its created_at: it is polled as planned, its 404
    starting no grace and no deadline."""
    t.attempts += 1
    # the question was about the clocks, not the task: the schedule plans its first poll
    # from its created_at as if it was never asked (with `last_poll_at` set, a fallback
    # schedule polled it 5 s later and on, each a 404, and it went not_found when the
    # grace ran out, before the API had created it)
    t.last_poll_at = None
    t.last_http_status = http_status
    t.errors = 0
    t.deadline_at = math.inf
    t.next_poll_at = policy_next(policy, t, now)
