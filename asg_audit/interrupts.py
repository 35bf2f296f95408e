"""Ctrl-C (SIGINT) during store work: stop the running statement and know that it happened.

DuckDB surfaces an interrupted statement in several forms: `duckdb.InterruptException`, a
`RuntimeError("Query interrupted")` from its Python client, or, for the statements after it,
"Current transaction is aborted". `sigint_interrupts` records the signal itself, so the caller
can tell an interruption from a real error whatever form it took, and roll back and report it as
one (exit 3) instead of a traceback.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import duckdb

from asg_audit.stopsignals import StopSignal, note_stop, stop_raised, stop_scope

__all__ = ["is_interrupt", "sigint_interrupts"]

_NAMES_KEYBOARD_INTERRUPT = re.compile(r"(?:failed: |^)KeyboardInterrupt\b", re.MULTILINE)


def is_interrupt(exc: BaseException) -> bool:
    """Whether `exc` is DuckDB's or Python's form of an interrupted statement.

    A KeyboardInterrupt raised in Python code that DuckDB calls while it reads a registered
    polars or Arrow object comes back as a DuckDB error naming it ("reading the object
    registered as '_chain_new' as Arrow data failed: KeyboardInterrupt:", or "... Python
    exception: Traceback ... KeyboardInterrupt" for a stream), with no cause.
    """
    if isinstance(exc, KeyboardInterrupt | duckdb.InterruptException):
        return True
    if isinstance(exc, RuntimeError) and str(exc).strip() == "Query interrupted":
        return True  # its Python client's form, exactly: another library's RuntimeError that
        # merely says "interrupted" is a failure and keeps its traceback
    return isinstance(exc, duckdb.Error) and _NAMES_KEYBOARD_INTERRUPT.search(str(exc)) is not None


@contextlib.contextmanager
def sigint_interrupts(con: duckdb.DuckDBPyConnection) -> Iterator[threading.Event]:
    """While the block runs, SIGINT (and SIGTERM, systemd's stop) interrupts `con`'s running
    statement and raises KeyboardInterrupt (`StopSignal` for SIGTERM); the event yielded is set
    once such a signal arrived.

    Only the first stop signal acts (`stopsignals.note_stop`): the caller's clean-up (a
    rollback, the run record) is short and runs undisturbed. Outside the main thread, signals
    are left alone and the event stays clear; so is a signal that is ignored (`nohup`).
    """
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def on_stop(signum: int, frame: FrameType | None) -> None:
        if not note_stop():
            return
        event.set()
        con.interrupt()
        stop_raised()
        if signum == signal.SIGTERM:
            raise StopSignal("stopped by SIGTERM")
        raise KeyboardInterrupt

    for sig, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(sig, on_stop)
    try:
        with stop_scope():
            yield event
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)
