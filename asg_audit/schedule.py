"""Poll schedules: pure policies that decide when to ask about a task next.

No clock reads and no I/O here (the hishel style): the collector passes `now` in and gets a time
back, so every policy is tested with plain numbers. Times are epoch seconds (or any consistent
seconds, e.g. simulated ones).

- `FixedInterval`: what the official SDK's `poll_result(interval=5)` does: every 5 s.
- `DocumentedBackoff`: the docs' strategy: first poll 5 s after creation, then 5, 10, 20, ...
  seconds apart, capped at 60 s.
- `Adaptive`: learns the settlement-latency distribution online (Kaplan-Meier, so tasks still
  pending count as censored instead of biasing the estimate towards fast tasks), per
  (threshold, task type) when that group has enough settled tasks, else per threshold, else
  pooled, else it falls back to `DocumentedBackoff`. It puts polls at quantiles of that
  distribution (where settlements are likely), never closer than 5 s for one task, never further
  apart than `max_gap` inside the bulk of the distribution, and keeps a tail schedule (gaps
  doubling up to 60 s) so that slow tasks are still found.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np

__all__ = [
    "DEFAULT_MIN_INTERVAL_S",
    "Adaptive",
    "DocumentedBackoff",
    "FixedInterval",
    "SchedulePolicy",
    "TaskFacts",
    "make_policy",
    "simulate_polls",
]

DEFAULT_MIN_INTERVAL_S: Final = 5.0
DEFAULT_FIRST_DELAY_S: Final = 5.0
DEFAULT_CAP_S: Final = 60.0
# Quantiles of the latency distribution where Adaptive polls: about 2.3 polls per task for a
# lognormal like the service's, with every gap inside the bulk at most `max_gap`.
DEFAULT_QUANTILES: Final = (0.3, 0.6, 0.85, 0.95, 0.99)
DEFAULT_MAX_GAP_S: Final = 20.0
DEFAULT_MIN_SAMPLES: Final = 25
_HORIZON_S: Final = 6 * 3600  # the tail plan is spelled out this far, then continues at the cap


@dataclass(frozen=True, slots=True)
class TaskFacts:
    """What a schedule may know about a task: when it was created and how it was submitted."""

    task_id: str
    created_at: float | None = None
    threshold: int | None = None
    task_type: str | None = None


class SchedulePolicy(Protocol):
    """A poll policy. `next_poll_at` may return a time before `now`: poll at once then."""

    name: str

    def next_poll_at(
        self, task: TaskFacts, *, attempts: int, last_poll_at: float | None, now: float
    ) -> float: ...

    def observe_tracked(self, task: TaskFacts) -> None: ...

    def observe_pending(self, task: TaskFacts, at: float) -> None: ...

    def observe_settled(self, task: TaskFacts, latency_s: float) -> None: ...

    def observe_finished(self, task: TaskFacts) -> None: ...


class _Stateless:
    """Policies that learn nothing ignore the observations."""

    def observe_tracked(self, task: TaskFacts) -> None:
        """Ignore: this policy does not learn."""

    def observe_pending(self, task: TaskFacts, at: float) -> None:
        """Ignore: this policy does not learn."""

    def observe_settled(self, task: TaskFacts, latency_s: float) -> None:
        """Ignore: this policy does not learn."""

    def observe_finished(self, task: TaskFacts) -> None:
        """Ignore: this policy does not learn."""

    def retract_settled(self, task: TaskFacts, latency_s: float) -> None:
        """Ignore: this policy does not learn."""


class FixedInterval(_Stateless):
    """Poll every `interval_s`, starting `interval_s` after creation (the SDK's loop)."""

    name = "fixed"

    def __init__(self, interval_s: float = DEFAULT_MIN_INTERVAL_S) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s

    def next_poll_at(
        self, task: TaskFacts, *, attempts: int, last_poll_at: float | None, now: float
    ) -> float:
        """Return the time of the next poll."""
        if last_poll_at is None:
            if task.created_at is None:
                return now
            return max(now, task.created_at + self.interval_s)
        return last_poll_at + self.interval_s


class DocumentedBackoff(_Stateless):
    """First poll `first_s` after creation, then gaps of 5, 10, 20, ... seconds, capped."""

    name = "documented"

    def __init__(
        self,
        *,
        first_s: float = DEFAULT_FIRST_DELAY_S,
        base_s: float = DEFAULT_MIN_INTERVAL_S,
        cap_s: float = DEFAULT_CAP_S,
    ) -> None:
        if first_s < 0 or base_s <= 0 or cap_s < base_s:
            raise ValueError("need first_s >= 0 and 0 < base_s <= cap_s")
        self.first_s, self.base_s, self.cap_s = first_s, base_s, cap_s

    def gap_after(self, attempts: int) -> float:
        """Return the gap that follows the `attempts`-th poll (1-based): 5, 10, 20, ..., cap."""
        exponent = min(max(attempts, 1) - 1, 30)
        return min(self.cap_s, self.base_s * 2.0**exponent)

    def next_poll_at(
        self, task: TaskFacts, *, attempts: int, last_poll_at: float | None, now: float
    ) -> float:
        """Return the time of the next poll."""
        if last_poll_at is None:
            if task.created_at is None:
                return now
            return max(now, task.created_at + self.first_s)
        return last_poll_at + self.gap_after(attempts)


GroupKey = tuple[int | None, str | None]


@dataclass(slots=True)
class _Group:
    latencies: list[float]
    plan: list[float] | None = None  # poll offsets from creation, ascending
    fitted_events: int = -1
    fitted_at: float = -math.inf


class Adaptive:
    """Learned schedule; see the module docstring. Holds state, but reads no clock."""

    name = "adaptive"

    def __init__(
        self,
        *,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
        first_s: float = DEFAULT_FIRST_DELAY_S,
        max_gap_s: float = DEFAULT_MAX_GAP_S,
        tail_cap_s: float = DEFAULT_CAP_S,
        min_samples: int = DEFAULT_MIN_SAMPLES,
        refit_after_s: float = 30.0,
        fallback: SchedulePolicy | None = None,
    ) -> None:
        qs = sorted(quantiles)
        if not qs or qs[0] <= 0 or qs[-1] >= 1:
            raise ValueError("quantiles must lie strictly between 0 and 1")
        if min_interval_s < DEFAULT_MIN_INTERVAL_S:
            raise ValueError("Adaptive never polls one task more often than every 5 s")
        if max_gap_s < min_interval_s or tail_cap_s < min_interval_s:
            raise ValueError("max_gap_s and tail_cap_s must be at least min_interval_s")
        self.quantiles = tuple(qs)
        self.min_interval_s = min_interval_s
        self.first_s = max(first_s, 0.0)
        self.max_gap_s = max_gap_s
        self.tail_cap_s = tail_cap_s
        self.min_samples = min_samples
        self.refit_after_s = refit_after_s
        self.fallback: SchedulePolicy = fallback or DocumentedBackoff()
        self._groups: dict[GroupKey, _Group] = {}
        # bumped when a group first has enough data: times decided by the fallback (or by a
        # coarser group) are worth deciding again, see `collector`
        self.revision = 0
        # pending tasks with a known creation time: censored observations for Kaplan-Meier
        self._pending: dict[str, TaskFacts] = {}
        # the greatest age at which each pending task was seen pending: its censoring age. Not
        # `now - created_at`: a task may have settled since its last poll, unseen, and counting
        # it at risk until now would bias the estimate towards slow settlements.
        self._pending_age: dict[str, float] = {}
        # the same ages per group, so that a refit reads only its own group's tasks
        self._censored: dict[GroupKey, dict[str, float]] = {}
        # (threshold, task type) -> the group its plan comes from (None: the fallback). Only a
        # group reaching `min_samples` (a new `revision`) changes the answer: cached until then.
        self._resolved: dict[GroupKey, GroupKey | None] = {}
        self._resolved_revision = 0

    # -- learning --------------------------------------------------------------------------------

    def observe_tracked(self, task: TaskFacts) -> None:
        """Count a pending task in the risk sets (it is censored until it settles)."""
        if task.created_at is not None:
            self._pending[task.task_id] = task

    def observe_pending(self, task: TaskFacts, at: float) -> None:
        """Note that `task` was still pending at time `at` (a censored observation)."""
        if task.created_at is None or task.task_id not in self._pending:
            return
        age = at - task.created_at
        if age > self._pending_age.get(task.task_id, 0.0):
            self._pending_age[task.task_id] = age
            for key in self._keys(task):
                self._censored.setdefault(key, {})[task.task_id] = age

    def observe_settled(self, task: TaskFacts, latency_s: float) -> None:
        """Learn one settlement latency (`settled_at - created_at`, seconds)."""
        self._forget(task)
        if not math.isfinite(latency_s) or latency_s < 0:
            return
        for key in self._keys(task):
            group = self._groups.setdefault(key, _Group([]))
            group.latencies.append(latency_s)
            if len(group.latencies) == max(self.min_samples, 1):
                self.revision += 1

    def observe_finished(self, task: TaskFacts) -> None:
        """Drop a task that ended without a settlement (expired, not found) from the risk sets."""
        self._forget(task)

    def retract_settled(self, task: TaskFacts, latency_s: float) -> None:
        """Take back a latency learned with `observe_settled` (its answer proved unusable)."""
        for key in self._keys(task):
            group = self._groups.get(key)
            if group is None or latency_s not in group.latencies:
                continue
            enough = len(group.latencies) >= max(self.min_samples, 1)
            group.latencies.remove(latency_s)
            if enough and len(group.latencies) < max(self.min_samples, 1):
                self.revision += 1  # the group is no longer usable: decide again
                group.plan = None

    def _forget(self, task: TaskFacts) -> None:
        self._pending.pop(task.task_id, None)
        if self._pending_age.pop(task.task_id, None) is not None:
            for key in self._keys(task):
                self._censored.get(key, {}).pop(task.task_id, None)

    def samples(self, task: TaskFacts) -> int:
        """Return how many settled latencies the group used for `task` has (0: fallback)."""
        key = self._group_for(task)
        return 0 if key is None else len(self._groups[key].latencies)

    @staticmethod
    def _keys(task: TaskFacts) -> tuple[GroupKey, ...]:
        return ((task.threshold, task.task_type), (task.threshold, None), (None, None))

    def _group_for(self, task: TaskFacts) -> GroupKey | None:
        if self._resolved_revision != self.revision:
            self._resolved.clear()
            self._resolved_revision = self.revision
        fine = (task.threshold, task.task_type)
        if fine in self._resolved:
            return self._resolved[fine]
        resolved: GroupKey | None = None
        for key in self._keys(task):
            group = self._groups.get(key)
            if group is not None and len(group.latencies) >= self.min_samples:
                resolved = key
                break
        self._resolved[fine] = resolved
        return resolved

    # -- planning --------------------------------------------------------------------------------

    def plan_for(self, task: TaskFacts, *, now: float) -> list[float] | None:
        """Return the poll offsets (seconds after creation) for `task`'s group, or None."""
        key = self._group_for(task)
        if key is None:
            return None
        group = self._groups[key]
        n = len(group.latencies)
        stale = n >= group.fitted_events * 1.1 + 5 or now - group.fitted_at >= self.refit_after_s
        if group.plan is None or stale:
            censored = list(self._censored.get(key, {}).values())
            group.plan = self.build_plan(group.latencies, censored)
            group.fitted_events, group.fitted_at = n, now
        return group.plan

    def build_plan(self, latencies: Sequence[float], censored: Sequence[float] = ()) -> list[float]:
        """Return poll offsets after creation from settled latencies and censored ages.

        Polls go at the estimated quantiles, at most `max_gap` apart. Quantiles the data cannot
        reach yet (early in a run, most tasks are younger than the slow settlements) are not
        guessed: the plan keeps `max_gap` steps up to the oldest age seen (the plan is refitted
        long before a task gets there), and only then starts the tail, so slow tasks are found.
        """
        points = [q for q in kaplan_meier_quantiles(latencies, censored, self.quantiles) if q > 0]
        offsets: list[float] = []
        for point in points:
            point = max(point, self.first_s)
            if not offsets:
                offsets.append(point)
                continue
            self._fill_to(offsets, point)
        if not offsets:
            offsets.append(self.first_s)
        if len(points) < len(self.quantiles):
            reach = max(max(latencies, default=0.0), max(censored, default=0.0))
            self._fill_to(offsets, reach + self.max_gap_s)
        # tail: keep looking for slow tasks, a first gap of max_gap (the last few percent are
        # still found as quickly as the bulk), then gaps doubling up to the cap
        gap = self.max_gap_s / 2
        while offsets[-1] < _HORIZON_S:
            gap = min(self.tail_cap_s, gap * 2)
            offsets.append(offsets[-1] + gap)
        return offsets

    def _fill_to(self, offsets: list[float], point: float) -> None:
        """Append `point` to `offsets`, with even steps of at most `max_gap` before it."""
        start = offsets[-1]  # read once: `extend` below grows the list as it goes
        gap = point - start
        if gap < self.min_interval_s:
            return
        steps = math.ceil(gap / self.max_gap_s)
        offsets.extend([start + gap * k / steps for k in range(1, steps + 1)])

    def next_poll_at(
        self, task: TaskFacts, *, attempts: int, last_poll_at: float | None, now: float
    ) -> float:
        """Return the time of the next poll (before `now` means: poll at once)."""
        plan = None if task.created_at is None else self.plan_for(task, now=now)
        if plan is None or task.created_at is None:
            return self.fallback.next_poll_at(
                task, attempts=attempts, last_poll_at=last_poll_at, now=now
            )
        created = task.created_at
        if last_poll_at is None:
            return max(now, created + plan[0])
        earliest = last_poll_at + self.min_interval_s - created
        i = bisect.bisect_left(plan, earliest)
        if i < len(plan):
            return created + plan[i]
        return max(last_poll_at + self.tail_cap_s, created + earliest)


def kaplan_meier_quantiles(
    latencies: Sequence[float], censored: Sequence[float], quantiles: Sequence[float]
) -> list[float]:
    """Return the latency quantiles estimated by Kaplan-Meier on a 1-second grid.

    `censored` are ages of tasks still pending (their latency is longer). A quantile the data
    cannot reach yet (too much censored mass) is left out: the tail schedule covers it.
    """
    if not latencies:
        return []
    events = np.asarray(latencies, dtype=np.float64)
    cens = np.asarray(censored, dtype=np.float64)
    horizon = int(min(_HORIZON_S, max(events.max(), cens.max() if cens.size else 0.0))) + 2
    e = np.bincount(np.clip(events, 0, horizon - 1).astype(np.int64), minlength=horizon)
    c = np.bincount(np.clip(cens, 0, horizon - 1).astype(np.int64), minlength=horizon)
    # at risk in bin a: every task whose latency or censoring age is >= a
    at_risk = np.cumsum((e + c)[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        hazard = np.where(at_risk > 0, e / np.maximum(at_risk, 1), 0.0)
    cdf = 1.0 - np.cumprod(1.0 - hazard)
    out = []
    for q in quantiles:
        idx = int(np.searchsorted(cdf, q - 1e-12))
        if idx < horizon and cdf[idx] >= q - 1e-12:
            out.append(float(idx + 1))  # settled by the end of that second
    return out


def make_policy(name: str) -> SchedulePolicy:
    """Return a fresh policy by its CLI name: fixed, documented or adaptive."""
    policies: dict[str, type[FixedInterval] | type[DocumentedBackoff] | type[Adaptive]] = {
        "fixed": FixedInterval,
        "documented": DocumentedBackoff,
        "adaptive": Adaptive,
    }
    if name not in policies:
        raise ValueError(f"unknown schedule {name!r}: expected fixed, documented or adaptive")
    return policies[name]()


def simulate_polls(
    policy: SchedulePolicy, task: TaskFacts, latency_s: float, *, start_at: float | None = None
) -> tuple[int, float]:
    """Return (polls, detection delay) if `task` settles `latency_s` after creation.

    A pure what-if on plain numbers: polls happen exactly when the policy asks, from `start_at`
    (default: the creation time).
    """
    if task.created_at is None:
        raise ValueError("simulate_polls needs a creation time")
    settled_at = task.created_at + latency_s
    now = task.created_at if start_at is None else start_at
    last: float | None = None
    polls = 0
    while True:
        at = policy.next_poll_at(task, attempts=polls, last_poll_at=last, now=now)
        at = max(at, now)
        polls += 1
        if at >= settled_at:
            return polls, at - settled_at
        last, now = at, at
        if polls > 100_000:
            raise RuntimeError("the policy never reached the settlement")
