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
