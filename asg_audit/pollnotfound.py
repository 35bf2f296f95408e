"""A collector run's 404 rules for one task: the grace window and when the task is `not_found`.

A task is `not_found` after `not_found_grace_s` of 404s (from our first 404, two answers at
least), once the run trusts 404s (`asg_audit.apitrust`); until then it is held, and its 404
bodies are kept back (`kept_back`): if the base URL is wrong they are no evidence about the
task. The 404 state is decided by our first 404 and the grace window, not the deadline.
"""

from __future__ import annotations

from dataclasses import dataclass

from asg_audit import gateway as gw
from asg_audit.model import Source
from asg_audit.normalize import RawRecord
from asg_audit.polltask import PollTask
from asg_audit.pollwriter import dt_utc

__all__ = ["NotFoundVerdict", "final_after", "judge_404", "kept_back"]


@dataclass(frozen=True, slots=True)
class NotFoundVerdict:
    """What a 404 means for its task."""

    grace_end: float  # our first 404 + the grace window: not `not_found` before
    store: bool = False  # the 404 is evidence to keep (the first, or the one making it final)
    not_found: bool = False  # the task is `not_found` now
    held: bool = False  # it would be, but the run does not believe 404s yet


def judge_404(
    t: PollTask, sent_at: float, now: float, grace_s: float, trusted: bool
) -> NotFoundVerdict:
    """Count a 404 about `t` (asked at `sent_at`) and return what it means; `trusted` is
    whether the run believes 404s yet."""
    t.polls += 1
    t.errors = 0
    first = t.first_404_at is None
    if t.first_404_at is None:
        t.first_404_at = sent_at
    grace_end = t.first_404_at + grace_s
    if not first and now >= grace_end:
        if trusted:
            return NotFoundVerdict(grace_end, store=True, not_found=True)
        return NotFoundVerdict(grace_end, held=True)
    return NotFoundVerdict(grace_end, store=first)


def final_after(t: PollTask, at: float, grace_s: float) -> float:
    """Return the earliest a pending task polled next at `at` can be final: a task answering
    404 is not before its grace window ends."""
    return at if t.first_404_at is None else max(at, t.first_404_at + grace_s)


def kept_back(outcome: gw.NotFound, task_id: str, now: float) -> RawRecord:
    """Return the record of a 404 the run does not believe yet, kept back until it does."""
    return RawRecord(
        body=outcome.body,
        source=Source.POLL,
        origin=outcome.origin,
        observed_at=dt_utc(now),
        task_id_hint=task_id,
        http_status=404,
    )
