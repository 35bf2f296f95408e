"""`report --compare` with a damaged earlier summary.json: exit 2 naming the file and the field.

A previous summary whose headline is null, or whose counts are text, gave an AttributeError or
ValueError traceback and exit 1 (the "findings" code), or with `--format json` a comparison
with `previous: "many"`, silently. The loader already refused invalid JSON the same way.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from _hardening_procs import asg_audit, clean_env

from asg_audit.audit import analyze
from asg_audit.errors import InputError
from asg_audit.ingest_files import ingest_paths
from asg_audit.report import render
from asg_audit.report.compare import load_summary

_LINE = (
    '{{"task_id":"w{i}","status":"settled","consensus_label":"cat","confidence":1.0,'
    '"worker_count":3,"agreement_count":3,"bsv_txid":"{i:064x}",'
    '"created_at":"2026-04-08T21:00:00Z","settled_at":"2026-04-08T21:00:47Z","cost_sats":975}}\n'
)
FIRST = "20260101T000000Z-000001"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """A store, and a report folder holding one good report to compare with."""
    tmp = tmp_path_factory.mktemp("compare_damaged")
    export = tmp / "r.ndjson"
    lines = [_LINE.format(i=i) for i in range(1, 6)]
    lines[-1] = lines[-1].replace("21:00:47Z", "20:59:00Z")  # settled before created: a finding
    export.write_text("".join(lines))
    db = tmp / "s.duckdb"
    ingest_paths(db, [export], progress=False)
    out = tmp / "reports"
    good = render(analyze(db), out, formats="json", run_id=FIRST).summary
    return db, out, good


def _damage(out: Path, good: dict[str, Any], change: Any) -> Path:
    doc = json.loads(json.dumps(good))
    change(doc)
    path = out / FIRST / "summary.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _set(path: str, value: Any) -> Any:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            doc = doc[key][0] if key == "findings" else doc[key]
        doc[last] = value

    return change


@pytest.mark.parametrize(
    ("fmt", "path", "value", "field"),
    [
        ("json", "headline", None, "headline is null"),
        ("md", "headline.tasks", "many", 'headline.tasks is text "many"'),
        ("json", "headline.tasks", "many", 'headline.tasks is text "many"'),
    ],
)
def test_report_compare_with_a_damaged_summary_exits_2(
    world: tuple[Path, Path, dict[str, Any]], fmt: str, path: str, value: Any, field: str
) -> None:
    db, out, good = world
    summary = _damage(out, good, _set(path, value))
    before = sorted(p.name for p in out.iterdir())
    proc = subprocess.run(
        asg_audit("report", "--db", str(db), "--out", str(out), "--compare", FIRST,
                  "--format", fmt),
        capture_output=True, text=True, env=clean_env(), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(summary) in proc.stderr and field in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == before  # no report written


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (_set("headline.latency_p95_s", True), "headline.latency_p95_s is true"),
        (_set("headline.settled", {"n": 1}), "headline.settled is an object"),
        (_set("findings", {"a": 1}), "findings is an object"),
        (_set("findings_truncated", "yes"), 'findings_truncated is text "yes"'),
        (_set("run_id", 7), "run_id is the number 7"),
        (_set("schema_version", "1"), 'schema_version is text "1"'),
        (lambda doc: doc["findings"].__setitem__(0, "x"), 'findings[0] is text "x"'),
        (_set("findings.entity_id", ["a"]), "findings[0].entity_id is a list"),
        # tester T1: both were carried into the new summary's resolved findings
        (_set("findings.check_id", 5), "findings[0].check_id is the number 5, not a check id"),
        (_set("findings.check_id", None), "findings[0].check_id is null"),
        (_set("findings.entity_type", 7), "findings[0].entity_type is the number 7, not text"),
        (_set("findings.entity_id", True), "findings[0].entity_id is true, not text or null"),
        (
            _set("findings.severity", "bogus"),
            'findings[0].severity is text "bogus", not one of info, warn, fail',
        ),
    ],
)
def test_report_compare_refuses_each_damaged_field(
    world: tuple[Path, Path, dict[str, Any]], change: Any, field: str
) -> None:
    db, out, good = world
    assert good["findings"], "the world needs a finding to damage"
    summary = _damage(out, good, change)
    with pytest.raises(InputError, match="not a usable asg_audit summary") as caught:
        load_summary(summary)
    assert str(summary) in str(caught.value) and field in str(caught.value)
    with pytest.raises(InputError):
        render(analyze(db), out, formats="json", compare=FIRST)


def test_report_compare_reads_a_good_summary_and_one_missing_a_figure(
    world: tuple[Path, Path, dict[str, Any]],
) -> None:
    db, out, good = world
    _damage(out, good, lambda doc: doc["headline"].pop("stuck"))  # an older summary
    cmp = render(analyze(db), out, formats="json", compare=FIRST).summary["compare"]
    stuck = next(r for r in cmp["headline"] if r["key"] == "stuck")
    assert stuck["previous"] is None and stuck["change"] is None
    tasks = next(r for r in cmp["headline"] if r["key"] == "tasks")
    assert tasks["previous"] == tasks["current"] == 5 and tasks["change"] == 0


def test_a_summary_nested_too_deep_to_read_is_not_a_summary(tmp_path: Path) -> None:
    """`json.loads` raises RecursionError, not ValueError, for JSON nested past Python's
    limit: a traceback instead of the one-line refusal (code review)."""
    path = tmp_path / "summary.json"
    path.write_text('{"schema": ' + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(InputError, match=r"not a readable summary\.json: JSON nested too deep"):
        load_summary(path)
