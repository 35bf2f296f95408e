"""summary.json (schema, version), `latest`, `--compare` and the `report` command."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from _report_world import build_store, hostile_config

from asg_audit.audit import analyze
from asg_audit.cli import main
from asg_audit.errors import ConfigError
from asg_audit.report import SUMMARY_SCHEMA, SUMMARY_SCHEMA_VERSION, render
from asg_audit.report.compare import load_summary


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("report_summary")
    db, now = build_store(tmp)
    return tmp, db, now


@pytest.fixture(scope="module")
def audits(store):
    """The whole store, then the same store without its last week: findings resolve."""
    _, db, now = store
    full = analyze(db, as_of=now, config=hostile_config())
    created = full.frames["latency_by_day"]["day"].drop_nulls()
    cut = created.sort()[len(created) // 2]
    until = pl.select(pl.lit(cut).cast(pl.Datetime("us", "UTC"))).item()
    part = analyze(db, until=until, as_of=now, config=hostile_config())
    return full, part


def _keys(findings: pl.DataFrame) -> set[tuple[str, str, str]]:
    return set(findings.select("check_id", "entity_type", "entity_id").iter_rows())


def test_report_summary_has_its_schema_and_version(audits, tmp_path: Path) -> None:
    full, _ = audits
    out = render(full, tmp_path, formats="json", run_id="20260101T000000Z-aaaaaa")
    doc = json.loads(out.paths["json"].read_text(encoding="utf-8"))
    assert doc["schema"] == SUMMARY_SCHEMA and doc["schema_version"] == SUMMARY_SCHEMA_VERSION == 2
    assert set(doc) >= {"run_id", "generated_at", "as_of", "window", "headline",
                        "findings_by_severity", "checks", "findings", "findings_truncated",
                        "charts", "tool_version"}  # fmt: skip
    s = full.summary()
    assert doc["headline"]["tasks"] == s["tasks"]
    assert doc["headline"]["latency_p95_s"] == pytest.approx(s["latency_p95_s"])
    assert doc["headline"]["spent_sats"] == s["known_cost_sats"]
    assert doc["findings_by_severity"] == s["findings"]
    assert len(doc["findings"]) == full.findings.height
    assert doc["charts"] == []  # json only: no chart drawn


def test_report_summary_refuses_a_newer_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"schema": SUMMARY_SCHEMA, "schema_version": 99}))
    with pytest.raises(Exception, match="newer"):
        load_summary(path)


def test_report_latest_points_at_the_newest_run(audits, tmp_path: Path) -> None:
    full, part = audits
    first = render(part, tmp_path, formats="json")
    second = render(full, tmp_path, formats="json")
    latest = tmp_path / "latest"
    assert (latest / "summary.json").read_text() == second.paths["json"].read_text()
    assert (tmp_path / "LATEST").read_text().strip() == second.run_id != first.run_id


def test_report_compare_previous_lists_new_and_resolved_findings(audits, tmp_path: Path) -> None:
    full, part = audits
    render(full, tmp_path, formats="json", run_id="20260101T000000Z-000001")
    out = render(part, tmp_path, formats="html,json", run_id="20260102T000000Z-000002",
                 compare="previous")  # fmt: skip
    cmp = out.summary["compare"]
    assert cmp["previous_run_id"] == "20260101T000000Z-000001"
    new = {(f["check_id"], f["entity_type"], f["entity_id"]) for f in cmp["new_findings"]}
    gone = {(f["check_id"], f["entity_type"], f["entity_id"]) for f in cmp["resolved_findings"]}
    # Different windows: what the narrower one cannot see is outside it, not resolved.
    outside = {(f["check_id"], f["entity_type"], f["entity_id"])
               for f in cmp["outside_window_findings"]}  # fmt: skip
    later = {(f["check_id"], f["entity_type"], f["entity_id"])
             for f in cmp["outside_previous_window_findings"]}  # fmt: skip
    assert cmp["same_window"] is False
    assert new | later == _keys(part.findings) - _keys(full.findings)
    assert gone | outside == _keys(full.findings) - _keys(part.findings)
    assert not gone & outside
    assert outside, "dropping half the days leaves findings outside the window"
    tasks = next(r for r in cmp["headline"] if r["key"] == "tasks")
    assert tasks["change"] == part.summary()["tasks"] - full.summary()["tasks"] < 0
    html = out.paths["html"].read_text(encoding="utf-8")
    assert 'id="compare"' in html and "Outside this report" in html and "Different windows" in html


def test_report_compare_an_unknown_run_is_a_usage_error(audits, tmp_path: Path) -> None:
    full, _ = audits
    with pytest.raises(ConfigError):
        render(full, tmp_path, formats="json", compare="20990101T000000Z-ffffff")
    with pytest.raises(ConfigError):
        render(full, tmp_path, formats="json", compare="../etc")


def test_report_command_writes_every_format_and_latest(store, tmp_path: Path, capsys) -> None:
    _, db, _ = store
    out = tmp_path / "reports"
    assert main(["report", "--db", str(db), "--out", str(out)]) == 0
    run = (out / "LATEST").read_text().strip()
    for name in ("index.html", "report.md", "summary.json"):
        assert (out / run / name).is_file() and (out / "latest" / name).is_file()
    assert str(out / run / "index.html") in capsys.readouterr().out
    assert main(["report", "--db", str(db), "--out", str(out), "--compare", "nosuch"]) == 2
    assert main(["report", "--db", str(db), "--out", str(out), "--format", "pdf"]) == 2


def test_report_command_since_until_window_the_tasks(store, tmp_path: Path) -> None:
    _, db, now = store
    until = (now - timedelta(days=7)).isoformat()
    assert main(["report", "--db", str(db), "--out", str(tmp_path), "--format", "json",
                 "--until", until]) == 0  # fmt: skip
    doc = json.loads((tmp_path / "latest" / "summary.json").read_text())
    assert doc["window"]["until"] is not None
    expected = analyze(db, until=now - timedelta(days=7)).summary()["tasks"]
    assert doc["headline"]["tasks"] == expected
