"""SIGTERM stops a command the way Ctrl-C does, so that systemd's stop is a clean stop.

Python turns SIGINT into `KeyboardInterrupt`; SIGTERM's default is to die at once, leaving the
runs of the command `running` in the store. `sigterm_interrupts` makes SIGTERM raise
`StopSignal` (a `KeyboardInterrupt`) while the block runs, so the `except KeyboardInterrupt`
clean-ups that already record a run as `interrupted` handle both signals, and the CLI prints
one line and exits 3. The collector keeps its own approach (a stop flag checked by its event
loop, `collector.collect(handle_signals=True)`); `kept_signal_handlers` puts our handlers back
after it, since asyncio resets a signal to its default when it removes its handler.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

__all__ = ["StopSignal", "in_main_thread", "kept_signal_handlers", "sigterm_interrupts"]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignal(KeyboardInterrupt):
    """SIGTERM arrived: the command stops as it would on Ctrl-C."""


def in_main_thread() -> bool:
    """Return whether signal handlers can be installed here (Python's rule: main thread only)."""
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While the block runs, SIGTERM raises `StopSignal` (a KeyboardInterrupt), once.

    Only the first SIGTERM acts, so the clean-up it starts (recording the run) is not cut short
    by a second one. Outside the main thread, or when SIGTERM is ignored, nothing changes.
    """
    if not in_main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN:
        yield
        return
    fired = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if fired.is_set():
            return
        fired.set()
        raise StopSignal("stopped by SIGTERM")

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def kept_signal_handlers() -> Iterator[None]:
    """Restore the SIGINT and SIGTERM handlers after the block (asyncio resets them)."""
    if not in_main_thread():
        yield
        return
    saved: dict[signal.Signals, Any] = {s: signal.getsignal(s) for s in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)
