"""A collector run's tasks: each one's poll state (`PollTask`) and building them from the store.

poll_state.state: `pending`, `done` (settled), `failed` (a final status other than settled),
`not_found` (404s from our first 404 for longer than the grace window), `expired` (still
pending `deadline_s` after we first saw it, on our clock). `done` and `failed` are final;
`not_found` and `expired` rest until `next_poll_at` (a cool-down of 1 h, doubling at each
recheck up to 24 h, `rest_until`), then a later run polls them again. `parked` (in memory
only, stored `pending`) is a task past its deadline whose last request got no answer about it:
left for the next run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from asg_audit.model import is_safe_task_id
from asg_audit.pollwriter import CollectSummary, LoadedState, epoch_of
from asg_audit.schedule import SchedulePolicy, TaskFacts

__all__ = [
    "FINAL_STATES",
    "RESTING_STATES",
    "PollTask",
    "load_tasks",
    "policy_next",
    "rest_until",
    "summary_key",
]

FINAL_STATES: Final = frozenset({"done", "failed"})
# polled again by a later run once their cool-down (`next_poll_at`) has passed
RESTING_STATES: Final = frozenset({"not_found", "expired"})
RECHECK_BASE_S: Final = 3600.0
RECHECK_CAP_S: Final = 86400.0


@dataclass(slots=True)
class PollTask:
    facts: TaskFacts  # created_at on our clock once the clock probe found the API's ahead
    # the created_at tracked (the API's clock): latencies are settled_at minus this one
    api_created_at: float | None = None
    deadline_at: float = math.inf  # first seen (or first polled) + deadline_s, our clock
    next_poll_at: float = 0.0
    state: str = "pending"
    attempts: int = 0  # requests sent (poll_state.attempts)
    polls: int = 0  # answers about the task (200/202/404): what schedules count
    last_poll_at: float | None = None
    last_http_status: int | None = None
    first_404_at: float | None = None
    stored_first_404_at: float | None = None  # what poll_state holds
    rest_s: float | None = None  # the last cool-down of a rechecked not_found/expired task
    errors: int = 0  # consecutive failed attempts
    rejected: int = 0  # final answers the normaliser rejected (their retries back off)
    stored_pending: bool = False
    final_key: tuple[str, datetime] | None = None  # the record that made the task final
    version: int = 0
    # made `done` by an answer that it is not settled although the store saw it settled (a
    # reversal, recorded as a conflict of its result): counted apart from the settled
    reversed: bool = False


def policy_next(policy: SchedulePolicy, t: PollTask, now: float) -> float:
    """Return the policy's next poll time for a task."""
    return policy.next_poll_at(t.facts, attempts=t.polls, last_poll_at=t.last_poll_at, now=now)


def rest_until(t: PollTask, now: float) -> float:
    """Return when a task made `not_found` or `expired` now is due for a recheck (a later run
    asks again: a stuck task may settle late, a 404 may have been ours)."""
    rest = RECHECK_BASE_S if t.rest_s is None else 2 * t.rest_s
    return now + min(RECHECK_CAP_S, max(RECHECK_BASE_S, rest))


def summary_key(t: PollTask) -> str:
    """Return the summary's counter of a finished task."""
    if t.reversed:
        return "reversed"
    return {"done": "settled", "failed": "failed", "not_found": "not_found"}.get(t.state, t.state)


def load_tasks(
    loaded: LoadedState,
    now: float,
    policy: SchedulePolicy,
    deadline_s: float,
    summary: CollectSummary,
) -> dict[str, PollTask]:
    """Return the tasks a run polls (task id -> task, in the store's order), from what it holds.

    Skipped: unsafe ids, final tasks and resting ones not due for a recheck yet (counted in
    `summary`). Each task returned is told to `policy` (`observe_tracked`), and has its first
    poll planned.
    """
    known = {r["task_id"]: r for r in loaded.state.iter_rows(named=True)}
    first_seen = loaded.first_seen
    tasks: dict[str, PollTask] = {}
    for row in loaded.subs.iter_rows(named=True):
        task_id = row["task_id"]
        if not isinstance(task_id, str) or not is_safe_task_id(task_id):
            summary.skipped_unsafe_ids += 1
            continue
        if task_id in tasks:
            continue
        prior = known.get(task_id)
        rest_s = None
        if prior is not None and task_id in loaded.unproven_final:
            prior = {**prior, "state": "pending", "next_poll_at": None}
        if prior is not None and prior["state"] in FINAL_STATES:
            summary.already_final += 1
            continue
        if prior is not None and prior["state"] in RESTING_STATES:
            due = epoch_of(prior["next_poll_at"])
            if due is not None and due > now:
                summary.already_final += 1  # resting: not due for a recheck yet
                continue
            # due, or made final by a version without rechecks (no next_poll_at)
            if due is not None:
                rest_s = due - (epoch_of(prior["updated_at"]) or due)
            summary.rechecked += 1
        created = epoch_of(row.get("created_at"))
        facts = TaskFacts(task_id, created, row.get("consensus_threshold"), row.get("task_type"))
        t = PollTask(facts=facts, api_created_at=created, rest_s=rest_s)
        seen = first_seen.get(task_id)
        if seen is not None:
            t.deadline_at = seen + deadline_s
        if prior is not None:
            t.attempts = int(prior["attempts"] or 0)
            t.first_404_at = epoch_of(prior["first_404_at"])
            t.stored_first_404_at = t.first_404_at
            t.last_http_status = prior["last_http_status"]
            # only answers about the task count (attempts also counts 429s, 5xx and
            # transport errors): the answers stored (repeated 202s are not, so at least
            # one when the last request or a 404 was an answer); the first 202 is stored
            # unless one is already
            stored, t.stored_pending = loaded.answers.get(task_id, (0, False))
            answered = t.last_http_status in (200, 202, 404) or t.first_404_at is not None
            t.polls = max(stored, 1 if answered else 0)
            updated = epoch_of(prior["updated_at"])
            if t.attempts and updated is not None:
                # never in our future (a clock set back): the next poll would wait for it
                t.last_poll_at = min(updated, now)
            t.next_poll_at = epoch_of(prior["next_poll_at"]) or now
        else:
            t.next_poll_at = policy_next(policy, t, now)
        tasks[task_id] = t
        policy.observe_tracked(facts)
    return tasks
