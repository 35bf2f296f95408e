"""Running the async parts (collector, receivers) from synchronous code, on uvloop.

uvloop (a dependency, also used by the webhook receiver's Uvicorn) roughly halves the event
loop's CPU per request compared with asyncio's default loop; it matters for the collector's
CPU-per-poll budget. Without uvloop (an unusual platform), asyncio's loop is used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run"]

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a new event loop (uvloop when available) and return it."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on supported platforms
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
