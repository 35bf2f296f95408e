"""summary.json's cap keeps findings of every check, and the report says where the rest are.

Tester D #1: with 150,000 `txid.malformed` findings and 100,000 `cost.mismatch` ones,
summary.json (capped at 100,000) held only cost.mismatch findings, while the HTML and Markdown
said "and N more (all in summary.json)" and the methodology "every finding is in summary.json".
The cap is lowered here so that a small store shows the same thing.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from _report_store import markdown_text, page_text, report_store, settled

from asg_audit.audit import Audit, analyze
from asg_audit.report import content, render
from asg_audit.report.content import fair_shares


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> Audit:
    """60 malformed txids (no difference) and 30 wrong costs (a difference each)."""
    tmp = tmp_path_factory.mktemp("findings_cap")
    lines = [settled(f"m{i}", bsv_txid=f"bad{i}") for i in range(60)]
    lines += [settled(f"c{i}", cost_sats=976 + i) for i in range(30)]
    return analyze(report_store(tmp, lines))


def _checks(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["check_id"]: c for c in doc["checks"]}


def test_fair_shares_give_every_check_a_share() -> None:
    assert fair_shares({"a": 150_000, "b": 100_000}, 100_000) == {"a": 50_000, "b": 50_000}
    assert fair_shares({"a": 150_000, "b": 10}, 100_000) == {"a": 99_990, "b": 10}
    assert fair_shares({"a": 5, "b": 7}, 100) == {"a": 5, "b": 7}
    assert sum(fair_shares({"a": 9, "b": 9, "c": 9}, 10).values()) == 10


def test_report_capped_summary_keeps_every_check(
    audit: Audit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = Counter(audit.findings["check_id"].to_list())
    assert counts["txid.malformed"] == 60 and counts["cost.mismatch"] == 30
    monkeypatch.setattr(content, "MAX_SUMMARY_FINDINGS", 40)
    report = render(audit, tmp_path, formats="html,md,json", run_id="r1")
    doc = json.loads(report.paths["json"].read_text(encoding="utf-8"))
    held = Counter(f["check_id"] for f in doc["findings"])
    assert held["txid.malformed"] == 20 and held["cost.mismatch"] == 20, held
    assert doc["findings_truncated"] is True
    assert doc["findings_left_out"] == sum(counts.values()) - 40
    assert doc["findings_cap"] == 40 and doc["findings_stored_run_id"] is None
    checks = _checks(doc)
    assert (checks["txid.malformed"]["in_summary"], checks["txid.malformed"]["left_out"]) == (
        20,
        40,
    )
    assert (checks["cost.mismatch"]["in_summary"], checks["cost.mismatch"]["left_out"]) == (20, 10)
    # the kept wrong costs are the largest ones (worst first within the check)
    kept = sorted(abs(f["difference"]) for f in doc["findings"] if f["check_id"] == "cost.mismatch")
    assert kept == list(range(11, 31))
    for page in (markdown_text(report), page_text(report)):
        assert "all in summary.json" not in page
        assert "every finding is in summary.json" not in page
        # 60 malformed: 10 shown, 50 more: 10 of them in summary.json, 40 in no file
        assert "and 50 more: 10 in summary.json, 40 in no file" in page
        assert "and 20 more: 10 in summary.json, 10 in no file" in page
        assert "left 50 out" in page


def test_report_says_the_rest_are_in_the_store(
    audit: Audit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(content, "MAX_SUMMARY_FINDINGS", 40)
    report = render(audit, tmp_path, formats="html,md", run_id="r2", findings_stored=True)
    assert report.summary["findings_stored_run_id"] == "r2"
    for page in (markdown_text(report), page_text(report)):
        assert "40 only in the store's findings table (run id r2)" in page
        assert "every finding is in the store's findings table (run id r2)" in page


def test_report_uncut_summary_says_all(audit: Audit, tmp_path: Path) -> None:
    report = render(audit, tmp_path, formats="md,json", run_id="r3")
    doc = report.summary
    assert doc["findings_truncated"] is False and doc["findings_left_out"] == 0
    assert all(c["left_out"] == 0 and c["in_summary"] == c["findings"] for c in doc["checks"])
    md = markdown_text(report)
    assert "and 50 more, all in summary.json" in md
    assert "every finding is in summary.json" in md


def test_render_findings_stored_must_be_a_bool(audit: Audit, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="findings_stored"):
        render(audit, tmp_path, formats="json", findings_stored="yes")  # type: ignore[arg-type]
