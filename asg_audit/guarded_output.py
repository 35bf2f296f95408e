"""Output streams whose failed writes are noted instead of raised: one implementation for the
command line (`cli.main` guards sys.stdout and sys.stderr) and the Python API (`run_audit`
guards its log and sys.stderr for the run).

A log on a full disk (`>> audit.log 2>&1`, ENOSPC), a failing device (EIO) or a stream the
caller closed must not stop the work: the store and the report are what a run is for. The
first failed write notes why in the `lost` mapping the stream was given (its name -> the OS's
words), and nothing more is written to it.

Its own small module, imported with the command line (while stop signals are held back): it
imports nothing but the standard library's lightest modules.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import Any, TextIO

__all__ = ["STDERR", "STDOUT", "GuardedStream"]

STDOUT, STDERR = "standard output", "standard error"


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
        self, stream: TextIO, name: str, lost: dict[str, str], *, own_process: bool
    ) -> None:
        self._stream = stream
        self._name = name
        self._lost = lost
        self._own_process = own_process

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
                return self._stream.write(text)
            except (OSError, ValueError) as exc:
                self._failed(exc)
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

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, buffer, ...
        return getattr(self._stream, name)

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
