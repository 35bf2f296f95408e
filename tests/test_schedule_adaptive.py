"""Adaptive's online learning, tested with plain numbers: censoring, reach, gaps, revisions."""

from __future__ import annotations

import itertools

from asg_audit.schedule import Adaptive, TaskFacts

T0 = 1_000_000.0


def _bulk_gaps(plan: list[float], until: float) -> list[float]:
    return [b - a for a, b in itertools.pairwise(plan) if b <= until]


def test_schedule_adaptive_plan_gaps_never_exceed_max_gap_inside_the_bulk() -> None:
    # quantiles 20 and 100 s apart: the 80 s between them is split into 4 steps of 20 s
    policy = Adaptive(quantiles=(0.5, 0.99), max_gap_s=20.0)
    plan = policy.build_plan([20.0] * 50 + [100.0] * 49 + [99.0])
    assert plan[:5] == [21.0, 41.0, 61.0, 81.0, 101.0]
    assert max(_bulk_gaps(plan, 101.0)) <= 20.0


def test_schedule_adaptive_tracked_tasks_never_seen_pending_are_not_at_risk() -> None:
    # 30 settled at 20 s; 70 tracked but never polled: they tell nothing about ages > 0
    policy = Adaptive(min_samples=10)
    for i in range(70):
        policy.observe_tracked(TaskFacts(f"p{i}", T0 + 500, 3, "x"))
    for i in range(30):
        policy.observe_settled(TaskFacts(f"s{i}", T0, 3, "x"), 20.0)
    plan = policy.plan_for(TaskFacts("a", T0, 3, "x"), now=T0 + 600)
    assert plan is not None
    assert plan[0] == 21.0
    # every quantile reached: the tail starts at once, one max_gap step then doubling gaps
    assert plan[1] - plan[0] == 20.0 and plan[2] - plan[1] == 40.0


def test_schedule_adaptive_censors_a_pending_task_at_its_last_pending_poll() -> None:
    # 30 settled at 20 s; 70 seen pending at age 100 s: the median is not known yet
    policy = Adaptive(min_samples=10, quantiles=(0.2, 0.5), max_gap_s=20.0)
    for i in range(70):
        task = TaskFacts(f"p{i}", T0, 3, "x")
        policy.observe_tracked(task)
        policy.observe_pending(task, T0 + 100.0)
    for i in range(30):
        policy.observe_settled(TaskFacts(f"s{i}", T0, 3, "x"), 20.0)
    plan = policy.plan_for(TaskFacts("a", T0, 3, "x"), now=T0 + 10_000)
    assert plan is not None
    # q20 at 21 s, then steps of at most 20 s up to the oldest age seen (100 s) plus one step
    assert plan[:6] == [21.0, 40.8, 60.6, 80.4, 100.2, 120.0]
    assert plan[6] - plan[5] == 20.0 and plan[7] - plan[6] == 40.0


def test_schedule_adaptive_a_settled_task_leaves_the_censored_set() -> None:
    policy = Adaptive(min_samples=10, quantiles=(0.2, 0.5), max_gap_s=20.0)
    tasks = [TaskFacts(f"p{i}", T0, 3, "x") for i in range(70)]
    for task in tasks:
        policy.observe_tracked(task)
        policy.observe_pending(task, T0 + 100.0)
    for i in range(30):
        policy.observe_settled(TaskFacts(f"s{i}", T0, 3, "x"), 20.0)
    for task in tasks:
        policy.observe_settled(task, 110.0)
    plan = policy.plan_for(TaskFacts("a", T0, 3, "x"), now=T0 + 10_000)
    assert plan is not None
    # 30% at 20 s, 70% at 110 s: q20 = 21 s, median = 111 s, 90 s apart in 5 steps of 18 s;
    # then the tail: one max_gap step, then doubling
    assert plan[:8] == [21.0, 39.0, 57.0, 75.0, 93.0, 111.0, 131.0, 171.0]


def test_schedule_adaptive_revision_counts_groups_that_reach_enough_data() -> None:
    policy = Adaptive(min_samples=3)
    assert policy.revision == 0
    for i in range(2):
        policy.observe_settled(TaskFacts(f"a{i}", T0, 3, "x"), 30.0)
    assert policy.revision == 0
    policy.observe_settled(TaskFacts("a2", T0, 3, "x"), 30.0)
    # (3, "x"), (3, any type) and the pooled group all became usable
    assert policy.revision == 3
    policy.observe_settled(TaskFacts("a3", T0, 3, "x"), 30.0)
    assert policy.revision == 3


def test_schedule_adaptive_pending_observation_of_an_untracked_task_is_ignored() -> None:
    policy = Adaptive(min_samples=10, quantiles=(0.5,))
    policy.observe_pending(TaskFacts("ghost", T0, 3, "x"), T0 + 500.0)
    for i in range(10):
        policy.observe_settled(TaskFacts(f"s{i}", T0, 3, "x"), 20.0)
    plan = policy.plan_for(TaskFacts("a", T0, 3, "x"), now=T0 + 600)
    assert plan is not None
    assert plan[0] == 21.0


def test_schedule_adaptive_a_task_moves_to_its_own_group_once_it_has_enough_data() -> None:
    # the group a task's plan comes from is remembered, until a group reaches min_samples
    policy = Adaptive(min_samples=3, quantiles=(0.5,))
    other, mine = TaskFacts("o", T0, 3, "y"), TaskFacts("m", T0, 3, "x")
    assert policy.plan_for(mine, now=T0) is None  # fallback: nothing learned
    for i in range(3):
        policy.observe_settled(TaskFacts(f"y{i}", T0, 3, "y"), 100.0)
    assert policy.samples(mine) == 3  # (3, any type) reached 3: shared with "y"
    assert policy.plan_for(mine, now=T0)[0] == policy.plan_for(other, now=T0)[0] == 101.0
    for i in range(3):
        policy.observe_settled(TaskFacts(f"x{i}", T0, 3, "x"), 10.0)
    assert policy.samples(mine) == 3  # its own group now, not the 6 of (3, any type)
    assert policy.plan_for(mine, now=T0 + 100)[0] == 11.0
    assert policy.samples(other) == 3


def test_schedule_adaptive_min_samples_of_one_uses_the_first_settlement() -> None:
    policy = Adaptive(min_samples=1, quantiles=(0.5,))
    task = TaskFacts("a", T0, 3, "x")
    assert policy.plan_for(task, now=T0) is None
    policy.observe_settled(TaskFacts("s", T0, 3, "x"), 30.0)
    plan = policy.plan_for(task, now=T0)
    assert plan is not None and plan[0] == 31.0


def test_schedule_adaptive_a_retracted_latency_is_forgotten() -> None:
    # a settlement learned from an answer the normaliser then rejected is taken back
    policy = Adaptive(min_samples=3, quantiles=(0.5,))
    task = TaskFacts("a", T0, 3, "x")
    for i in range(3):
        policy.observe_settled(TaskFacts(f"s{i}", T0, 3, "x"), 30.0)
    assert policy.revision == 3 and policy.plan_for(task, now=T0) is not None
    policy.retract_settled(TaskFacts("s2", T0, 3, "x"), 30.0)
    assert policy.samples(task) == 0  # every group fell below min_samples: the fallback
    assert policy.revision == 6
    assert policy.plan_for(task, now=T0) is None
    policy.retract_settled(TaskFacts("s9", T0, 3, "x"), 99.0)  # never learned: nothing happens
    assert policy.revision == 6
