"""summary.json lists its findings worst first, and a truncated list keeps the worst ones.

README: `findings` holds at most 100,000 findings, worst first; then `findings_truncated` is
true and each check keeps an equal share of its worst findings. Worst first means: by severity, then by |difference| (largest first, findings without one
last), then by check id and entity id. A real simulated store with every anomaly planted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from _report_world import build_store, hostile_config

from asg_audit.audit import Audit, analyze
from asg_audit.report import content, render

_RANK = {"fail": 0, "warn": 1, "info": 2}


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> Audit:
    db, now = build_store(tmp_path_factory.mktemp("summary_order"))
    return analyze(db, as_of=now, config=hostile_config())


def _badness(f: dict[str, Any]) -> tuple[Any, ...]:
    """The order README promises, computed here without polars."""
    d = f["difference"]
    size = abs(d) if d is not None and math.isfinite(d) else None
    return (
        _RANK[f["severity"]],
        size is None,
        -(size or 0.0),
        f["check_id"],
        f["entity_id"] is None,
        f["entity_id"] or "",
    )


def _summary(audit: Audit, out: Path) -> dict[str, Any]:
    report = render(audit, out, formats="json", run_id="20260101T000000Z-000001")
    doc: dict[str, Any] = json.loads(report.paths["json"].read_text(encoding="utf-8"))
    return doc


def test_report_summary_findings_are_worst_first(audit: Audit, tmp_path: Path) -> None:
    doc = _summary(audit, tmp_path)
    findings = doc["findings"]
    assert not doc["findings_truncated"] and len(findings) == audit.findings.height
    # the world has several checks with differences of many sizes within one severity
    sized = [f for f in findings if f["difference"] not in (None, 0)]
    assert len({abs(f["difference"]) for f in sized}) > 10
    assert [_badness(f) for f in findings] == sorted(_badness(f) for f in findings)
    # within each severity the largest |difference| comes first, whatever its check
    first_fail = next(f for f in findings if f["severity"] == "fail" and f["difference"])
    fail_sizes = [abs(f["difference"]) for f in findings
                  if f["severity"] == "fail" and f["difference"] is not None]  # fmt: skip
    assert abs(first_fail["difference"]) == max(fail_sizes)


def test_report_summary_truncation_drops_the_least_severe_and_smallest(
    audit: Audit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cut, every check keeps an equal share of its own worst findings (tester D #1: a global
    # cut left whole checks out), so the order holds within each check.
    everything = _summary(audit, tmp_path / "all")["findings"]
    keep = len(everything) // 2
    monkeypatch.setattr(content, "MAX_SUMMARY_FINDINGS", keep)
    doc = _summary(audit, tmp_path / "cut")
    assert doc["findings_truncated"] is True and len(doc["findings"]) == keep
    kept_all = [_badness(f) for f in doc["findings"]]
    assert kept_all == sorted(kept_all)
    for check in {f["check_id"] for f in everything}:
        kept = [_badness(f) for f in doc["findings"] if f["check_id"] == check]
        assert kept, f"{check} has no finding left in summary.json"
        dropped = sorted(_badness(f) for f in everything if f["check_id"] == check)[len(kept) :]
        if dropped:
            assert max(kept) <= min(dropped), f"{check}: a dropped finding is worse than a kept one"
    # every severity count still covers all findings, not only the kept ones
    assert sum(doc["findings_by_severity"].values()) == len(everything)


def test_compare_calls_no_finding_resolved_that_was_only_cut_from_the_list(
    audit: Audit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tester G #2: once a summary listed only its worst findings, `--compare previous` called
    every finding cut from the list "resolved" although it was still there, and the Markdown
    report did not say the comparison was incomplete (the HTML did)."""
    everything = _summary(audit, tmp_path / "all")["findings"]
    monkeypatch.setattr(content, "MAX_SUMMARY_FINDINGS", len(everything) // 2)
    out = tmp_path / "reports"
    render(audit, out, formats="json", run_id="20260101T000000Z-000001")
    # the same findings a report later, this one's list cut at another place
    monkeypatch.setattr(content, "MAX_SUMMARY_FINDINGS", len(everything) // 3)
    report = render(
        audit, out, formats=("json", "md"), run_id="20260102T000000Z-000002", compare="previous"
    )
    doc = json.loads(report.paths["json"].read_text(encoding="utf-8"))
    assert doc["compare"]["resolved_findings"] == []
    assert doc["compare"]["new_findings"] == []
    assert doc["compare"]["incomplete"] is True
    markdown = report.paths["md"].read_text(encoding="utf-8")
    assert "### Resolved findings (0)" in markdown
    assert "lists only its worst findings, so new/resolved may be incomplete" in markdown
