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

__all__ = [
    "StopSignal",
    "in_main_thread",
    "kept_signal_handlers",
    "sigterm_interrupts",
    "stop_on_sigterm",
]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignal(KeyboardInterrupt):
    """SIGTERM arrived: the command stops as it would on Ctrl-C."""


def in_main_thread() -> bool:
    """Return whether signal handlers can be installed here (Python's rule: main thread only)."""
    return threading.current_thread() is threading.main_thread()


def _raise_once() -> Any:
    fired = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if fired.is_set():
            return
        fired.set()
        raise StopSignal("stopped by SIGTERM")

    return on_sigterm


def stop_on_sigterm() -> None:
    """From now on, the first SIGTERM raises `StopSignal` (a KeyboardInterrupt); later ones are
    ignored. The command line's entry point calls it, so every command stops on SIGTERM as it
    does on Ctrl-C (one line, exit 3), even before its own handling starts. Outside the main
    thread, or when SIGTERM is ignored, nothing changes."""
    if in_main_thread() and signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, _raise_once())


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
    signal.signal(signal.SIGTERM, _raise_once())
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
