"""The "label in options" invariant is tested on every task whose options and label are known.

`analyze` reads the submission's `options` only where the label is outside them (the one place
they are shown), and `consensus_invariants` counted `tested` from those kept options: only the
violating tasks, so the row read 100% whenever any label broke it (3 of 3 instead of 3 of 291)
and `0 | 0 | n/a` when none did. Real stores (a simulated world, and one made by hand through
`track` and `ingest`), checked against a count in DuckDB.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from _records import settled_record

from asg_audit.audit import analyze
from asg_audit.ingest_files import ingest_paths, track_file
from asg_audit.sim import WorldConfig, generate_world

LABEL_IN_OPTIONS = "label in options"


def _row(db: Path) -> dict[str, object]:
    frame = analyze(db).frames["invariants"]
    return next(r for r in frame.iter_rows(named=True) if r["invariant"] == LABEL_IN_OPTIONS)


def _counted_in_duckdb(db: Path) -> tuple[int, int]:
    """(violations, tested) from the store's tables, independently of the audit's code."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        tested, violations = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT list_contains(s.options, r.consensus_label))"
            " FROM results r JOIN submissions s USING (task_id)"
            " WHERE len(s.options) > 0 AND r.consensus_label IS NOT NULL"
        ).fetchone()
    finally:
        con.close()
    return int(violations), int(tested)


def test_label_in_options_is_tested_on_every_task_with_options_simulated_world(
    tmp_path: Path,
) -> None:
    world = generate_world(WorldConfig(seed=7, tasks=300, anomalies="all"))
    db = tmp_path / "w.duckdb"
    track_file(db, world.write_submissions(tmp_path / "submissions.ndjson"))
    ingest_paths(db, [world.write_results_export(tmp_path / "results.ndjson")], progress=False)
    violations, tested = _counted_in_duckdb(db)
    assert 0 < violations < tested  # the world plants a few labels outside their options
    row = _row(db)
    assert (row["violations"], row["tested"]) == (violations, tested)
    assert row["share"] == pytest.approx(violations / tested)


def test_label_in_options_without_a_violation_has_a_zero_share(tmp_path: Path) -> None:
    subs = tmp_path / "submissions.csv"
    subs.write_text(
        "task_id,task_type,consensus_threshold,options,created_at\n"
        + "".join(f"tsk_{i},img,3,cat|dog,2026-11-01T10:00:00Z\n" for i in range(14))
        + "tsk_noopts,img,3,,2026-11-01T10:00:00Z\n",
        encoding="utf-8",
    )
    records = [settled_record(f"tsk_{i}", bsv_txid=f"{i + 1:064x}") for i in range(14)]
    records.append(settled_record("tsk_noopts", bsv_txid=f"{99:064x}"))  # no options: untested
    records.append({"task_id": "tsk_pending", "status": "pending"})  # no label: untested
    export = tmp_path / "results.ndjson"
    export.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    db = tmp_path / "h.duckdb"
    track_file(db, subs)
    ingest_paths(db, [export], progress=False)
    assert _counted_in_duckdb(db) == (0, 14)
    row = _row(db)
    assert (row["violations"], row["tested"], row["share"]) == (0, 14, 0.0)
