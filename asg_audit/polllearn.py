"""What a collector run teaches its schedule about settled tasks' latencies.

A settled task's latency is learned from its answer at once when the answer says when it
settled (`from_answer`), else from the normalised record after the write (`after_write`);
learning early is taken back when the normaliser rejects that answer (`take_back`). A settled
task stays in the schedule's risk set until its latency is learned; a task finished any other
way leaves it at once. Latencies are on the API's clock: its `settled_at` minus its
`created_at` (`PollTask.api_created_at`, never the created_at the clock probe moved to ours).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from asg_audit.polltask import PollTask
from asg_audit.schedule import SchedulePolicy

__all__ = ["LatencyLearner"]


class LatencyLearner:
    """The settled tasks whose latency the schedule has yet to learn, or learned early."""

    def __init__(self, policy: SchedulePolicy) -> None:
        self.policy = policy
        # settled tasks whose latency is to be learned after the write (from its record)
        self.unlearned: set[str] = set()
        # settled tasks whose latency the schedule learned from the answer itself (task id ->
        # latency), so that learning does not wait for the write; taken back if the normaliser
        # rejects that answer
        self.early: dict[str, float] = {}
        self._retract = getattr(policy, "retract_settled", None)

    def finished(self, t: PollTask) -> None:
        """`t` was made final (or resting) now."""
        if t.state == "done" and not t.reversed:
            # stays in the policy's risk set until its latency is learned after the write
            self.unlearned.add(t.facts.task_id)
        else:
            self.policy.observe_finished(t.facts)

    def from_answer(self, t: PollTask, settled_at: str | None) -> None:
        """Learn a settled task's latency from its answer now, instead of after the write.

        Only a timestamp with a UTC offset, read the way the normaliser reads it, and a known
        creation time; anything else is learned from the normalised record after the write.
        """
        if settled_at is None or t.api_created_at is None or self._retract is None:
            return
        try:
            when = datetime.fromisoformat(settled_at)
        except ValueError:
            return
        if when.tzinfo is None:
            return
        # both on the API's clock (facts.created_at may be on ours, see `asg_audit.pollclock`)
        latency = when.timestamp() - t.api_created_at
        self.policy.observe_settled(t.facts, latency)
        self.early[t.facts.task_id] = latency
        self.unlearned.discard(t.facts.task_id)

    def take(self) -> set[str]:
        """Return the settled tasks still to learn, for the write under way (and forget them)."""
        done_ids, self.unlearned = self.unlearned, set()
        return done_ids

    def after_write(
        self,
        latencies: Iterable[tuple[str, float, float | None]],
        done_ids: set[str],
        tasks: Mapping[str, PollTask],
    ) -> None:
        """Learn from a write's settled records (task id, settled_at, created_at); `done_ids`
        is what `take` returned for it."""
        for task_id, settled_at, created_at in latencies:
            t = tasks.get(task_id)
            if t is None or self.early.pop(task_id, None) is not None:
                continue  # learned from the answer already
            # the API's clock, as settled_at is (not facts.created_at, maybe moved to ours)
            created = t.api_created_at if t.api_created_at is not None else created_at
            if created is not None:
                self.policy.observe_settled(t.facts, settled_at - created)
                done_ids.discard(task_id)
        # settled without a usable latency: out of the risk sets
        for task_id in done_ids:
            t = tasks.get(task_id)
            if t is not None and t.state == "done":
                self.policy.observe_finished(t.facts)

    def take_back(self, t: PollTask) -> None:
        """The answer that made `t` final was rejected: unlearn a latency learned from it."""
        latency = self.early.pop(t.facts.task_id, None)
        if latency is not None and self._retract is not None:
            self._retract(t.facts, latency)
