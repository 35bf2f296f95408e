"""The AIMD token bucket, on a hand-driven clock."""

from __future__ import annotations

import bisect
import itertools
import random

import pytest
from _manual_clock import ManualClock

from asg_audit.ratelimit import TokenBucket


def test_collector_ratelimit_spaces_requests_below_max_rps() -> None:
    clock = ManualClock()
    bucket = TokenBucket(clock, max_rps=10)
    slots = [bucket.reserve() for _ in range(100)]
    for i in range(len(slots)):
        in_window = [s for s in slots if slots[i] <= s < slots[i] + 1.0]
        assert len(in_window) <= 10


def test_collector_ratelimit_halves_on_429_and_recovers_additively() -> None:
    clock = ManualClock()
    bucket = TokenBucket(clock, max_rps=10, recovery=0.1, rng=random.Random(0))
    full = bucket.rate
    bucket.on_throttled(2.0)
    assert bucket.rate == full / 2
    clock.t += 1.0
    bucket.reserve()
    assert bucket.rate == full / 2 + 1.0
    clock.t += 100.0
    bucket.reserve()
    assert bucket.rate == full


def test_collector_ratelimit_honours_retry_after_plus_jitter() -> None:
    clock = ManualClock()
    bucket = TokenBucket(clock, max_rps=10, jitter_s=0.5, rng=random.Random(0))
    resume = bucket.on_throttled(7.0)
    assert clock.t + 7.0 <= resume <= clock.t + 7.5
    assert bucket.reserve() >= resume


def test_collector_ratelimit_treats_zero_retry_after_as_a_floor() -> None:
    clock = ManualClock()
    bucket = TokenBucket(clock, max_rps=10, retry_floor_s=1.0, jitter_s=0.0)
    assert bucket.on_throttled(0.0) == clock.t + 1.0
    assert bucket.on_throttled(None) == clock.t + 1.0


def _greedy_sends(bucket: TokenBucket, clock: ManualClock, n: int, *, full: bool) -> list[float]:
    """Send `n` requests as soon as the bucket allows (`full`: wait for whole bursts)."""
    sent: list[float] = []
    while len(sent) < n:
        free_at = bucket.free_at()
        if free_at > clock.t:
            clock.t = bucket.full_at() if full else free_at
            continue
        bucket.reserve()
        sent.append(clock.t)
    return sent


@pytest.mark.parametrize("max_rps", [1, 2, 5, 10, 11, 20, 50, 200, 1000])
@pytest.mark.parametrize("full", [False, True])
def test_collector_ratelimit_bursts_keep_every_window_within_max_rps(
    max_rps: int, full: bool
) -> None:
    clock = ManualClock()
    bucket = TokenBucket(clock, max_rps=max_rps, burst=True)
    sent = _greedy_sends(bucket, clock, 30 * max_rps, full=full)
    for i, at in enumerate(sent):
        in_window = bisect.bisect_left(sent, at + 1.0) - i
        assert in_window <= max_rps, (at, in_window)
    if max_rps >= 200:
        assert bucket.burst_size > 1 and sent[bucket.burst_size - 1] == sent[0]  # one wake-up


def test_collector_ratelimit_bursts_never_open_the_gate_a_429_closed() -> None:
    clock = ManualClock()
    bucket = TokenBucket(clock, max_rps=200, jitter_s=0.0, burst=True)
    _greedy_sends(bucket, clock, 50, full=False)
    resume = bucket.on_throttled(3.0)
    later = _greedy_sends(bucket, clock, 50, full=False)
    assert min(later) >= resume


@pytest.mark.parametrize(("max_rps", "size"), [(1, 1), (10, 1), (20, 1), (50, 2), (200, 10)])
def test_collector_ratelimit_burst_is_half_the_room_below_max_rps(max_rps: int, size: int) -> None:
    bucket = TokenBucket(ManualClock(), max_rps=max_rps, burst=True)
    assert bucket.burst_size == size


def test_collector_ratelimit_without_burst_sends_nothing_early() -> None:
    clock = ManualClock()
    bucket = TokenBucket(clock, max_rps=200)
    sent = _greedy_sends(bucket, clock, 400, full=False)
    assert bucket.burst_size == 1
    assert all(b - a >= 1.0 / bucket.cap - 1e-9 for a, b in itertools.pairwise(sent))
