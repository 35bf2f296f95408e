"""Output streams whose failed writes are noted instead of raised: one implementation for the
command line (`cli.main` guards sys.stdout and sys.stderr) and the Python API (`run_audit`
guards its log and, with `guarded_stderr`, sys.stderr for the run).

A log on a full disk (`>> audit.log 2>&1`, ENOSPC), a failing device (EIO) or a stream the
caller closed must not stop the work: the store and the report are what a run is for. The
first failed write notes why in the `lost` mapping the stream was given (its name -> the OS's
words), and nothing more is written to it. A standard stream Python has none for (None: its
file descriptor was closed when the process started, `2>&-`) is output that cannot be written
from the start: the work runs, nothing is written, the loss is noted at once.

Its own small module, imported with the command line (while stop signals are held back): it
imports nothing but the standard library's lightest modules.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO, cast

__all__ = [
    "NOT_OPEN",
    "STDERR",
    "STDOUT",
    "GuardedStream",
    "guarded_stderr",
    "open_missing_std_fds",
]

STDOUT, STDERR = "standard output", "standard error"
# why the output of a stream that is None (a descriptor closed at the start, `>&-`) is lost
NOT_OPEN = "it is not open"


class _NoStream:
    """Stands for a standard stream that is None: nothing is written, it is no terminal."""

    closed = True
    encoding = "utf-8"
    errors = "strict"

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))


class GuardedStream:
    """A text stream whose failed writes are noted in `lost` instead of raised.

    `own_process=True` (the command line, whose sys.stdout and sys.stderr these are): EPIPE is
    not lost output but the reader gone (`| head`), which stops the command quietly (exit 141):
    BrokenPipeError is raised. On the first failed write the stream's file descriptor is
    pointed at /dev/null, so that what is still buffered, and what comes after, goes nowhere
    instead of failing again (at the interpreter's last flush that would be exit 120).

    `own_process=False` (a library call: the stream is the caller's): every write that fails
    with an OSError, EPIPE included, and every write to a stream the caller closed is lost
    output; the caller's file descriptor is never touched, the stream is simply not written
    again. Any other ValueError (a text the stream cannot encode, a stream of its own closed
    by a bug of the command line) is raised: it is no lost output.
    """

    def __init__(
        self, stream: TextIO | None, name: str, lost: dict[str, str], *, own_process: bool
    ) -> None:
        # None: no stream at all (`2>&-` at the start): its output is lost from the start
        self._stream: Any = _NoStream() if stream is None else stream
        self._name = name
        self._lost = lost
        self._own_process = own_process
        self.missing = stream is None
        if stream is None:
            lost.setdefault(name, NOT_OPEN)

    @property
    def name(self) -> str:
        """What the stream is called in a `lost` note (`standard output`, `the log`)."""
        return self._name

    @property
    def lost(self) -> str | None:
        """Why the stream's output was lost (`No space left on device`), or None."""
        return self._lost.get(self._name)

    def write(self, text: str) -> int:
        if self._name not in self._lost:
            try:
                written = self._stream.write(text)
                return written if isinstance(written, int) else len(text)
            except (OSError, ValueError) as exc:
                self._failed(exc)
        self._dropped()
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._name not in self._lost:
            try:
                self._stream.flush()
            except (OSError, ValueError) as exc:
                self._failed(exc)
                self._dropped()  # what was buffered is lost

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, buffer, ...
        return getattr(self._stream, name)

    def _dropped(self) -> None:
        """A write was not done (the output is lost): `_SharedStderr` charges a run with it."""

    def _failed(self, exc: OSError | ValueError) -> None:
        """Note why the output is lost, or raise `exc` again when it is no lost output."""
        if self._own_process and isinstance(exc, BrokenPipeError):
            raise exc
        if isinstance(exc, ValueError) and (
            self._own_process or getattr(self._stream, "closed", False) is not True
        ):
            # A caller's stream that is closed is output lost; any other ValueError (a text
            # the stream cannot encode, a stream of our own closed by a bug) is a bug.
            raise exc
        reason = exc.strerror if isinstance(exc, OSError) else None
        self._lost[self._name] = reason or str(exc) or type(exc).__name__
        if not self._own_process:
            return
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
            self._stream.flush()  # what was buffered: now to /dev/null


def open_missing_std_fds() -> None:
    """Point the standard file descriptors, when closed (`<&-`, `>&-`, `2>&-`), at /dev/null,
    for the command line's own process.

    Python has no stream for them then (None); but a file the command opens later (the store)
    would get descriptor 0, 1 or 2, and whatever reads or writes that descriptor (a library's
    message, a child process) would use it. sys.stdin, sys.stdout and sys.stderr stay None.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
                if devnull != fd:
                    os.dup2(devnull, fd)
                    os.close(devnull)


# -- sys.stderr during library calls that may overlap (run_audit in two threads) ---------------

# The losses of the run the current thread (or task) is doing: what its stderr writes cost it.
_RUN_LOST: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "asg_audit_run_lost", default=None
)
_SHARED_LOCK = threading.RLock()  # a write from a signal handler must not deadlock


class _SharedStderr(GuardedStream):
    """sys.stderr while one or more library runs are under way: one for all of them.

    Installed by the first run, put back by the last (a count of the runs, `runs`); a write
    that is lost is charged to the run of the thread writing (`_RUN_LOST`), or, from a thread
    no run owns (a library's worker), to every run under way: it may be theirs.
    """

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream, STDERR, {}, own_process=False)
        self.saved = stream
        self.runs: list[dict[str, str]] = []

    def _dropped(self) -> None:
        why = self.lost or NOT_OPEN
        mine = _RUN_LOST.get()
        with _SHARED_LOCK:
            for lost in [mine] if mine is not None else list(self.runs):
                lost.setdefault(STDERR, why)


@contextlib.contextmanager
def guarded_stderr(lost: dict[str, str]) -> Iterator[Callable[[], str | None]]:
    """Guard sys.stderr for the block, a library call's run; note its losses in `lost` and
    yield a function returning why its standard error output was lost (or None).

    Runs that overlap (two threads) share one guard over the caller's stream: the first
    installs it, the last puts the caller's stream back (unless something else replaced it
    meanwhile), and each run is charged only with its own losses. The command line's own
    GuardedStream is used as it is: the command line notes and reports its losses. A
    sys.stderr that is None is lost output from the start.
    """
    with _SHARED_LOCK:
        current = sys.stderr
        if isinstance(current, _SharedStderr):
            shared: _SharedStderr | None = current
        elif isinstance(current, GuardedStream):
            shared = None
        else:
            shared = _SharedStderr(current)
            sys.stderr = cast(TextIO, shared)
        if shared is not None:
            shared.runs.append(lost)
            if shared.missing:
                lost.setdefault(STDERR, NOT_OPEN)

    def why() -> str | None:
        if shared is None and isinstance(current, GuardedStream):
            return current.lost  # the command line's
        return lost.get(STDERR)

    token = _RUN_LOST.set(lost)
    try:
        yield why
    finally:
        _RUN_LOST.reset(token)
        if shared is not None:
            with _SHARED_LOCK:
                shared.runs[:] = [run for run in shared.runs if run is not lost]
                if not shared.runs and sys.stderr is shared:
                    sys.stderr = cast(TextIO, shared.saved)
