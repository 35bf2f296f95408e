"""Injectable clocks: the collector reads time and sleeps only through one of these.

`SystemClock` is real time. `ScaledClock` runs simulated time: one simulated second lasts
`time_scale` wall seconds, anchored on `time.monotonic()` (shared by every process on the
machine, so a child process can follow the same simulated time as its parent). The simulator's
own `SimClock` satisfies the same protocol.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "ScaledClock", "SystemClock"]


class Clock(Protocol):
    """What the collector needs from time: `now()` in epoch seconds and an async `sleep`."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Real time."""

    def now(self) -> float:
        """Return the epoch seconds of now."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds` of real time."""
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """Simulated time: `start_at` (epoch seconds) at the monotonic instant `anchor`."""

    def __init__(
        self, start_at: float, *, time_scale: float = 1.0, anchor: float | None = None
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.start_at = float(start_at)
        self.time_scale = float(time_scale)
        self.anchor = time.monotonic() if anchor is None else float(anchor)

    def now(self) -> float:
        """Return simulated now as epoch seconds."""
        return self.start_at + (time.monotonic() - self.anchor) / self.time_scale

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds` of simulated time."""
        await asyncio.sleep(max(0.0, seconds * self.time_scale))
