"""Overlapping exports: the same facts in another format are duplicates, not new evidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asg_audit.ingest_files import ingest_paths
from asg_audit.store import open_store

TX = "ab" * 32


def record(i: int) -> dict[str, object]:
    return {
        "task_id": f"t{i}",
        "status": "settled",
        "consensus_label": "cat",
        "confidence": 2 / 3,
        "worker_count": 3,
        "agreement_count": 2,
        "bsv_txid": TX,
        "total_cost_sats": 650,
        "created_at": "2026-11-01T10:00:00Z",
        "settled_at": "2026-11-01T10:00:42Z",
    }


def nested(r: dict[str, object]) -> dict[str, object]:
    settlement = {k: r[k] for k in ("bsv_txid", "total_cost_sats", "settled_at")}
    return {**{k: v for k, v in r.items() if k not in settlement}, "settlement": settlement}


RECORDS = [record(i) for i in range(3)]
FORMATS = {
    "lines.jsonl": "".join(json.dumps(r) + "\n" for r in RECORDS),
    "array.json": json.dumps(RECORDS),
    "pretty.json": "\n".join(json.dumps(r, indent=2) for r in RECORDS) + "\n",
    "compact.jsonl": "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in RECORDS),
    "reversed.jsonl": "".join(json.dumps(dict(reversed(r.items()))) + "\n" for r in RECORDS),
    "nested.ndjson": "".join(json.dumps(nested(r)) + "\n" for r in RECORDS),
}


def test_the_same_records_formatted_six_ways_are_stored_once(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    duplicates = []
    for name, text in FORMATS.items():
        (tmp_path / name).write_text(text)
        summary = ingest_paths(db, [tmp_path / name])
        assert summary.records == 3 and not summary.failed_files, summary.as_dict()
        duplicates.append(summary.duplicates)
    assert duplicates == [0, 3, 3, 3, 3, 3]
    with open_store(db, read_only=True) as store:
        assert store.count("observations") == 3
        counts = store.con.execute("SELECT observation_count FROM results").fetchall()
    assert counts == [(1,)] * 3


@pytest.mark.parametrize(
    ("field", "value"),
    [("consensus_label", "dog"), ("bsv_txid", "cd" * 32), ("total_cost_sats", 975)],
)
def test_an_export_that_changes_a_fact_is_new_evidence_and_a_conflict(
    tmp_path: Path, field: str, value: object
) -> None:
    db = tmp_path / "s.duckdb"
    (tmp_path / "a.jsonl").write_text(json.dumps(record(1)) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({**record(1), field: value}) + "\n")
    ingest_paths(db, [tmp_path / "a.jsonl"])
    summary = ingest_paths(db, [tmp_path / "b.jsonl"])
    assert summary.duplicates == 0 and summary.conflicts == 1
    with open_store(db, read_only=True) as store:
        assert store.count("observations") == 2


def test_the_same_facts_twice_within_one_file_are_one_observation(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    r = record(1)
    text = json.dumps(r) + "\n" + json.dumps(dict(reversed(r.items()))) + "\n"
    (tmp_path / "a.jsonl").write_text(text)
    summary = ingest_paths(db, [tmp_path / "a.jsonl"])
    assert (summary.records, summary.duplicates) == (2, 1)
    with open_store(db, read_only=True) as store:
        assert store.count("observations") == 1
