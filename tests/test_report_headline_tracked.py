"""The headline says how many tracked tasks it does not count (none collected yet).

A store with 300 tracked (submitted) tasks and no result read "Tasks 0" in the headline, which
a reader takes as "nothing submitted"; only an info finding (`task.not_collected`) said it.
Now Tasks reads `0 (300 tracked, none collected)` in the HTML card, the Markdown row and the
notebook fragment, and summary.json's headline has `tracked_not_collected` (the tracked tasks
without a status: `task.not_collected`'s count plus `task.unknown`'s findings).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import polars as pl
from _analyses_frames import T0, result, results_frame, submission, submissions_frame
from _report_store import settled, tracked_store, write_ndjson

from asg_audit.audit import Audit, analyze, analyze_frames
from asg_audit.config import AuditConfig, CheckLevels
from asg_audit.ingest_files import ingest_paths
from asg_audit.report import render, render_summary_html
from asg_audit.report.content import headline


def _pages(audit: Audit, out: Path) -> tuple[dict[str, Any], str, str]:
    """Return summary.json's headline, index.html (references resolved) and report.md."""
    report = render(audit, out, run_id="r1")
    summary = json.loads((report.folder / "summary.json").read_text(encoding="utf-8"))
    page = html.unescape(report.paths["html"].read_text(encoding="utf-8"))
    return summary["headline"], page, report.paths["md"].read_text(encoding="utf-8")


def _card(page: str, key: str) -> str:
    found = re.search(rf'<li class="card" data-key="{key}"[^>]*>.*?</li>', page)
    assert found is not None, key
    return found.group(0)


def _md_row(md: str, label: str) -> str:
    return next(line for line in md.splitlines() if line.startswith(f"| {label} |"))


def test_headline_of_tracked_tasks_never_collected_says_none_collected(tmp_path: Path) -> None:
    db = tracked_store(tmp_path, (f"t{i:03}" for i in range(300)), ["cat"])
    audit = analyze(db)
    values, page, md = _pages(audit, tmp_path / "reports")
    assert values["tasks"] == 0
    assert values["tracked_not_collected"] == 300
    card = _card(page, "tasks")
    assert 'data-value="0"' in card  # the figure stays the stored tasks
    assert '<div class="value">0</div>' in card
    assert '<div class="note">300 tracked, none collected</div>' in card
    assert _md_row(md, "Tasks") == r"| Tasks | 0 \(300 tracked, none collected\) |"
    fragment = render_summary_html(audit)  # the notebook's headline
    assert '<div class="note">300 tracked, none collected</div>' in fragment
    # the empty tables say the same number
    assert "No data: 300 tasks are tracked but nothing was collected yet" in page


def test_headline_of_some_tasks_collected_counts_the_others_beside(tmp_path: Path) -> None:
    db = tracked_store(tmp_path, ["a", "b", "c"], ["cat"])
    ingest_paths(db, [write_ndjson(tmp_path / "results.ndjson", [settled("a")])])
    values, page, md = _pages(analyze(db), tmp_path / "reports")
    assert (values["tasks"], values["tracked_not_collected"]) == (1, 2)
    assert '<div class="note">and 2 tracked, not collected</div>' in _card(page, "tasks")
    assert _md_row(md, "Tasks") == r"| Tasks | 1 \(and 2 tracked, not collected\) |"


def test_headline_without_tracked_tasks_left_out_has_no_note(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    ingest_paths(db, [write_ndjson(tmp_path / "results.ndjson", [settled("a"), settled("b")])])
    values, page, md = _pages(analyze(db), tmp_path / "reports")
    assert (values["tasks"], values["tracked_not_collected"]) == (2, 0)
    assert 'class="note"' not in page
    assert _md_row(md, "Tasks") == "| Tasks | 2 |"


def _poll_state(*rows: tuple[str, str]) -> pl.DataFrame:
    schema = {"task_id": pl.String, "state": pl.String, "attempts": pl.Int64}
    return pl.DataFrame([(*r, 1) for r in rows], schema=schema, orient="row")


def test_headline_counts_tracked_tasks_the_gateway_does_not_know() -> None:
    """A tracked task polled to the end without a status (a 404: `task.unknown`) is tracked
    and not collected too."""
    audit = analyze_frames(
        results_frame([]),
        submissions_frame([submission("gone"), submission("waiting"), submission("never")]),
        config=AuditConfig(),
        as_of=T0,
        poll_state=_poll_state(("gone", "not_found"), ("waiting", "pending")),
    )
    tasks = next(h for h in headline(audit) if h.key == "tasks")
    assert (tasks.value, tasks.note) == (0, "3 tracked, none collected")


def test_headline_tracked_count_holds_when_the_counting_checks_are_disabled() -> None:
    # the count comes from the data (the `tracked_coverage` frame), not from the findings of
    # `task.not_collected` / `task.unknown`: disabling them changes nothing here
    config = AuditConfig(
        checks={
            "task.not_collected": CheckLevels(enabled=False),
            "task.unknown": CheckLevels(enabled=False),
        }
    )
    audit = analyze_frames(
        results_frame([result("a")]),
        submissions_frame([submission("a"), submission("b"), submission("c")]),
        config=config,
        as_of=T0,
    )
    tasks = next(h for h in headline(audit) if h.key == "tasks")
    assert (tasks.value, tasks.note) == (1, "and 2 tracked, not collected")
    assert audit.summary()["tracked"] == 3
    assert audit.summary()["tracked_not_collected"] == 2
    assert audit["tracked_coverage"].row(0, named=True) == {
        "tracked": 3,
        "collected": 1,
        "not_collected": 2,
        "unknown": 0,
    }


def test_compare_lists_the_tracked_tasks_not_collected(tmp_path: Path) -> None:
    # "Tasks 0 -> 0, no change" hid 300 more tasks tracked and never collected
    first = analyze_frames(
        results_frame([]), submissions_frame([submission("a")]), config=AuditConfig(), as_of=T0
    )
    second = analyze_frames(
        results_frame([]),
        submissions_frame([submission(t) for t in ("a", "b", "c")]),
        config=AuditConfig(),
        as_of=T0,
    )
    render(first, tmp_path, run_id="r1", formats="json")
    report = render(second, tmp_path, run_id="r2", formats=("json", "md"), compare="previous")
    summary = json.loads((report.folder / "summary.json").read_text(encoding="utf-8"))
    rows = {r["key"]: r for r in summary["compare"]["headline"]}
    assert (rows["tasks"]["previous"], rows["tasks"]["current"]) == (0, 0)
    tracked = rows["tracked_not_collected"]
    assert (tracked["label"], tracked["previous"], tracked["current"]) == (
        "Tracked, not collected",
        1,
        3,
    )
    assert "Tracked, not collected" in report.paths["md"].read_text(encoding="utf-8")
