"""A long unbroken string in a cell wraps: no table is wider than the page (headless Chromium).

Tester D #2: one long token (a 170-character URL label, a 140-character malformed txid, a
5,000-character label) made the findings table 3,000 to 79,000 px wide. The page itself runs no
script (its Content-Security-Policy forbids it), so the test measures a copy of it with the
policy taken out and one line of script that writes the widths into the title.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _browser import measure
from _report_store import report_store, settled

from asg_audit.audit import analyze
from asg_audit.report import render

pytestmark = pytest.mark.browser

LONG_LABELS = {
    "url": "https://example.com/" + "a" * 150,
    "huge": "x" * 5000,
}
LONG_TXID = "ab" * 70


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("long_cells")
    records = [settled(t, label) for t, label in LONG_LABELS.items()]
    records.append(settled("tx", "cat", bsv_txid=LONG_TXID))
    db = report_store(tmp, records, options=["cat", "dog"])
    return render(analyze(db), tmp / "reports", formats="html").paths["html"]


def test_report_long_tokens_are_in_the_findings(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert LONG_TXID in text
    # a value past 200 characters is cut, saying how much (test_report_cut_cells.py)
    assert LONG_LABELS["huge"][:200] + "… (4,800 more characters)" in text
    assert "consensus.label_outside_options" in text and "txid.malformed" in text


@pytest.mark.parametrize("width", [1280, 800])
def test_report_no_table_is_wider_than_the_page(page: Path, tmp_path: Path, width: int) -> None:
    got = measure(page, tmp_path, width)
    assert got.scroll <= got.viewport, f"page {got.scroll} px wide in a {got.viewport} px window"
