"""Small bursts on top of the request budget: several due polls go out in one wake-up.

`TokenBucket` spaces requests `1 / rate` apart, so a 1-second window sees at most
`floor(rate) + 1` of them, and its rate is capped at least one request a second below
`--max-rps` (`cap`). Sending each reserved slot up to `early_s = (burst - 1) / cap` before its
time keeps the average rate and raises that bound to `floor(rate) + burst`: `burst` is half the
room between the cap and `--max-rps` (at least 1: no burst for a small budget, e.g. 1 for
`--max-rps 10`, 10 for `--max-rps 200`), so the server still never sees more than
`--max-rps` in any 1-second window, with the other half left for jitter. Nothing is ever sent
before the gate a 429's `Retry-After` closed reopens.

Why: each wake-up of an idle process costs CPU (on a small VM some 0.1 ms, more than the
request itself), and one wake-up per poll spaced by the bucket was most of the collector's
CPU a poll.
"""

from __future__ import annotations

from asg_audit.ratelimit import TokenBucket

__all__ = ["BurstBudget"]


class BurstBudget:
    """The collector's view of its `TokenBucket`: when the next request may go, and taking it."""

    def __init__(self, bucket: TokenBucket, *, max_rps: float) -> None:
        self.bucket = bucket
        self.burst = max(1, int((max_rps - bucket.cap) // 2))
        # (a nanosecond over: slots are sums of many 1/rate steps, whose rounding would
        # otherwise cost a burst its last request)
        self.early_s = (self.burst - 1) / bucket.cap + 1e-9 if self.burst > 1 else 0.0

    def free_at(self) -> float:
        """Return the clock time from which the next request may be sent (no reservation)."""
        bucket = self.bucket
        return max(bucket.free_at() - self.early_s, bucket.paused_until)

    def full_at(self) -> float:
        """Return the clock time from which a whole burst may be sent at once."""
        return self.bucket.free_at()

    def take(self) -> None:
        """Take the next slot for a request sent now (call only once `free_at() <= now`)."""
        self.bucket.reserve()
