"""The collector's global request budget: a token bucket that halves on 429 (AIMD).

Requests are spaced `1 / rate` apart with a bucket of one token, so any one-second window sees
at most `rate` requests (plus one at its edge); the rate starts at `max_rps * headroom` and at
least one request per second below `max_rps` (a margin for the edge and for the jitter between
when we send and when the server counts). A 429 halves the rate
and closes the gate until its Retry-After has passed (a small floor when it is 0, absent or a
past date, plus jitter, so that every waiting request does not come back at the same instant).
Each second without a 429 gives back `max_rps * recovery` of rate, up to the cap.
"""

from __future__ import annotations

import asyncio
import random
from typing import Final

from asg_audit.clock import Clock

__all__ = ["DEFAULT_HEADROOM", "DEFAULT_RETRY_FLOOR_S", "TokenBucket"]

DEFAULT_HEADROOM: Final = 0.9
DEFAULT_RETRY_FLOOR_S: Final = 1.0
DEFAULT_RECOVERY: Final = 0.05


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
        jitter_s: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if max_rps <= 0:
            raise ValueError("max_rps must be positive")
        self.clock = clock
        # one request of margin at least: a window can catch one more request at its edge
        margin = max_rps * headroom if max_rps < 2 else min(max_rps * headroom, max_rps - 1)
        self.cap = max(min_rps, margin)
        self.rate = self.cap
        self.min_rps = min(min_rps, self.cap)
        self.step = max_rps * recovery
        self.retry_floor_s = retry_floor_s
        self.jitter_s = jitter_s
        self.rng = rng or random.Random()
        self._next_at = -float("inf")
        self._paused_until = -float("inf")
        self._last_raise_at: float | None = None
        self._gate = asyncio.Lock()
        self.throttle_events = 0

    @property
    def paused_until(self) -> float:
        """Return when the gate reopens after the last 429 (may be in the past)."""
        return self._paused_until

    def free_at(self) -> float:
        """Return the clock time from which `acquire` would not wait (a read, no reservation)."""
        return max(self._next_at, self._paused_until)

    def reserve(self) -> float:
        """Reserve the next request slot; return its clock time.

        The collector sends up to a few slots early (`burst.BurstBudget`: the average rate
        holds, and no 1-second window goes over `--max-rps`), never before `paused_until`.
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
        requests whose slots fell due while it slept.
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

    def on_throttled(self, retry_after_s: float | None) -> float:
        """Halve the rate and close the gate; return when requests may resume."""
        now = self.clock.now()
        self.throttle_events += 1
        self.rate = max(self.min_rps, self.rate / 2)
        self._last_raise_at = now
        wait = max(self.retry_floor_s, retry_after_s or 0.0)
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
