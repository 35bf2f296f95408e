"""The collector's global request budget: a token bucket that halves on 429 (AIMD).

Requests are spaced `1 / rate` apart with a bucket of one token, so any one-second window sees
at most `rate` requests (plus one at its edge); the rate starts at `max_rps * headroom` and at
least one request per second below `max_rps` (a margin for the edge and for the jitter between
when we send and when the server counts). A 429 halves the rate
and closes the gate until its Retry-After has passed (a small floor when it is 0, absent or a
past date, plus jitter, so that every waiting request does not come back at the same instant),
and at most `MAX_RETRY_AFTER_S` (1 h): a longer Retry-After (`1e308`, a date in the year 9999)
waits that long, then the next request asks again.
Each second without a 429 gives back `max_rps * recovery` of rate, up to the cap.

With `burst=True`, several requests may go out in one wake-up: each reserved slot may be sent
up to `early_s = (burst_size - 1) / cap` before its time, which keeps the average rate and raises
the 1-second bound from `floor(rate) + 1` to `floor(rate) + burst_size`. `burst_size` is half the
room between the cap and `max_rps` (at least 1: no burst for a small budget, e.g. 1 for
`max_rps=10`, 10 for `max_rps=200`), so the server still never sees more than `max_rps` in any
1-second window, with the other half left for jitter. Nothing is ever sent before the gate a
429's `Retry-After` closed reopens. Why: each wake-up of an idle process costs CPU (on a small
VM some 0.1 ms, more than the request itself), and one wake-up per poll spaced by the bucket was
most of the collector's CPU a poll.

`parse_retry_after` is the one Retry-After parser: the collector (`gateway`) and the chain
index client (`chain`) both read the header with it (seconds or an HTTP date, NaN unreadable,
an overflowing number infinite); each caller then caps or refuses what it asked for.
"""

from __future__ import annotations

import asyncio
import math
import random
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final

from asg_audit.clock import Clock

__all__ = [
    "DEFAULT_HEADROOM",
    "DEFAULT_RETRY_FLOOR_S",
    "MAX_RETRY_AFTER_S",
    "TokenBucket",
    "parse_retry_after",
]

DEFAULT_HEADROOM: Final = 0.9
DEFAULT_RETRY_FLOOR_S: Final = 1.0
DEFAULT_RECOVERY: Final = 0.05
# the longest a 429's Retry-After closes the gate (seconds); a longer one waits this long
MAX_RETRY_AFTER_S: Final = 3600.0


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Return the seconds a Retry-After header asks for (delta-seconds or an HTTP date).

    A past date or a negative number gives 0; an unreadable value (NaN included) gives None; a
    number too large for a float (`1e999`) gives infinity. The value is what the server asked
    for, however absurd (`1e308`, the year 9999): the caller caps it (the collector at
    `MAX_RETRY_AFTER_S`, stopping when it is longer than its deadline; the chain client stops
    when it is longer than `chain.MAX_RETRY_AFTER_S`). `now` is epoch seconds (the clock's, so
    a simulated server's dates compare with simulated time).
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return None if math.isnan(seconds) else max(0.0, seconds)
    try:
        when: datetime = parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - now) if when.tzinfo is not None else None
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class TokenBucket:
    """AIMD request spacing on an injected clock. One per run, shared by every request."""

    def __init__(
        self,
        clock: Clock,
        *,
        max_rps: float,
        headroom: float = DEFAULT_HEADROOM,
        recovery: float = DEFAULT_RECOVERY,
        min_rps: float = 0.2,
        retry_floor_s: float = DEFAULT_RETRY_FLOOR_S,
        retry_max_s: float = MAX_RETRY_AFTER_S,
        jitter_s: float = 0.5,
        rng: random.Random | None = None,
        burst: bool = False,
    ) -> None:
        if not math.isfinite(max_rps) or max_rps <= 0:
            raise ValueError(f"max_rps must be a positive finite number, not {max_rps!r}")
        self.clock = clock
        # one request of margin at least: a window can catch one more request at its edge
        margin = max_rps * headroom if max_rps < 2 else min(max_rps * headroom, max_rps - 1)
        self.cap = max(min_rps, margin)
        self.rate = self.cap
        self.min_rps = min(min_rps, self.cap)
        self.step = max_rps * recovery
        self.retry_floor_s = retry_floor_s
        self.retry_max_s = max(retry_floor_s, retry_max_s)
        self.jitter_s = jitter_s
        self.rng = rng or random.Random()
        self._next_at = -float("inf")
        self._paused_until = -float("inf")
        self._last_raise_at: float | None = None
        self._gate = asyncio.Lock()
        self.throttle_events = 0
        self.burst_size = max(1, int((max_rps - self.cap) // 2)) if burst else 1
        # (a nanosecond over: slots are sums of many 1/rate steps, whose rounding would
        # otherwise cost a burst its last request)
        self.early_s = (self.burst_size - 1) / self.cap + 1e-9 if self.burst_size > 1 else 0.0

    @property
    def paused_until(self) -> float:
        """Return when the gate reopens after the last 429 (may be in the past)."""
        return self._paused_until

    def free_at(self) -> float:
        """Return the clock time from which the next request may be sent (a read, no reservation).

        With a burst, up to `early_s` before its slot, never before `paused_until`.
        """
        return max(self._next_at - self.early_s, self._paused_until)

    def full_at(self) -> float:
        """Return the clock time from which a whole burst may be sent at once (no reservation).

        Also when `acquire` would not wait.
        """
        return max(self._next_at, self._paused_until)

    def reserve(self) -> float:
        """Reserve the next request slot; return its clock time.

        A request may be sent once `free_at() <= now`: with a burst, before the slot's time (the
        average rate holds, and no 1-second window goes over `max_rps`).
        """
        now = self.clock.now()
        self._recover(now)
        at = max(now, self._next_at, self._paused_until)
        self._next_at = at + 1.0 / self.rate
        return at

    async def acquire(self) -> None:
        """Wait until this request may be sent.

        Requests pass one at a time, and the next slot is counted from when this one actually
        goes: a process that wakes late (CPU contention, a pause) cannot release a burst of
        requests whose slots fell due while it slept. It sends nothing early (no burst).
        """
        async with self._gate:
            while True:
                now = self.clock.now()
                self._recover(now)
                at = max(self._next_at, self._paused_until)
                if at <= now:
                    break
                await self.clock.sleep(at - now)
            self._next_at = self.clock.now() + 1.0 / self.rate

    def gate_wait_s(self, retry_after_s: float | None) -> float:
        """Return how long a 429 with this Retry-After closes the gate, before the jitter.

        At least `retry_floor_s` (0, absent, a past date, NaN), at most `retry_max_s`.
        """
        asked = 0.0 if retry_after_s is None or math.isnan(retry_after_s) else retry_after_s
        return min(self.retry_max_s, max(self.retry_floor_s, asked))

    def on_throttled(self, retry_after_s: float | None) -> float:
        """Halve the rate and close the gate; return when requests may resume."""
        now = self.clock.now()
        self.throttle_events += 1
        self.rate = max(self.min_rps, self.rate / 2)
        self._last_raise_at = now
        wait = self.gate_wait_s(retry_after_s)
        resume = now + wait + self.rng.uniform(0, self.jitter_s)
        self._paused_until = max(self._paused_until, resume)
        self._next_at = max(self._next_at, self._paused_until)
        return self._paused_until

    def _recover(self, now: float) -> None:
        if self._last_raise_at is None:
            self._last_raise_at = now
            return
        elapsed = now - self._last_raise_at
        if elapsed >= 1.0 and self.rate < self.cap:
            self.rate = min(self.cap, self.rate + self.step * int(elapsed))
            self._last_raise_at = now
        elif self.rate >= self.cap:
            self._last_raise_at = now
