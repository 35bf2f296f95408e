"""Running the collector's async code from synchronous code, on uvloop when it is installed.

uvloop is a dependency (the webhook receiver's Uvicorn uses it too). On the collector
benchmark its effect on CPU per poll was within the run-to-run noise (1.01 -> 0.99 ms); it is
kept because it is the same loop the receiver runs on. Without uvloop, asyncio's loop is used.
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
