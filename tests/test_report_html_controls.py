"""The HTML report shows control characters and bidi overrides as visible escapes, as report.md.

Tester T #7: a label `abc<U+202E>def<ESC>[31mRED` was written raw into index.html (the override
reversed the rest of the cell; `cat index.html` ran the escape), while report.md showed
`\\u202e` and `\\x1b`. The real commands (`track`, `ingest`, `report`) build the report from such
a label and an undocumented status holding an escape; index.html holds no control character
or bidi override at all, shows the same escapes as report.md, and a real headless Chromium
shows them as text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _browser import chromium
from _hardening_procs import report_via_cli

# What a terminal or a bidi renderer acts on (the set `model.printable` escapes).
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
LABEL = "abc\u202edef\x1b[31mRED\x07\x9b\u2066x"
STATUS = "\x1b[31msettled<i>\u202e"
LABEL_SHOWN = "abc\\u202edef\\x1b[31mRED\\x07\\x9b\\u2066x"
STATUS_SHOWN = "\\x1b[31msettled&lt;i&gt;\\u202e"


def _result(task_id: str, status: str, label: str) -> str:
    return json.dumps(
        {
            "task_id": task_id,
            "status": status,
            "consensus_label": label,
            "confidence": 1.0,
            "worker_count": 3,
            "agreement_count": 3,
            "created_at": "2026-09-15T05:49:59Z",
            "settlement": {
                "bsv_txid": "ab" * 32,
                "total_cost_sats": 975,
                "settled_at": "2026-09-15T05:50:36Z",
            },
        }
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("html_controls")
    subs = tmp / "subs.ndjson"
    subs.write_text(
        json.dumps(
            {
                "task_id": "tsk_h",
                "type": "cls",
                "consensus_threshold": 3,
                "label_spec": {"options": ["yes", "no"]},
                "created_at": "2026-09-15T05:49:59Z",
            }
        )
        + "\n"
    )
    results = tmp / "results.ndjson"
    results.write_text(
        _result("tsk_h", "settled", LABEL) + "\n" + _result("tsk_h2", STATUS, "yes") + "\n"
    )
    return report_via_cli(tmp, subs, results)


def test_html_controls_index_holds_none_and_shows_the_markdown_escapes(
    report: Path,
) -> None:
    page = (report / "index.html").read_text(encoding="utf-8")
    md = (report / "report.md").read_text(encoding="utf-8")
    assert UNSAFE.findall(page) == []
    assert UNSAFE.findall(md) == []
    assert f"<td>{LABEL_SHOWN}</td>" in page  # one cell, shown escaped
    assert f"label {LABEL_SHOWN} is not one of the submitted options" in page
    assert STATUS_SHOWN in page  # the undocumented status, escaped, in its tables
    # report.md shows the same escapes (it also escapes Markdown's `[`)
    assert LABEL_SHOWN.replace("[", "\\[") in md


@pytest.mark.browser
def test_html_controls_browser_shows_the_escapes_as_text(report: Path, tmp_path: Path) -> None:
    run = chromium(report / "index.html", tmp_path / "profile", "--dump-dom")
    dom = run.stdout
    assert f"<td>{LABEL_SHOWN}</td>" in dom
    assert UNSAFE.findall(dom) == []
