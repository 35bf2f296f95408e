"""What an ingest tells its user: each file's outcome, the summary, and the progress bar.

No store and no files are touched here: `asg_audit.ingest` fills these in as it goes.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from asg_audit.filelines import STDIN, STDIN_ORIGIN
from asg_audit.model import path_text, printable
from asg_audit.store import WriteStats

__all__ = ["FileOutcome", "IngestSummary", "ProgressBar", "ProgressFn", "print_ingest_summary"]

ProgressFn = Callable[[int], None]


@dataclass(slots=True)
class FileOutcome:
    """What happened to one file."""

    path: str
    status: str  # ingested | already ingested | failed
    records: int = 0
    accepted: int = 0
    rejected: int = 0
    error: str | None = None


@dataclass(slots=True)
class IngestSummary:
    """The summary printed at the end of an ingest."""

    run_id: str = ""
    files: list[FileOutcome] = field(default_factory=list)
    records: int = 0
    accepted: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    new_results: int = 0
    updated_results: int = 0
    conflicts: int = 0
    duplicates: int = 0
    # accepted records with no status (a submission, an error body): no result is made of them
    without_status: int = 0

    def add(self, records: int, rejected: Counter[str], totals: WriteStats) -> None:
        """Count what one commit stored: records read, rejects by reason, store changes."""
        self.records += records
        self.accepted += records - rejected.total()
        self.rejected_by_reason.update(rejected)
        self.new_results += totals.new_results
        self.updated_results += totals.updated_results
        self.conflicts += totals.new_conflicts
        self.duplicates += totals.duplicates

    @property
    def rejected(self) -> int:
        """Return the number of records quarantined in `rejects`."""
        return sum(self.rejected_by_reason.values())

    @property
    def failed_files(self) -> list[FileOutcome]:
        """Return the files that could not be read (the command exits 2 when there are any)."""
        return [f for f in self.files if f.status == "failed"]

    def run_stats(self) -> dict[str, Any]:
        """Return what the run records: the summary and, when files failed, an `error` naming
        how many and the first one's reason (what `asg-audit runs` shows)."""
        stats = self.as_dict()
        failed = self.failed_files
        if failed:
            of = f"{len(failed)} of {len(self.files)} files" if len(self.files) > 1 else "the file"
            stats["error"] = f"{of} could not be read; first: {failed[0].error}"
        return stats

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as plain data (for JSON output and tests)."""
        return {
            "run_id": self.run_id,
            "records": self.records,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rejected_by_reason": dict(self.rejected_by_reason),
            "new_results": self.new_results,
            "updated_results": self.updated_results,
            "conflicts": self.conflicts,
            "duplicates": self.duplicates,
            "without_status": self.without_status,
            "files": [_slots(f) for f in self.files],
        }


def _slots(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


class ProgressBar:
    """One progress bar for the whole ingest, in bytes of the files; it names the current file.

    Drawn on standard error when it is a terminal (`progress.progress_console`), else not at
    all: never on standard output, which holds the summary (rich draws there by default and,
    when it is no terminal, still wrote an empty line there as the bar stopped).
    """

    def __init__(self, files: list[Path]) -> None:
        from asg_audit.progress import progress_console

        self._sizes = [_size(p) for p in files]
        self._count = len(files)
        self._index = 0
        self._done = 0
        self._bar: Any = None
        console = progress_console()
        if console is None:  # no terminal to draw on: no bar
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._task = self._bar.add_task("ingest", total=sum(self._sizes))
        self._bar.start()

    @property
    def drawn(self) -> bool:
        """Whether a bar is drawn (standard error is a terminal)."""
        return self._bar is not None

    def start_file(self, path: Path) -> None:
        if self._bar is None:
            return
        name = STDIN_ORIGIN if path == STDIN else printable(path_text(path.name), one_line=True)
        name = name if len(name) <= 40 else name[:19] + "..." + name[-18:]
        self._bar.update(self._task, description=f"file {self._index + 1}/{self._count} {name}")

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def end_file(self) -> None:
        self._done += self._sizes[self._index]
        self._index += 1
        if self._bar is not None:
            self._bar.update(self._task, completed=self._done)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _size(path: Path) -> int:
    if path == STDIN:
        return 0
    try:
        return path.stat().st_size
    except OSError:
        return 0


_LISTED_FILES = 20  # a summary names each file up to this many


def print_ingest_summary(summary: IngestSummary, *, file: IO[str] | None = None) -> None:
    """Print the end-of-ingest summary: records, accepted, rejected by reason, changes."""
    out = file or sys.stdout
    print(f"run {summary.run_id}", file=out)
    if len(summary.files) <= _LISTED_FILES:
        for f in summary.files:
            line = f"  {f.status:<17} {printable(f.path, one_line=True)}"
            if f.status == "ingested":
                line += (
                    f" ({f.records:,} records, {f.accepted:,} accepted, {f.rejected:,} rejected)"
                )
            print(line, file=out)
    else:  # many files: how many of each (a failed file's error follows on stderr)
        for status, n in sorted(Counter(f.status for f in summary.files).items()):
            print(f"  {status:<17} {n:,} files", file=out)
    print(f"records read      {summary.records:>12,}", file=out)
    print(f"accepted          {summary.accepted:>12,}", file=out)
    print(f"rejected          {summary.rejected:>12,}", file=out)
    for reason, n in sorted(summary.rejected_by_reason.items()):
        print(f"  {reason:<16}{n:>12,}", file=out)
    print(f"new results       {summary.new_results:>12,}", file=out)
    print(f"updated results   {summary.updated_results:>12,}", file=out)
    print(f"conflicts         {summary.conflicts:>12,}", file=out)
    print(f"duplicates        {summary.duplicates:>12,}", file=out)
    if summary.without_status:
        # tester T1: a submissions export given to `ingest` said "300 accepted, 0 new results"
        print(
            f"without a status  {summary.without_status:>12,}  (no result is made of them: a"
            " submissions export is stored by `asg-audit track`)",
            file=out,
        )
    for f in summary.failed_files:
        print(f"asg-audit: error: {printable(f.error, one_line=True)}", file=sys.stderr)
