"""Ctrl-C (SIGINT) during store work: stop the running statement and know that it happened.

DuckDB surfaces an interrupted statement in several forms: `duckdb.InterruptException`, a
`RuntimeError("Query interrupted")` from its Python client, or, for the statements after it,
"Current transaction is aborted". `sigint_interrupts` records the signal itself, so the caller
can tell an interruption from a real error whatever form it took, and roll back and report it as
one (exit 3) instead of a traceback.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import duckdb

__all__ = ["is_interrupt", "sigint_interrupts"]


def is_interrupt(exc: BaseException) -> bool:
    """Whether `exc` is DuckDB's or Python's form of an interrupted statement."""
    return isinstance(exc, KeyboardInterrupt | duckdb.InterruptException) or (
        isinstance(exc, RuntimeError) and "interrupted" in str(exc).lower()
    )


@contextlib.contextmanager
def sigint_interrupts(con: duckdb.DuckDBPyConnection) -> Iterator[threading.Event]:
    """While the block runs, SIGINT interrupts `con`'s running statement and raises
    KeyboardInterrupt; the event yielded is set once a SIGINT arrived.

    Only the first SIGINT acts: the caller's clean-up (a rollback, the run record) is short and
    runs undisturbed. Outside the main thread, or when SIGINT is ignored (`nohup`), signals are
    left alone and the event stays clear.
    """
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield event
        return

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if event.is_set():
            return
        event.set()
        con.interrupt()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, previous)
