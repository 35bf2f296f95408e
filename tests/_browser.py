"""Debian's headless Chromium for the browser tests (marked `browser`): open a page, get the
run (its DOM with `--dump-dom`, its console in the log on stderr)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0",
]  # fmt: skip


def chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Open `page` in headless Chromium with the profile folder `profile` and the flags
    `extra` (`--dump-dom`, `--screenshot=...`); raise if Chromium fails."""
    return subprocess.run(
        [CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=90, check=True,
    )  # fmt: skip


def console_lines(run: subprocess.CompletedProcess[str]) -> list[str]:
    """The lines of the run's log that are console messages of the page."""
    return [line for line in run.stderr.splitlines() if "CONSOLE" in line]
