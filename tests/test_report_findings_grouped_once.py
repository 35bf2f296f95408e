"""A report groups its findings by check once: summary.json and the pages share the groups.

`content.findings_by_check` ran twice per render (for summary.json with `worst=0`, then for
the pages): every finding was ranked twice. Now `render` groups once and passes the groups
along; summary.json and the pages are unchanged.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _report_store import report_store, settled

from asg_audit import __version__
from asg_audit.audit import Audit, analyze
from asg_audit.report import content, render


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> Audit:
    tmp = tmp_path_factory.mktemp("grouped")
    records = [settled(f"t{i}", cost_sats=975 + i) for i in range(30)]  # cost.mismatch
    records.append(settled("early", settled_at="2026-09-30T23:59:00Z"))
    return analyze(report_store(tmp, records, options=["cat"]))


def test_render_groups_the_findings_once(
    audit: Audit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    grouped = content.findings_by_check

    def counting(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        calls.append(1)
        return grouped(*args, **kwargs)

    monkeypatch.setattr(content, "findings_by_check", counting)
    report = render(audit, tmp_path, run_id="r1")
    assert len(calls) == 1
    summary = json.loads(report.paths["json"].read_text(encoding="utf-8"))
    assert {c["check_id"] for c in summary["checks"]} >= {"cost.mismatch"}


def test_summary_from_shared_groups_is_the_summary_grouped_on_its_own(audit: Audit) -> None:
    args: dict[str, Any] = {
        "run_id": "r1",
        "generated_at": datetime(2026, 10, 2, tzinfo=UTC),
        "charts": [],
        "tool_version": __version__,
    }
    alone = content.build_summary(audit, **args)
    shared = content.build_summary(audit, **args, groups=content.findings_by_check(audit.findings))
    assert shared == alone
    assert any(c["findings"] > content.DEFAULT_WORST_ENTITIES for c in shared["checks"])


def test_rendered_files_are_the_same_as_before(audit: Audit, tmp_path: Path) -> None:
    """Rendered twice from one audit with one run id and time: the files are identical (the
    pages read the groups after summary.json did; neither changes what the other shows)."""
    when = datetime(2026, 10, 2, tzinfo=UTC)
    one = render(audit, tmp_path / "a", run_id="r1", generated_at=when)
    two = render(audit, tmp_path / "b", run_id="r1", generated_at=when)
    for fmt in ("html", "md", "json"):
        assert one.paths[fmt].read_bytes() == two.paths[fmt].read_bytes(), fmt
    md = one.paths["md"].read_text(encoding="utf-8")
    assert "and 19 more, all in summary.json" in md  # 29 cost.mismatch (975 is none), 10 shown
