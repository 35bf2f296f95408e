"""Debian's headless Chromium for the browser tests (marked `browser`): open a page, get the
run (its DOM with `--dump-dom`, its console in the log on stderr), or measure a copy of a
report page with a script of the test's own."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


# the page's Content-Security-Policy forbids every script, the test's own too
_CSP = re.compile(r'<meta http-equiv="Content-Security-Policy"[^>]*>')
# writes the page's width, its window's and what the test's script found into the title
_MEASURE = """<script>
{script}
document.title = JSON.stringify({{
  scroll: document.documentElement.scrollWidth,
  viewport: document.documentElement.clientWidth,
  found: {found},
}});
</script>"""


@dataclass(frozen=True)
class Measured:
    """What `measure` read in Chromium: the page's scroll width, its window's width (px) and
    the value of the test's `found` expression."""

    scroll: int
    viewport: int
    found: Any


def measure(page: Path, tmp: Path, width: int, script: str = "", found: str = "null") -> Measured:
    """Open a copy of the report `page` (in `tmp`) in a `width` x 900 px window, with its
    Content-Security-Policy taken out and, at its end, `script` and then a script writing the
    page's widths and the JSON value of the expression `found` into the title; return them."""
    text = _CSP.sub("", page.read_text(encoding="utf-8"))
    probe = _MEASURE.format(script=script, found=found)
    copy = tmp / "measured.html"
    copy.write_text(text.replace("</body>", probe + "</body>"), encoding="utf-8")
    run = chromium(copy, tmp / "profile", "--dump-dom", f"--window-size={width},900")
    title = re.search(r"<title>(\{.*?)</title>", run.stdout, re.S)
    assert title is not None, run.stdout[:500]
    got = json.loads(html.unescape(title.group(1)))
    return Measured(got["scroll"], got["viewport"], got["found"])
