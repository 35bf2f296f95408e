"""A report of an incomplete `asg-audit audit` run says so (tester, R3 defect 1).

With the Gateway down the audit exits 3 and `runs` says `incomplete  collect failed: ...`, but
the report read as complete: summary.json had `findings_fail: 0`, `worst_severity: "info"` and
no word of the run. `render(steps=...)` now takes the run's steps: summary.json gets `run`
(`status` complete/incomplete, `steps`), and index.html and report.md an `Incomplete audit:
collect failed: ...` banner and the steps table. Without `steps` nothing changes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _report_store import page_and_markdown, summary_json

from asg_audit.audit import Audit, analyze
from asg_audit.errors import ConfigError
from asg_audit.report import RenderedReport, render
from asg_audit.report.run_steps import RunStep
from asg_audit.store import open_store

DOWN = "the Gateway at http://127.0.0.1:9 is unreachable (connection refused)"
STEPS = {
    "ingest": "skipped (no [audit] drop_folders configured)",
    "collect": f"failed: {DOWN}",
    "verify-chain": "skipped (disabled in [audit])",
    "billing": f"failed: {DOWN} (found by collect in this run; not asked again)",
}


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> Audit:
    db = tmp_path_factory.mktemp("run_steps") / "audit.duckdb"
    with open_store(db):
        pass
    return analyze(db)


def _pages(report: RenderedReport) -> tuple[str, str, dict[str, object]]:
    return (*page_and_markdown(report), summary_json(report))


def test_incomplete_run_has_a_banner_steps_and_a_run_object(audit: Audit, tmp_path: Path) -> None:
    report = render(audit, tmp_path / "r", run_id="20261001T000000Z-aaaaaa", steps=STEPS)
    page, md, summary = _pages(report)
    run = summary["run"]
    assert run["status"] == "incomplete"  # type: ignore[index]
    assert run["steps"] == [  # type: ignore[index]
        {"step": "ingest", "outcome": "skipped", "detail": "no [audit] drop_folders configured"},
        {"step": "collect", "outcome": "failed", "detail": DOWN},
        {"step": "verify-chain", "outcome": "skipped", "detail": "disabled in [audit]"},
        {
            "step": "billing",
            "outcome": "failed",
            "detail": f"{DOWN} (found by collect in this run; not asked again)",
        },
    ]
    assert summary["schema_version"] == 2
    assert list(summary).index("run") == list(summary).index("window") + 1
    banner = f"Incomplete audit: collect failed: {DOWN}; also failed: billing"
    for text in (page, md):
        assert banner in text
        # before the headline figures, and the steps are listed
        assert text.index(banner) < text.index("Headline")
        assert "Steps of this audit run before the report" in text
        assert "disabled in [audit]" in text
    assert 'id="run-banner" role="alert"' in page
    assert md.index("> **Incomplete audit") < md.index("## Headline")


def test_complete_run_lists_its_steps_without_a_banner(audit: Audit, tmp_path: Path) -> None:
    steps = [
        RunStep("ingest", "ok", "1 file"),
        ("collect", "skipped", "no ASG_API_KEY: nothing to poll"),
    ]
    page, md, summary = _pages(render(audit, tmp_path / "r", steps=steps))
    assert summary["run"] == {
        "status": "complete",
        "steps": [
            {"step": "ingest", "outcome": "ok", "detail": "1 file"},
            {"step": "collect", "outcome": "skipped", "detail": "no ASG_API_KEY: nothing to poll"},
        ],
    }
    for text in (page, md):
        assert "Incomplete audit" not in text
        assert "Steps of this audit run before the report" in text


def test_refused_and_unreadable_steps_are_failed(audit: Audit, tmp_path: Path) -> None:
    steps = {
        "ingest": "unreadable input: /drop/a.json: Permission denied",
        "findings": "refused: not stored: the store is damaged",
    }
    summary = render(audit, tmp_path / "r", formats="json", steps=steps).summary
    assert summary["run"]["status"] == "incomplete"
    assert [(s["outcome"], s["detail"]) for s in summary["run"]["steps"]] == [
        ("failed", "unreadable input: /drop/a.json: Permission denied"),
        ("failed", "refused: not stored: the store is damaged"),
    ]


def test_without_steps_nothing_of_the_run_is_shown(audit: Audit, tmp_path: Path) -> None:
    page, md, summary = _pages(render(audit, tmp_path / "r"))
    assert "run" not in summary
    for text in (page, md):
        assert "Incomplete audit" not in text and "Steps of this audit run" not in text


def test_bad_steps_are_refused_before_anything_is_written(audit: Audit, tmp_path: Path) -> None:
    out = tmp_path / "r"
    with pytest.raises(TypeError, match="render steps"):
        render(audit, out, steps=42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="render steps"):
        render(audit, out, steps=[("collect", "maybe", "")])
    assert not out.exists()
