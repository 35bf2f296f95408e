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

import _thread
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

__all__ = [
    "StopHold",
    "StopSignal",
    "held_stops",
    "in_main_thread",
    "kept_signal_handlers",
    "note_stop",
    "one_run_command",
    "raise_if_stopped",
    "run_ended",
    "signal_stopped",
    "sigterm_interrupts",
    "stop_on_signals",
    "stop_raised",
    "stop_scope",
]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignal(KeyboardInterrupt):
    """SIGTERM arrived: the command stops as it would on Ctrl-C."""


def in_main_thread() -> bool:
    """Return whether signal handlers can be installed here (Python's rule: main thread only)."""
    return threading.current_thread() is threading.main_thread()


# A stop signal has been acted on in this process: the command is stopping. The command line's
# handlers (`stop_on_signals`) then leave later signals alone, so the clean-up a stop starts
# (recording the run) is not cut short by a second Ctrl-C or SIGTERM.
_stopping = threading.Event()
# A stop raised where Python could only ignore it (in a weakref callback or a __del__): the next
# signal, raised again at once by `_rearm`, must act although the stop was recorded.
_swallowed = threading.Event()
_scope = {"depth": 0, "process_wide": False}


@contextlib.contextmanager
def stop_scope() -> Iterator[None]:
    """A block of work a stop signal stops. The outermost block starts with no stop recorded (a
    notebook can interrupt one ingest, then run and interrupt another); inside the command
    line's process (`stop_on_signals`) a stop lasts until the process ends."""
    if _scope["depth"] == 0 and not _scope["process_wide"]:
        _stopping.clear()
        _swallowed.clear()
        _raised.clear()
    _scope["depth"] += 1
    try:
        yield
    finally:
        _scope["depth"] -= 1
        if _scope["depth"] == 0 and not _scope["process_wide"]:
            _raised.clear()  # that stop is over: it must not stop a later call (`raise_if_stopped`)


def note_stop() -> bool:
    """Record that a stop signal is acted on; return False if one was already (or it was
    swallowed: then True again, once)."""
    if _swallowed.is_set():
        _swallowed.clear()
        _stopping.set()
        return True
    if _stopping.is_set():
        return False
    _stopping.set()
    return True


# The command the process runs when it ends with the one run it records (`ingest`, `track`,
# `verify-chain`, `billing`, `collect`, `audit`: `cli._recorded`). `audit`'s steps record runs
# of their own, which are not its end.
_one_run: dict[str, str | None] = {"command": None}


def one_run_command(command: str | None) -> None:
    """Say that the command running ends with the run it records, named `command` in `runs`
    (None: no longer; see `run_ended`)."""
    _one_run["command"] = command


def run_ended(command: str) -> None:
    """The store is recording the end (done or failed, not interrupted) of a run of `command`.
    If it is the run the command line's command ends with, the work is over: a stop signal from
    now on is left alone, so the summary and findings are printed whole and the exit code is
    theirs (a signal in the moment between the record and the command's return, its store
    being closed, used to end the command "interrupted" with nothing printed although `runs`
    showed it ended)."""
    if command == _one_run["command"]:
        note_stop()


# A stop signal raised its KeyboardInterrupt in this command line's process (set by the
# handlers, cleared by `stop_on_signals`): an error that follows is that stop's consequence
# (`signal_stopped`).
_raised = threading.Event()


def signal_stopped() -> bool:
    """Return whether a stop signal has raised its KeyboardInterrupt in this process since
    `stop_on_signals`. A library may turn that KeyboardInterrupt into an error of its own (one
    seen: matplotlib's "Invalid affine transformation matrix" while drawing a chart): the entry
    point then ends the command as interrupted (exit 3), not with that error's traceback."""
    return _raised.is_set()


def raise_if_stopped() -> None:
    """Raise KeyboardInterrupt if a stop signal raised one since `stop_on_signals` (or in this
    `stop_scope`) and the work still goes on.

    A KeyboardInterrupt raised in Python code that a library calls back into can be caught
    there: DuckDB turns one raised while it scans a registered frame into an error of its own,
    and a caller of that library may handle the error. Tester T1 saw `audit` run on for 2-3 s
    after a SIGINT or SIGTERM (2 of about 130 tries, as its analysis began) and record itself
    `ok`. Called where a long piece of work is about to be recorded as done.
    """
    # Signal handlers run in the main thread only: work on another thread was not stopped.
    if _raised.is_set() and in_main_thread():
        raise KeyboardInterrupt("stopped by a signal (its interrupt was caught by a library)")


def stop_raised() -> None:
    """Record that a stop signal's handler is raising its KeyboardInterrupt (the handlers of
    `stop_on_signals`, `sigterm_interrupts` and `interrupts.sigint_interrupts` call it)."""
    _raised.set()


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    if not note_stop():
        return  # already stopping: the clean-up runs undisturbed
    stop_raised()
    if signum == signal.SIGTERM:
        raise StopSignal("stopped by SIGTERM")
    raise KeyboardInterrupt


def _rearm(unraisable: Any) -> None:
    """`sys.unraisablehook`: a stop that landed where Python ignores exceptions is raised again."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and in_main_thread():
        _swallowed.set()
        # From another thread, a moment later: raised here (or in the callback this hook is
        # called from) it would be ignored again. If it is all the same, this runs again.
        sig = signal.SIGTERM if isinstance(unraisable.exc_value, StopSignal) else signal.SIGINT
        timer = threading.Timer(0.05, _thread.interrupt_main, [sig])
        timer.daemon = True
        timer.start()
        return
    sys.__unraisablehook__(unraisable)


def stop_on_signals() -> None:
    """Make SIGINT and SIGTERM stop the command line's process cleanly, from now on.

    The first of them raises KeyboardInterrupt (`StopSignal` for SIGTERM), so every command
    stops on SIGTERM as on Ctrl-C (one line, exit 3), even before its own handling starts;
    later ones are left alone while the stop's clean-up runs. A stop raised where Python can
    only ignore it is raised again. The entry point calls it; a library caller (a notebook)
    keeps Python's own Ctrl-C. Outside the main thread, or for a signal that is ignored
    (`nohup`), nothing changes.
    """
    if not in_main_thread():
        return
    _scope["process_wide"] = True
    _raised.clear()
    for sig in _STOP_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _on_stop_signal)
    sys.unraisablehook = _rearm


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While the block runs, SIGTERM raises `StopSignal` (a KeyboardInterrupt).

    Only the first stop signal acts (`note_stop`), so the clean-up it starts (recording the
    run) is not cut short by a second one. Outside the main thread, or when SIGTERM is ignored,
    nothing changes.
    """
    if not in_main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGTERM, _on_stop_signal)
    try:
        with stop_scope():
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


class StopHold:
    """A stop signal held from `begin()` to the end of a `held_stops()` block."""

    def __init__(self) -> None:
        self._saved: dict[signal.Signals, Any] | None = None
        self._held: signal.Signals | None = None

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        if self._held is None:
            self._held = signal.Signals(signum)

    def begin(self) -> None:
        """Hold SIGINT and SIGTERM from now to the end of the block (main thread only; a
        signal that is ignored stays ignored)."""
        if self._saved is not None or not in_main_thread():
            return
        self._saved = {s: signal.getsignal(s) for s in _STOP_SIGNALS}
        for sig, handler in self._saved.items():
            if handler is not signal.SIG_IGN:
                signal.signal(sig, self._hold)

    def release(self) -> None:
        """Put the handlers back and send a held signal again, to them."""
        saved, self._saved = self._saved, None
        if saved is None:
            return
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)
        if self._held is not None:
            held, self._held = self._held, None
            signal.raise_signal(held)


@contextlib.contextmanager
def held_stops() -> Iterator[StopHold]:
    """A block whose end a stop signal waits for, once `begin()` was called in it.

    For a commit and the bookkeeping that says what it stored: call `hold.begin()` as the last
    step inside the transaction, and keep the counting in the block. A stop signal (SIGINT,
    SIGTERM) that arrives from `begin()` on is held, and sent again when the block ends, to the
    handlers that were in place (which stop the work as they would have). So a stop never
    lands between a commit and its accounting: a signal raised as the commit returned used to
    leave a stored file out of the run's stats (and a run recorded `interrupted` over a stored
    one). Before `begin()`, a signal acts at once, as always.
    """
    hold = StopHold()
    try:
        yield hold
    finally:
        hold.release()
