"""An `Audit` used as a notebook uses it (tester T10): changing what `summary()` returned
changes neither the audit nor its report; `in`, iteration and a wrong frame name behave as on
a dict; two audits compare by identity (their frames cannot be compared)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asg_audit.audit import Audit, analyze
from asg_audit.ingest_files import ingest_paths
from asg_audit.report import render


@pytest.fixture
def audit(tmp_path: Path) -> Audit:
    export = tmp_path / "in.ndjson"
    export.write_text(json.dumps({"task_id": "tsk_1", "status": "pending"}) + "\n")
    db = tmp_path / "s.duckdb"
    ingest_paths(db, [export])
    return analyze(db)


def test_changing_the_summary_changes_neither_the_audit_nor_its_report(
    audit: Audit, tmp_path: Path
) -> None:
    s = audit.summary()
    s["tasks"] = 12_345
    s["findings"]["fail"] = 99
    s.pop("as_of")
    assert audit.summary()["tasks"] == 1 and "as_of" in audit.summary()
    assert audit.summary()["findings"].get("fail", 0) != 99
    assert "tasks: 1" in repr(audit)
    out = render(audit, tmp_path / "r", formats="json", run_id="r1")
    doc = json.loads(out.paths["json"].read_text(encoding="utf-8"))
    assert doc["headline"]["tasks"] == 1


def test_an_audit_reads_like_a_dict_of_its_frames(audit: Audit) -> None:
    assert "latency_overall" in audit and "latency" not in audit
    assert list(audit) == audit.names
    with pytest.raises(KeyError, match=r"no analysis frame named 'latency'; audit\.names lists"):
        audit["latency"]


def test_audits_compare_by_identity(audit: Audit, tmp_path: Path) -> None:
    other = analyze(tmp_path / "s.duckdb", as_of=audit.as_of)
    assert audit == audit and audit != other
