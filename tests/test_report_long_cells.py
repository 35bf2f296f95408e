"""A long unbroken string in a cell wraps: no table is wider than the page (headless Chromium).

Tester D #2: one long token (a 170-character URL label, a 140-character malformed txid, a
5,000-character label) made the findings table 3,000 to 79,000 px wide. The page itself runs no
script (its Content-Security-Policy forbids it), so the test measures a copy of it with the
policy taken out and one line of script that writes the widths into the title.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from _browser import chromium

from asg_audit.audit import analyze
from asg_audit.ingest_files import ingest_paths, track_file
from asg_audit.report import render

pytestmark = pytest.mark.browser

LONG_LABELS = {
    "url": "https://example.com/" + "a" * 150,
    "huge": "x" * 5000,
}
LONG_TXID = "ab" * 70


def _record(task: str, label: str, txid: str | None = None) -> dict[str, Any]:
    return {
        "task_id": task, "status": "settled", "consensus_label": label, "confidence": 1.0,
        "worker_count": 3, "agreement_count": 3, "created_at": "2026-10-01T00:00:00Z",
        "settled_at": "2026-10-01T00:00:40Z", "cost_sats": 975,
        "bsv_txid": txid or hashlib.sha256(task.encode()).hexdigest(),
    }  # fmt: skip


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("long_cells")
    records = [_record(t, label) for t, label in LONG_LABELS.items()]
    records.append(_record("tx", "cat", txid=LONG_TXID))
    subs = [
        {"task_id": r["task_id"], "task_type": "a", "consensus_threshold": 3,
         "label_spec": {"options": ["cat", "dog"]}, "created_at": "2026-10-01T00:00:00Z"}
        for r in records
    ]  # fmt: skip
    (tmp / "subs.ndjson").write_text("".join(json.dumps(s) + "\n" for s in subs))
    (tmp / "results.ndjson").write_text("".join(json.dumps(r) + "\n" for r in records))
    db = tmp / "long.duckdb"
    track_file(db, tmp / "subs.ndjson")
    ingest_paths(db, [tmp / "results.ndjson"])
    return render(analyze(db), tmp / "reports", formats="html").paths["html"]


def _widths(page: Path, tmp: Path, width: int) -> tuple[int, int]:
    """Return the page's scroll width and its viewport width in Chromium at `width` px."""
    text = page.read_text(encoding="utf-8")
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text)
    probe = (
        "<script>document.title = 'W=' + document.documentElement.scrollWidth"
        " + ' V=' + document.documentElement.clientWidth;</script>"
    )
    copy = tmp / "measured.html"
    copy.write_text(text.replace("</body>", probe + "</body>"), encoding="utf-8")
    run = chromium(copy, tmp / "profile", "--dump-dom", f"--window-size={width},900")
    found = re.search(r"<title>W=(\d+) V=(\d+)</title>", run.stdout)
    assert found is not None, run.stdout[:500]
    return int(found.group(1)), int(found.group(2))


def test_report_long_tokens_are_in_the_findings(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert LONG_TXID in text and LONG_LABELS["huge"] in text
    assert "consensus.label_outside_options" in text and "txid.malformed" in text


@pytest.mark.parametrize("width", [1280, 800])
def test_report_no_table_is_wider_than_the_page(page: Path, tmp_path: Path, width: int) -> None:
    scroll, viewport = _widths(page, tmp_path, width)
    assert scroll <= viewport, f"page {scroll} px wide in a {viewport} px window"
