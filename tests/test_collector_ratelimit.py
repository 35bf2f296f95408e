"""The AIMD token bucket, on a hand-driven clock."""

from __future__ import annotations

import random

from asg_audit.ratelimit import TokenBucket


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


def test_collector_ratelimit_spaces_requests_below_max_rps() -> None:
    clock = _Clock()
    bucket = TokenBucket(clock, max_rps=10)
    slots = [bucket.reserve() for _ in range(100)]
    for i in range(len(slots)):
        in_window = [s for s in slots if slots[i] <= s < slots[i] + 1.0]
        assert len(in_window) <= 10


def test_collector_ratelimit_halves_on_429_and_recovers_additively() -> None:
    clock = _Clock()
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
    clock = _Clock()
    bucket = TokenBucket(clock, max_rps=10, jitter_s=0.5, rng=random.Random(0))
    resume = bucket.on_throttled(7.0)
    assert clock.t + 7.0 <= resume <= clock.t + 7.5
    assert bucket.reserve() >= resume


def test_collector_ratelimit_treats_zero_retry_after_as_a_floor() -> None:
    clock = _Clock()
    bucket = TokenBucket(clock, max_rps=10, retry_floor_s=1.0, jitter_s=0.0)
    assert bucket.on_throttled(0.0) == clock.t + 1.0
    assert bucket.on_throttled(None) == clock.t + 1.0
