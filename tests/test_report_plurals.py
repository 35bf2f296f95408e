"""Counts meet their nouns in the singular too (tester, R3 defect 4).

A store with one day of tasks gave the latency chart the alt text "on 1 days of creation";
the other count texts of the report ("1 tasks", "1 sats", "1 more rows", "1 findings are in
both reports") had the same fault. `report.words.counted` now writes every one of them.
"""

from __future__ import annotations

from pathlib import Path

from _audit_job import result_lines

from asg_audit.audit import analyze
from asg_audit.ingest_files import ingest_paths
from asg_audit.report import draw_charts, render
from asg_audit.report.content import format_value
from asg_audit.report.markdown import _table
from asg_audit.report.render import Table
from asg_audit.report.words import counted, plural
from asg_audit.store import open_store


def test_counted_and_plural() -> None:
    assert counted(1, "day") == "1 day"
    assert counted(0, "day") == "0 days"
    assert counted(1204, "day") == "1,204 days"
    assert counted(None, "task") == "n/a tasks"
    assert counted(1, "most common label") == "1 most common label"
    assert plural(1, "is", "are") == "is" and plural(2, "is", "are") == "are"
    assert format_value(1, "sats") == "1 sat" and format_value(975, "sats") == "975 sats"


def test_one_day_of_one_task_is_said_in_the_singular(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    with open_store(db):
        pass
    export = tmp_path / "one.ndjson"
    export.write_text(result_lines(1), encoding="utf-8")
    ingest_paths(db, [export])
    audit = analyze(db, since="2026-04-08", until="2026-04-09")
    charts = draw_charts(audit.frames, slo_seconds=audit.config.slo_seconds)
    over_time = charts["latency_over_time"].alt
    assert "on 1 day of creation" in over_time, over_time
    assert "for 1 settled task:" in charts["latency_distribution"].alt
    assert "for 1 task in 20 bins" in charts["confidence"].alt
    assert "(1 task)" in charts["confidence"].alt
    assert "on 1 day from" in charts["spend"].alt
    every = " ".join(c.alt for c in charts.values())
    for wrong in ("1 days", "1 tasks", "1 groups", "1 most common labels", "1 settled tasks"):
        assert wrong not in every, (wrong, every)
    report = render(audit, tmp_path / "r", formats="html,md")
    for path in report.paths.values():
        text = path.read_text(encoding="utf-8")
        assert "on 1 day of creation" in text
        assert "1 days" not in text


def test_one_more_row_is_singular(tmp_path: Path) -> None:
    table = Table(["a"], [["x"]], [""], more=1)
    assert "_and 1 more row_" in _table(table)


def test_one_more_row_is_singular_in_html() -> None:
    from asg_audit.report.render import _ENV

    page = _ENV.from_string('{% from "_table.html.j2" import table %}{{ table(t) }}').render(
        t=Table(["a"], [["x"]], [""], more=1)
    )
    assert "and 1 more row<" in page
