"""Debian's headless Chromium for the browser tests (marked `browser`): open a page, get the
run (its DOM with `--dump-dom`, its console in the log on stderr), or measure a copy of a
report page with a script of the test's own; and the small report stores these tests (and their
siblings that read the same reports without a browser) build from a few settled results."""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _records import settled_record

from asg_audit.ingest_files import ingest_paths, track_file
from asg_audit.report import RenderedReport

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


def settled(task: str, label: str = "cat", **fields: object) -> dict[str, object]:
    """A settled result of `task` labelled `label` (3 of 3 workers agree, 975 sats, created
    2026-10-01T00:00:00Z and settled 40 s later, a txid of its own); `fields` override."""
    return settled_record(
        task,
        **{
            "consensus_label": label,
            "created_at": "2026-10-01T00:00:00Z",
            "settled_at": "2026-10-01T00:00:40Z",
            "bsv_txid": hashlib.sha256(task.encode()).hexdigest(),
            **fields,
        },
    )


def report_store(
    folder: Path, records: Sequence[dict[str, object]], *, options: Sequence[str] = ()
) -> Path:
    """Return a new store `folder/s.duckdb` holding `records`, ingested from
    `folder/results.ndjson`; with label `options`, their tasks are tracked first (type a, T=3,
    created 2026-10-01, from `folder/subs.ndjson`)."""
    db = folder / "s.duckdb"
    if options:
        subs = folder / "subs.ndjson"
        subs.write_text(
            "".join(
                json.dumps(
                    {"task_id": r["task_id"], "task_type": "a", "consensus_threshold": 3,
                     "label_spec": {"options": list(options)}, "created_at": "2026-10-01T00:00:00Z"}
                ) + "\n"
                for r in records
            )
        )  # fmt: skip
        track_file(db, subs)
    results = folder / "results.ndjson"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    ingest_paths(db, [results])
    return db


def page_and_markdown(report: RenderedReport) -> tuple[str, str]:
    """The text of a report's index.html with its character references resolved, and of its
    report.md with no backslash (Markdown's escapes taken out)."""
    page = html.unescape(report.paths["html"].read_text(encoding="utf-8"))
    md = report.paths["md"].read_text(encoding="utf-8").replace("\\", "")
    return page, md
