"""Only data text (ids, labels, messages, expected/actual) wraps anywhere: a header wraps only
between its words, a figure or a severity not at all, and still no table is wider than the page
(headless Chromium).

Review (R4 #4): `overflow-wrap: anywhere` on every th/td let a 5,000-character label squeeze the
short columns: headers read `Sever|ity`, figures split `0.65`/`71` at 900 px. The page runs no
script (its Content-Security-Policy forbids it), so the test measures a copy of it with the
policy taken out and a script that writes what it found into the title.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _browser import measure
from _report_store import report_store, settled

from asg_audit.audit import analyze
from asg_audit.report import render

pytestmark = pytest.mark.browser

# a header's words, and every figure and severity cell's whole text: each on one line
_BROKEN = """const broken = [];
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
}"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cell_wrapping")
    records = [settled("huge", "x" * 5000), settled("odd", "cat", confidence=0.6571)]
    db = report_store(tmp, records, options=["cat", "dog"])
    return render(analyze(db), tmp / "reports", formats="html").paths["html"]


@pytest.mark.parametrize("width", [1280, 900, 800])
def test_headers_figures_and_severities_are_not_broken(
    page: Path, tmp_path: Path, width: int
) -> None:
    got = measure(page, tmp_path, width, _BROKEN, "{cells: heads.length + cells.length, broken}")
    cells, broken = got.found["cells"], got.found["broken"]
    assert cells > 20  # the findings tables' headers and figures are measured
    assert broken == [], f"cells broken over lines at {width} px: {broken}"
    assert got.scroll <= got.viewport, f"page {got.scroll} px wide in a {got.viewport} px window"
