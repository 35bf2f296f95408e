"""Progress of a collector run: a live line on a terminal, periodic log lines otherwise; and
the console a progress bar is drawn on (a terminal's, or none).
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["ProgressReporter", "ProgressSnapshot", "format_eta", "is_terminal", "progress_console"]

log = logging.getLogger("asg_audit.collector")


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """Counts at one moment of a run."""

    settled: int
    pending: int
    not_found: int
    expired: int
    throttled: int  # 429 answers so far
    requests: int


def format_eta(seconds: float | None) -> str:
    """Return `1h02m`, `3m05s`, `12s` or `?`."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def is_terminal(stream: TextIO | None) -> bool:
    """Whether a live display may be drawn on `stream`: a terminal (a closed, missing or
    detached stream is not one)."""
    try:
        return stream is not None and bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def progress_console() -> Console | None:
    """The console a progress bar is drawn on: standard error when it is a terminal, else None
    (no bar).

    Never standard output, which holds a command's summary: rich draws on standard output by
    default and, when it is not a terminal, still writes there as a bar stops (an empty line
    before the summary, in a file or a pipe).
    """
    if not is_terminal(sys.stderr):
        return None
    from rich.console import Console

    return Console(stderr=True)


class ProgressReporter:
    """Turns snapshots into a rich live line (terminal) or a log line every `log_every_s`."""

    def __init__(
        self, *, stream: TextIO | None = None, live: bool | None = None, log_every_s: float = 10.0
    ) -> None:
        self.stream = stream or sys.stderr
        self.live = is_terminal(self.stream) if live is None else live
        self.log_every_s = log_every_s
        self._history: deque[tuple[float, int]] = deque(maxlen=60)
        self._throttles: deque[int] = deque(maxlen=60)  # 429s so far, at each snapshot
        self._last_log = 0.0
        self._live: Any = None

    def start(self) -> None:
        """Open the live display on a terminal."""
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(
                "", console=Console(file=self.stream), refresh_per_second=4, transient=False
            )
            self._live.start()

    def line(self, snap: ProgressSnapshot) -> str:
        """Return the one-line text for a snapshot (rate: finished tasks per wall second)."""
        now = time.monotonic()
        done = snap.settled + snap.not_found + snap.expired
        self._history.append((now, done))
        t0, d0 = self._history[0]
        rate = (done - d0) / (now - t0) if now - t0 > 0.5 else 0.0
        eta = snap.pending / rate if rate > 0 else None
        return (
            f"settled {snap.settled:,} | pending {snap.pending:,} | not found {snap.not_found:,}"
            f" | expired {snap.expired:,} | throttled {snap.throttled:,}"
            f" | {rate:,.1f} tasks/s | ETA {format_eta(eta)}"
        )

    def update(self, snap: ProgressSnapshot) -> None:
        """Show a snapshot."""
        text = self.line(snap)
        if self._live is not None:
            self._live.update(text)
            return
        now = time.monotonic()
        if now - self._last_log >= self.log_every_s:
            self._last_log = now
            log.info("collect: %s", text)

    def stop(self) -> None:
        """Close the live display."""
        if self._live is not None:
            self._live.stop()
            self._live = None
