"""Report tables show flags as yes/no and counts as whole numbers, in HTML and Markdown alike.

The billing-window table read `| 2026-09 | False | skipped: ... |`, the cost-model table
`<td>False</td>`, and polls per task `1.000 | 1.000 | 17.000`. Every cell goes through
`content.format_value`. A real store and report, real frames of the analyses; HTML parsed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest

from asg_audit.audit import analyze, billing_window
from asg_audit.ingest_files import ingest_paths
from asg_audit.report import render
from asg_audit.report.content import format_value
from asg_audit.report.markdown import md_table
from asg_audit.report.render import _collection_frame, frame_table

_LINES = "".join(
    json.dumps(
        {
            "task_id": f"t{i}",
            "status": "settled",
            "consensus_label": "cat",
            "confidence": 1.0,
            "worker_count": 3,
            "agreement_count": 3,
            "bsv_txid": f"{i:064x}",
            "created_at": "2026-04-08T21:00:00Z",
            "settled_at": "2026-04-08T21:00:47Z",
            "cost_sats": 975 if i % 2 else 1000,
        }
    )
    + "\n"
    for i in range(1, 7)
)


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self._in = False

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag == "td":
            self._in = True
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in = False

    def handle_data(self, data: str) -> None:
        if self._in:
            self.cells[-1] += data


def test_format_value_shows_flags_as_yes_and_no_whatever_the_kind() -> None:
    for kind in ("text", "count", "num", "ratio", "share"):
        assert format_value(True, kind) == "yes"
        assert format_value(False, kind) == "no"
    assert format_value(17.0, "num") == "17"
    assert format_value(1.119565, "num") == "1.12"
    assert format_value(1234, "num") == "1,234"


def test_billing_window_table_shows_yes_and_no() -> None:
    since, until = datetime(2026, 9, 15, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    frame = billing_window(["2026-09", "2026-10"], since, until)
    table = frame_table(frame)  # as a report shows the billing frames
    compared = [row[table.headers.index("compared")] for row in table.rows]
    assert compared == ["no", "yes"]
    text = md_table(table.headers, table.rows)
    assert "| 2026-09 | no |" in text and "| 2026-10 | yes |" in text
    assert "True" not in text and "False" not in text


def test_optional_tables_show_counts_and_sats_with_separators() -> None:
    frame = pl.DataFrame(
        {"month": ["2026-09"], "tasks_settled": [1203], "total_cost_sats": [277575]},
        schema={"month": pl.String, "tasks_settled": pl.Int64, "total_cost_sats": pl.Int64},
    )
    assert frame_table(frame).rows == [["2026-09", "1,203", "277,575 sats"]]


def test_polls_per_task_are_whole_numbers() -> None:
    polls = pl.DataFrame(
        {
            "tasks": [460],
            "polls": [515],
            "mean": [1.119565],
            "p50": [1.0],
            "p90": [1.0],
            "max": [17],
        },
        schema={
            "tasks": pl.UInt32,
            "polls": pl.Int64,
            "mean": pl.Float64,
            "p50": pl.Float64,
            "p90": pl.Float64,
            "max": pl.Int64,
        },
    )
    delay = pl.DataFrame({"tasks": [0]}, schema={"tasks": pl.UInt32})
    table = frame_table(_collection_frame({"polls_per_task": polls, "detection_delay": delay}))
    assert table.rows == [["polls per task", "460", "1.12", "1", "1", "17"]]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cells")
    export = folder / "six.ndjson"
    export.write_text(_LINES)
    db = folder / "six.duckdb"
    ingest_paths(db, [export], progress=False)
    return render(analyze(db), folder / "reports", formats="html,md,json").folder


def test_report_cost_model_table_shows_yes_and_no_in_html_and_markdown(report: Path) -> None:
    parser = _Cells()
    parser.feed((report / "index.html").read_text())
    assert "yes" in parser.cells and "no" in parser.cells
    assert not {"True", "False"} & set(parser.cells)
    md = (report / "report.md").read_text()
    assert "| 325 sats per agreeing worker | yes |" in md
    assert "| True |" not in md and "| False |" not in md


def test_format_value_shows_times_in_utc_as_iso_8601() -> None:
    """A time in a table (a chain or billing frame's timestamps) is shown as the headline and
    summary.json show times, not as Python prints a datetime (`2026-10-01 02:00:40+02:00`)."""
    from datetime import timedelta, timezone

    paris = timezone(timedelta(hours=2))
    assert (
        format_value(datetime(2026, 10, 1, 2, 0, 40, tzinfo=paris)) == "2026-10-01T00:00:40+00:00"
    )
    assert format_value(datetime(2026, 10, 1, 0, 0, 40)) == "2026-10-01T00:00:40+00:00"
    with_ms = datetime(2026, 10, 1, 0, 0, 40, 250_000, tzinfo=UTC)
    assert format_value(with_ms, "text") == "2026-10-01T00:00:40.250000+00:00"
    frame = pl.DataFrame({"block_time": [with_ms, None]})
    table = frame_table(frame)
    assert table.rows == [["2026-10-01T00:00:40.250000+00:00"], ["n/a"]]
