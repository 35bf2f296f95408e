"""`latency.share_over_slo` states a count of tasks, then the share.

Its Actual text put the share where a count belongs: "0.5 of 4 over the SLO" read as half a
task out of 4. Now "2 of 4 (50.0%) over the SLO". Real stores ingested from files.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from _records import settled_record

from asg_audit.audit import analyze
from asg_audit.ingest_files import ingest_paths

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _finding(tmp_path: Path, latencies: list[int]) -> dict[str, object]:
    records = [
        settled_record(
            f"tsk_l{i}",
            bsv_txid=f"{i + 1:064x}",
            created_at=_iso(T0 + timedelta(hours=i)),
            settled_at=_iso(T0 + timedelta(hours=i, seconds=s)),
        )
        for i, s in enumerate(latencies)
    ]
    export = tmp_path / "r.ndjson"
    export.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    db = tmp_path / "s.duckdb"
    ingest_paths(db, [export], progress=False)
    found = analyze(db).findings.filter(pl.col("check_id") == "latency.share_over_slo")
    assert found.height == 1
    return found.row(0, named=True)


@pytest.mark.parametrize(
    ("latencies", "actual"),
    [
        ([10, 10, 61, 61], "2 of 4 (50.0%) over the SLO"),
        ([10, 61, 61], "2 of 3 (66.7%) over the SLO"),
        ([61, 61, 90, 3600], "4 of 4 (100.0%) over the SLO"),
    ],
)
def test_share_over_slo_actual_counts_tasks_then_gives_the_share(
    tmp_path: Path, latencies: list[int], actual: str
) -> None:
    row = _finding(tmp_path, latencies)
    assert row["actual"] == actual
    over = sum(s > 60 for s in latencies)
    assert row["difference"] == pytest.approx(over / len(latencies))  # the share, as before
