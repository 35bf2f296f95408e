"""The simulator's two clocks: scaled simulated time for its world, the wall clock for sending.

The seeded world has fixed dates (its span ends in October 2026 whatever the date today), and
the served world runs in scaled time: every lifecycle time (`created_at`, `settled_at`), the
chain's block times, billing months, rate-limit windows and `Retry-After` are simulated. A
webhook delivery's `timestamp` says when it was sent, and a receiver checks it against its own
wall clock (a freshness window): deliveries are therefore stamped with the wall clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["SimClock", "format_ts", "parse_ts"]


class SimClock:
    """Simulated "now", advancing `1 / time_scale` times faster than the wall clock.

    Every timestamp of the world the simulator serves comes from here, so a 42 s settlement
    takes 0.42 wall seconds at `time_scale=0.01`. `wall_now` is the other clock: the real time,
    for what states the moment something is sent (a webhook delivery's `timestamp`).
    """

    def __init__(
        self,
        start_at: float,
        *,
        time_scale: float = 1.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not time_scale > 0:
            raise ValueError("time_scale must be positive")
        self.start_at = float(start_at)
        self.time_scale = float(time_scale)
        self._wall0 = time.monotonic()
        self._wall_clock = wall_clock

    def now(self) -> float:
        """Return simulated now as epoch seconds."""
        return self.start_at + (time.monotonic() - self._wall0) / self.time_scale

    def now_dt(self) -> datetime:
        """Return simulated now as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now(), tz=UTC)

    def wall_now(self) -> float:
        """Return the wall-clock time as epoch seconds (when a delivery is sent)."""
        return self._wall_clock()

    def wall_seconds(self, sim_seconds: float) -> float:
        """Return how many wall seconds `sim_seconds` of simulated time take."""
        return sim_seconds * self.time_scale

    async def sleep(self, sim_seconds: float) -> None:
        """Sleep for `sim_seconds` of simulated time."""
        await asyncio.sleep(max(0.0, sim_seconds * self.time_scale))


def format_ts(epoch: float) -> str:
    """Return an RFC3339 UTC string with `Z`, whole seconds (as the docs' examples)."""
    return datetime.fromtimestamp(int(epoch), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(text: str) -> float:
    """Return epoch seconds of an RFC3339 string produced by `format_ts`."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
