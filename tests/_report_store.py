"""The small report stores the report tests build from a few settled results, and the text of
the reports rendered from them as their reader sees it."""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from _records import settled_record

from asg_audit.audit import analyze
from asg_audit.ingest_files import ingest_paths, track_file
from asg_audit.report import RenderedReport, render


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


def write_ndjson(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write `rows` to `path` as NDJSON (one JSON text a line, UTF-8); return `path`."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def submission(task: str, options: Sequence[str]) -> dict[str, object]:
    """The submission of `task`: type a, T=3, label `options`, created 2026-10-01."""
    return {
        "task_id": task,
        "task_type": "a",
        "consensus_threshold": 3,
        "label_spec": {"options": list(options)},
        "created_at": "2026-10-01T00:00:00Z",
    }


def tracked_store(folder: Path, tasks: Iterable[str], options: Sequence[str]) -> Path:
    """Return the store `folder/s.duckdb` with `tasks` tracked (their `submission`s with label
    `options`, from `folder/subs.ndjson`)."""
    db = folder / "s.duckdb"
    track_file(db, write_ndjson(folder / "subs.ndjson", (submission(t, options) for t in tasks)))
    return db


def report_store(
    folder: Path, records: Sequence[dict[str, object]], *, options: Sequence[str] = ()
) -> Path:
    """Return a new store `folder/s.duckdb` holding `records`, ingested from
    `folder/results.ndjson`; with label `options`, their tasks are tracked first (type a, T=3,
    created 2026-10-01, from `folder/subs.ndjson`)."""
    db = folder / "s.duckdb"
    if options:
        tracked_store(folder, (str(r["task_id"]) for r in records), options)
    ingest_paths(db, [write_ndjson(folder / "results.ndjson", records)])
    return db


def page_text(report: RenderedReport | Path) -> str:
    """The text of a report's index.html (`report` rendered, or its run's folder) with its
    character references resolved."""
    path = report / "index.html" if isinstance(report, Path) else report.paths["html"]
    return html.unescape(path.read_text(encoding="utf-8"))


def markdown_text(report: RenderedReport | Path, *, unescape: bool = False) -> str:
    """The text of a report's report.md (`report` rendered, or its run's folder) with no
    backslash (Markdown's escapes taken out); with `unescape`, its character references
    (`&gt;`) resolved too."""
    path = report / "report.md" if isinstance(report, Path) else report.paths["md"]
    md = path.read_text(encoding="utf-8").replace("\\", "")
    return html.unescape(md) if unescape else md


def page_and_markdown(
    report: RenderedReport | Path, *, unescape_md: bool = False
) -> tuple[str, str]:
    """`page_text` and `markdown_text` of a report (rendered, or its run's folder)."""
    return page_text(report), markdown_text(report, unescape=unescape_md)


def report_pages(db: Path, out: Path, **render_args: Any) -> tuple[str, str]:
    """`page_and_markdown` of the HTML and Markdown report of the store `db`, rendered into
    `out` (`render_args` passed on to `render`)."""
    return page_and_markdown(render(analyze(db), out, formats="html,md", **render_args))


def summary_json(report: RenderedReport) -> dict[str, Any]:
    """A rendered report's summary.json, as read back from the file."""
    doc: dict[str, Any] = json.loads(report.paths["json"].read_text(encoding="utf-8"))
    return doc
