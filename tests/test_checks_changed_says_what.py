"""`result.changed_after_settlement` says what changed: the field, the settled value and each
later one (tester T2: "1 change(s)" for a txid and for a cost alike, so the auditor had to dig
through `observations` to learn whether money, the txid or the label had changed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _records import settled_record

import asg_audit
from asg_audit.audit import analyze
from asg_audit.model import Source
from asg_audit.normalize import RawRecord, normalise_records
from asg_audit.store import open_store

_A, _B, _C = "a" * 64, "b" * 64, "c" * 64


def _file(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _changed(db: Path) -> dict[str, dict[str, object]]:
    found = analyze(db).findings
    rows = found.filter(found["check_id"] == "result.changed_after_settlement").to_dicts()
    return {str(r["entity_id"]): r for r in rows}


def test_each_change_is_named_with_the_settled_value_and_the_later_ones(tmp_path: Path) -> None:
    long_label = "x" * 100
    first = [
        settled_record("txid", bsv_txid=_A),
        settled_record("cost", bsv_txid=_B, cost_sats=650),
        settled_record("label", bsv_txid=_C),
        settled_record("same", bsv_txid="d" * 64),
    ]
    later = [
        settled_record("txid", bsv_txid=_B),
        settled_record("cost", bsv_txid=_B, cost_sats=975),
        settled_record("label", bsv_txid=_C, consensus_label=long_label, cost_sats=1),
        settled_record("same", bsv_txid="d" * 64),  # seen again, unchanged
    ]
    third = [settled_record("cost", bsv_txid=_B, cost_sats=1300)]
    db = tmp_path / "s.duckdb"
    for i, records in enumerate((first, later, third)):
        asg_audit.ingest(db, _file(tmp_path / f"{i}.ndjson", records))

    got = _changed(db)
    assert set(got) == {"txid", "cost", "label"}
    assert got["txid"]["actual"] == "1 change(s) (bsv_txid)"
    assert got["txid"]["message"] == (
        f"settled result changed afterwards: 1 other version(s) or reversal(s): bsv_txid {_A},"
        f" later {_B}"
    )
    assert got["cost"]["actual"] == "2 change(s) (cost_sats)"
    assert str(got["cost"]["message"]).endswith(": cost_sats 650, later 975, 1300")
    # two fields of one version, in the order of the fields; a long label cut
    assert got["label"]["actual"] == "1 change(s) (consensus_label, cost_sats)"
    assert str(got["label"]["message"]).endswith(
        f": consensus_label cat, later {'x' * 72}...; cost_sats 975, later 1"
    )


def test_a_poll_answering_not_settled_afterwards_is_named_a_status_change(
    tmp_path: Path,
) -> None:
    db = tmp_path / "s.duckdb"
    asg_audit.ingest(db, _file(tmp_path / "a.ndjson", [settled_record("t", bsv_txid=_A)]))
    later = datetime.now(UTC) + timedelta(minutes=1)
    body = '{"task_id": "t", "status": "in_progress"}'
    with open_store(db) as store:
        run_id = store.start_run("collect")
        store.write_batch(
            run_id,
            normalise_records([RawRecord(body, Source.POLL, "GET t", later, None, "t", 202)]),
        )
        store.finish_run(run_id, status="completed")
    got = _changed(db)["t"]
    assert got["actual"] == "1 change(s) (status)"
    assert str(got["message"]).endswith(": status settled, later in_progress")


def test_only_what_the_rules_count_as_a_change_is_named(tmp_path: Path) -> None:
    """The rules that count versions allow a settlement time to differ by under a second and
    a confidence by 1e-9 (a webhook prints them otherwise): the message names neither then,
    and shows a time in ISO 8601 (review)."""
    first = [
        settled_record("near", bsv_txid=_A, cost_sats=650, confidence=0.3),
        settled_record("late", bsv_txid=_B),
    ]
    later = [
        settled_record(
            "near",
            bsv_txid=_A,
            cost_sats=975,
            confidence=0.30000000000000004,
            settled_at="2026-11-01T10:00:40.5Z",
        ),
        settled_record("late", bsv_txid=_B, settled_at="2026-11-01T10:00:45Z"),
    ]
    db = tmp_path / "s.duckdb"
    for i, records in enumerate((first, later)):
        asg_audit.ingest(db, _file(tmp_path / f"{i}.ndjson", records))
    got = _changed(db)
    assert got["near"]["actual"] == "1 change(s) (cost_sats)"
    assert str(got["near"]["message"]).endswith(": cost_sats 650, later 975")
    assert got["late"]["actual"] == "1 change(s) (settled_at)"
    assert str(got["late"]["message"]).endswith(
        ": settled_at 2026-11-01T10:00:40Z, later 2026-11-01T10:00:45Z"
    )


def test_a_window_reports_the_changes_of_its_own_tasks_only(tmp_path: Path) -> None:
    old = settled_record("old", bsv_txid=_A, created_at="2026-10-01T10:00:00Z")
    new = settled_record("new", bsv_txid=_B)  # created 2026-11-01
    db = tmp_path / "s.duckdb"
    asg_audit.ingest(db, _file(tmp_path / "a.ndjson", [old, new]))
    asg_audit.ingest(
        db, _file(tmp_path / "b.ndjson", [{**old, "cost_sats": 1}, {**new, "cost_sats": 2}])
    )
    found = analyze(db, since="2026-10-15").findings
    rows = found.filter(found["check_id"] == "result.changed_after_settlement").to_dicts()
    assert [(r["entity_id"], r["message"]) for r in rows] == [
        ("new", "settled result changed afterwards: 1 other version(s) or reversal(s):"
         " cost_sats 975, later 2"),
    ]  # fmt: skip
