"""Only data text (ids, labels, messages, expected/actual) wraps anywhere: a header wraps only
between its words, a figure or a severity not at all, and still no table is wider than the page
(headless Chromium).

Review (R4 #4): `overflow-wrap: anywhere` on every th/td let a 5,000-character label squeeze the
short columns: headers read `Sever|ity`, figures split `0.65`/`71` at 900 px. The page runs no
script (its Content-Security-Policy forbids it), so the test measures a copy of it with the
policy taken out and a script that writes what it found into the title.
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

# a header's words, and every figure and severity cell's whole text: each on one line
_PROBE = """<script>
const broken = [];
function oneLine(node, start, end) {
  const range = document.createRange();
  range.setStart(node, start);
  range.setEnd(node, end);
  const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
  return tops.size <= 1;
}
const heads = document.querySelectorAll("th");
for (const th of heads) {
  const walk = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
  for (let node = walk.nextNode(); node; node = walk.nextNode()) {
    for (const word of node.data.matchAll(/\\S+/g)) {
      if (!oneLine(node, word.index, word.index + word[0].length)) broken.push(word[0]);
    }
  }
}
const cells = document.querySelectorAll("td.num, td.sev-fail, td.sev-warn, td.sev-info");
for (const cell of cells) {
  const range = document.createRange();
  range.selectNodeContents(cell);
  const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
  if (tops.size > 1) broken.push(cell.textContent.trim());
}
document.title = "N=" + (heads.length + cells.length)
  + " W=" + document.documentElement.scrollWidth
  + " V=" + document.documentElement.clientWidth + " B=" + JSON.stringify(broken);
</script>"""


def _record(task: str, label: str, confidence: float = 1.0) -> dict[str, Any]:
    return {
        "task_id": task, "status": "settled", "consensus_label": label,
        "confidence": confidence, "worker_count": 3, "agreement_count": 3,
        "created_at": "2026-10-01T00:00:00Z", "settled_at": "2026-10-01T00:00:40Z",
        "cost_sats": 975, "bsv_txid": hashlib.sha256(task.encode()).hexdigest(),
    }  # fmt: skip


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cell_wrapping")
    records = [_record("huge", "x" * 5000), _record("odd", "cat", 0.6571)]
    subs = [
        {"task_id": r["task_id"], "task_type": "a", "consensus_threshold": 3,
         "label_spec": {"options": ["cat", "dog"]}, "created_at": "2026-10-01T00:00:00Z"}
        for r in records
    ]  # fmt: skip
    (tmp / "subs.ndjson").write_text("".join(json.dumps(s) + "\n" for s in subs))
    (tmp / "results.ndjson").write_text("".join(json.dumps(r) + "\n" for r in records))
    db = tmp / "s.duckdb"
    track_file(db, tmp / "subs.ndjson")
    ingest_paths(db, [tmp / "results.ndjson"])
    return render(analyze(db), tmp / "reports", formats="html").paths["html"]


def _measure(page: Path, tmp: Path, width: int) -> tuple[int, int, int, list[str]]:
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page.read_text())
    copy = tmp / "measured.html"
    copy.write_text(text.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    run = chromium(copy, tmp / "profile", "--dump-dom", f"--window-size={width},900")
    found = re.search(r"<title>N=(\d+) W=(\d+) V=(\d+) B=(.*?)</title>", run.stdout, re.S)
    assert found is not None, run.stdout[:500]
    broken = json.loads(found.group(4).replace("&quot;", '"').replace("&amp;", "&"))
    return int(found.group(1)), int(found.group(2)), int(found.group(3)), broken


@pytest.mark.parametrize("width", [1280, 900, 800])
def test_headers_figures_and_severities_are_not_broken(
    page: Path, tmp_path: Path, width: int
) -> None:
    cells, scroll, viewport, broken = _measure(page, tmp_path, width)
    assert cells > 20  # the findings tables' headers and figures are measured
    assert broken == [], f"cells broken over lines at {width} px: {broken}"
    assert scroll <= viewport, f"page {scroll} px wide in a {viewport} px window"
