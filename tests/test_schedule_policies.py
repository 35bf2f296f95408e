"""Pure poll schedules, tested with plain numbers (no clock, no network)."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from asg_audit.schedule import (
    Adaptive,
    DocumentedBackoff,
    FixedInterval,
    TaskFacts,
    kaplan_meier_quantiles,
    make_policy,
    simulate_polls,
)

T0 = 1_000_000.0


def _poll_times(policy, task: TaskFacts, count: int) -> list[float]:
    times: list[float] = []
    last = None
    now = task.created_at or 0.0
    for n in range(count):
        at = max(now, policy.next_poll_at(task, attempts=n, last_poll_at=last, now=now))
        times.append(at - (task.created_at or 0.0))
        last = now = at
    return times


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return max(8.0, math.exp(rng.gauss(math.log(median), sigma)))


def test_schedule_documented_backoff_follows_the_docs() -> None:
    task = TaskFacts("tsk_a", T0)
    assert _poll_times(DocumentedBackoff(), task, 9) == [5, 10, 20, 40, 80, 140, 200, 260, 320]


def test_schedule_documented_backoff_polls_an_old_task_at_once() -> None:
    task = TaskFacts("tsk_a", T0)
    at = DocumentedBackoff().next_poll_at(task, attempts=0, last_poll_at=None, now=T0 + 500)
    assert at == T0 + 500


def test_schedule_fixed_interval_polls_every_five_seconds() -> None:
    task = TaskFacts("tsk_a", T0)
    assert _poll_times(FixedInterval(), task, 4) == [5, 10, 15, 20]


def test_schedule_simulate_polls_counts_polls_and_delay() -> None:
    polls, delay = simulate_polls(DocumentedBackoff(), TaskFacts("tsk_a", T0), 42.0)
    assert (polls, delay) == (5, 38.0)


def test_schedule_adaptive_without_history_is_the_documented_backoff() -> None:
    task = TaskFacts("tsk_a", T0, 3, "sentiment")
    assert _poll_times(Adaptive(), task, 6) == _poll_times(DocumentedBackoff(), task, 6)


def test_schedule_adaptive_never_polls_a_task_more_often_than_every_5_s() -> None:
    rng = random.Random(1)
    policy = Adaptive()
    for i in range(500):
        policy.observe_settled(TaskFacts(f"h{i}", T0, 3, "x"), _lognormal(rng, 42, 0.05))
    times = _poll_times(policy, TaskFacts("tsk_a", T0, 3, "x"), 40)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 5.0


def test_schedule_adaptive_keeps_a_tail_schedule_for_slow_tasks() -> None:
    rng = random.Random(2)
    policy = Adaptive()
    for i in range(300):
        policy.observe_settled(TaskFacts(f"h{i}", T0, 3, "x"), _lognormal(rng, 42, 0.3))
    # a task 20x slower than anything seen is still found, within one tail gap (60 s)
    polls, delay = simulate_polls(policy, TaskFacts("tsk_slow", T0, 3, "x"), 2000.0)
    assert delay <= 60.0
    assert polls < 60


def test_schedule_adaptive_needs_fewer_polls_and_finds_settlements_sooner() -> None:
    rng = random.Random(3)
    thresholds = [rng.choice((2, 3, 3, 3, 5, 7, 10)) for _ in range(4000)]

    def latency(t: int) -> float:
        return _lognormal(rng, 42 * (t / 3) ** 0.3, 0.3 + 0.025 * t)

    lat = [latency(t) for t in thresholds]
    adaptive = Adaptive()
    for i, (t, x) in enumerate(zip(thresholds[:2000], lat[:2000], strict=True)):
        adaptive.observe_settled(TaskFacts(f"h{i}", T0, t, "x"), x)
    results = {}
    for name, policy in (("documented", DocumentedBackoff()), ("adaptive", adaptive)):
        polls, delays = [], []
        for i, (t, x) in enumerate(zip(thresholds[2000:], lat[2000:], strict=True)):
            p, d = simulate_polls(policy, TaskFacts(f"t{i}", T0, t, "x"), x)
            polls.append(p)
            delays.append(d)
        delays.sort()
        results[name] = (sum(polls) / len(polls), delays[int(0.95 * len(delays))])
    assert results["adaptive"][0] <= 0.6 * results["documented"][0]
    assert results["adaptive"][1] <= 0.5 * results["documented"][1]


def test_schedule_adaptive_prefers_the_task_group_with_enough_data() -> None:
    policy = Adaptive(min_samples=40)
    for i in range(100):
        policy.observe_settled(TaskFacts(f"f{i}", T0, 3, "fast"), 20.0 + i % 3)
        policy.observe_settled(TaskFacts(f"s{i}", T0, 3, "slow"), 200.0 + i % 3)
    fast = policy.next_poll_at(TaskFacts("a", T0, 3, "fast"), attempts=0, last_poll_at=None, now=T0)
    slow = policy.next_poll_at(TaskFacts("b", T0, 3, "slow"), attempts=0, last_poll_at=None, now=T0)
    assert fast - T0 < 30 < 150 < slow - T0


def test_schedule_adaptive_falls_back_to_the_pooled_estimate() -> None:
    policy = Adaptive(min_samples=40)
    for i in range(100):
        policy.observe_settled(TaskFacts(f"f{i}", T0, 3, "fast"), 100.0 + i % 3)
    # threshold 9 and type "rare" have no data of their own: the pooled estimate is used
    assert policy.samples(TaskFacts("c", T0, 9, "rare")) == 100
    at = policy.next_poll_at(TaskFacts("c", T0, 9, "rare"), attempts=0, last_poll_at=None, now=T0)
    assert at - T0 > 60


def test_schedule_kaplan_meier_counts_pending_tasks_as_censored() -> None:
    # half the tasks settled at 10 s, the other half are still pending at 50 s:
    # the median is 10 s either way, but the 0.75 quantile is unknown, not 10 s
    events = [10.0] * 50
    censored = [50.0] * 50
    assert kaplan_meier_quantiles(events, censored, (0.5,)) == [11.0]
    assert kaplan_meier_quantiles(events, censored, (0.75,)) == []
    assert kaplan_meier_quantiles(events, [], (0.75,)) == [11.0]


def test_schedule_make_policy_rejects_unknown_names() -> None:
    assert make_policy("documented").name == "documented"
    with pytest.raises(ValueError, match="unknown schedule"):
        make_policy("greedy")


def test_schedule_adaptive_refuses_a_minimum_interval_below_5_s() -> None:
    with pytest.raises(ValueError, match="5 s"):
        Adaptive(min_interval_s=1.0)
