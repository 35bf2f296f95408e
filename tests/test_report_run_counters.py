"""The runs table shows what each run stored and the run's own counters (tester, R3 defect 2).

A collect run whose 14 answers were all 429 stored none of them: the table said 429 = 0, as it
counted stored answers only, though the frame carries `run_requests`, `run_http_429` and
`run_http_5xx` (README: "stored 404/429/5xx per run and the run's own counters"). A collect
run whose only answers were repeated 202s showed `n/a` for answers though it sent 3 requests.
Both views are now columns of the table, in index.html and report.md alike.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from asg_audit.audit import analyze
from asg_audit.report import render
from asg_audit.store import open_store


def _row(text: str, run_id: str) -> list[str]:
    """Return the cells of the runs-table row of `run_id` (HTML or Markdown)."""
    for line in text.replace("</tr>", "\n").splitlines():
        if run_id in line:
            if "<td" in line:
                return [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", line)]
            return [c.strip() for c in line.strip().strip("|").split("|")]
    raise AssertionError(f"no row for {run_id}")


def test_runs_table_shows_the_runs_own_counters(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    with open_store(db) as store:
        limited = store.start_run("collect", run_id="collect-limited")
        store.finish_run(
            limited, status="incomplete", stats={"requests": 14, "http_429": 14, "http_5xx": 0}
        )
        waiting = store.start_run("collect", run_id="collect-waiting")
        store.finish_run(waiting, status="ok", stats={"requests": 3, "http_429": 0, "http_5xx": 0})
    report = render(analyze(db), tmp_path / "r", formats="html,md")
    page = html.unescape(report.paths["html"].read_text(encoding="utf-8"))
    md = report.paths["md"].read_text(encoding="utf-8")
    table = page.split("Records stored per run")[1].split("</table>")[0]
    headers = re.findall(r'<th scope="col">(.*?)</th>', table)
    assert headers == [
        "run",
        "command",
        "status",
        "records",
        "stored 404",
        "stored 429",
        "stored 5xx",
        "requests (run)",
        "429 (run)",
        "5xx (run)",
    ]
    for text in (table, md):
        assert "each run's own counts of requests, 429 and 5xx answers" in (
            page if text is table else md
        )
        # nothing stored, 14 requests all answered 429: the run's own count says so
        assert _row(text, "collect-limited")[3:] == ["0", "0", "0", "0", "14", "14", "0"]
        # only repeated 202s (not stored): 3 requests, not `n/a`
        assert _row(text, "collect-waiting")[3:] == ["0", "0", "0", "0", "3", "0", "0"]
