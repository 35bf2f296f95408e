"""Table cells show newline, tab and CR alike in index.html and report.md, long values are cut,
and `--compare previous` compares with a report of the same store.

Testers T7-6, T7-7, T8-2: a status `<i>done</i>|\\n` and a txid ending in a tab read as
`<i>done</i>|` and `abab… x` in index.html while report.md wrote `<br>`; a 900,000-character
txid made every report file ~9 MB; a folder two stores report into compared store B's report
with store A's (19 new, 32 "resolved" findings that were another store's).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _browser import chromium
from _report_store import report_store, settled

from asg_audit.cli import main

STATUS = "<i>done</i>|\n"
TAB_TXID = "ab" * 31 + "\tx"
CRLF_TXID = "ab" * 31 + "\r\n"
CR_STATUS = "done\r\rX"


def _report(db: Path, out: Path, *extra: str) -> Path:
    assert main(["report", "--db", str(db), "--out", str(out), *extra]) == 0
    return out / (out / "LATEST").read_text().strip()


@pytest.fixture(scope="module")
def controls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cell_values")
    records = [
        settled("s1", status=STATUS),
        settled("t1", bsv_txid=TAB_TXID),
        settled("t2", bsv_txid=CRLF_TXID),
        settled("s2", status=CR_STATUS),
    ]
    return _report(report_store(tmp, records), tmp / "out")


def test_cells_show_newline_tab_and_cr_alike_in_both_formats(controls: Path) -> None:
    page = (controls / "index.html").read_text(encoding="utf-8")
    md = (controls / "report.md").read_text(encoding="utf-8")
    assert "<td>&#39;&lt;i&gt;done&lt;/i&gt;|\\x0a&#39;</td>" in page
    assert "'&lt;i&gt;done&lt;/i&gt;\\|\\x0a'" in md
    assert "ab" * 31 + "\\x09x" in page and "ab" * 31 + "\\x09x" in md
    assert "&#39;" + "ab" * 31 + "\\x0d\\x0a&#39;" in page and "'" + "ab" * 31 + "\\x0d\\x0a'" in md
    assert "done\\x0d\\x0dX" in page and "done\\x0d\\x0dX" in md
    assert "<br>" not in md.split("## Findings")[1].split("## Methodology")[0]
    assert "\t" not in page and "\r" not in page


@pytest.mark.browser
def test_browser_shows_the_escapes(controls: Path, tmp_path: Path) -> None:
    dom = chromium(controls / "index.html", tmp_path / "profile", "--dump-dom").stdout
    assert "ab" * 31 + "\\x09x" in dom and "done\\x0d\\x0dX" in dom


def test_long_txid_is_cut_everywhere(tmp_path: Path) -> None:
    junk = "z" * 900_000
    db = report_store(tmp_path, [settled(f"j{i}", bsv_txid=junk) for i in range(12)])
    run = _report(db, tmp_path / "out")
    for name in ("index.html", "report.md", "summary.json"):
        assert (run / name).stat().st_size < 2_000_000, name
    page = (run / "index.html").read_text(encoding="utf-8")
    assert "z" * 200 + "… (899,800 more characters)" in page
    doc = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    cut = [f for f in doc["findings"] if f["check_id"] == "txid.malformed"]
    assert cut and all(
        f["actual"].startswith("z" * 200 + "… (899,800 more characters; sha256 ") for f in cut
    )


def _summary(run: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    return doc


def test_compare_previous_picks_the_same_store(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = report_store(tmp_path / "a", [settled("a1", bsv_txid="bad-a")])
    b = report_store(tmp_path / "b", [settled("b1"), settled("b2", bsv_txid="bad")])
    shared = tmp_path / "shared"
    first_a = _report(a, shared)
    first_b = _report(b, shared, "--compare", "previous")  # only A's report there
    doc_b = _summary(first_b)
    assert doc_b["store"]["first_run_id"] != _summary(first_a)["store"]["first_run_id"]
    assert "compare" not in doc_b and "other stores" in doc_b["compare_skipped"]
    assert "no earlier report of this store" in (first_b / "index.html").read_text()
    second_a = _report(a, shared, "--compare", "previous")  # B's report is newer
    cmp = _summary(second_a)["compare"]
    assert cmp["previous_run_id"] == first_a.name and cmp["same_store"] is True
    assert cmp["store_note"] is None and cmp["resolved_findings"] == []
    other = _report(b, shared, "--compare", first_a.name)  # another store, by hand
    cmp = _summary(other)["compare"]
    assert cmp["same_store"] is False and cmp["store_note"].startswith("Different stores")
    assert "Different stores" in (other / "index.html").read_text()
    assert "Different stores" in (other / "report.md").read_text()
