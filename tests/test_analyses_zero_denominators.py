"""A rate or share of nothing is null in every analysis frame, never NaN.

`agreement_overall.rate` and its Wilson bounds, `margins.tie_rate` / `low_margin_rate` and
`unknown_costs.unknown_share` were 0/0 = NaN on a store without tasks (or without the tasks
they count), while `invariants.share` and the `formula_fit` shares were null: polars'
`fill_null`, `drop_nulls` and `mean` miss a NaN, and `summary()` promises None, never NaN.
Every frame of `analyze()` is walked, on real stores.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from _records import settled_record

from asg_audit.analyses import consensus, costs
from asg_audit.analyses._tasks import enrich_tasks
from asg_audit.audit import Audit, analyze
from asg_audit.ingest_files import ingest_paths
from asg_audit.model import RESULTS_SCHEMA

# the rates that were NaN on an empty store: (frame, column)
ZERO_OVER_ZERO = (
    ("agreement_overall", "rate"),
    ("agreement_overall", "wilson_low"),
    ("agreement_overall", "wilson_high"),
    ("margins", "tie_rate"),
    ("margins", "low_margin_rate"),
    ("unknown_costs", "unknown_share"),
)


def _nan_columns(audit: Audit) -> tuple[list[str], int]:
    """Return the `frame.column`s holding a NaN, and how many float columns were looked at."""
    found, floats = [], 0
    for name in audit.names:
        frame = audit[name]
        for column, dtype in frame.schema.items():
            if dtype.is_float():
                floats += 1
                if frame[column].is_nan().any():
                    found.append(f"{name}.{column}")
    return found, floats


def _store(tmp_path: Path, records: list[dict[str, object]]) -> Path:
    db = tmp_path / "s.duckdb"
    if not records:
        ingest_paths(db, [], progress=False)  # a store with no tasks
        return db
    export = tmp_path / "r.ndjson"
    export.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    ingest_paths(db, [export], progress=False)
    return db


PENDING = [
    {"task_id": f"tsk_p{i}", "status": "pending", "created_at": "2026-10-01T00:00:00Z"}
    for i in range(4)
]
# settled, but no counts: no agreement, no margins; the costs still count them
NO_COUNTS = [
    {
        k: v
        for k, v in settled_record(f"tsk_n{i}", bsv_txid=f"{i + 1:064x}").items()
        if k not in ("worker_count", "agreement_count", "confidence")
    }
    for i in range(3)
]
# store: (its records, the rates of ZERO_OVER_ZERO that are 0/0 there)
STORES = {
    "empty": ([], ZERO_OVER_ZERO),
    "only pending tasks (none settled)": (PENDING, ZERO_OVER_ZERO),
    "settled tasks without counts": (PENDING + NO_COUNTS, ZERO_OVER_ZERO[:-1]),
}


@pytest.mark.parametrize("store", list(STORES))
def test_no_frame_of_analyze_holds_a_nan(tmp_path: Path, store: str) -> None:
    records, absent = STORES[store]
    audit = analyze(_store(tmp_path, records))
    found, floats = _nan_columns(audit)
    assert floats >= 20  # every frame was walked, and they have float columns
    assert found == []
    for name, column in absent:
        frame = audit[name]
        assert frame.height == 1 and frame[column].to_list() == [None], (name, column)
    json.dumps(audit.summary(), allow_nan=False)


def test_empty_store_rates_are_null_like_the_shares_beside_them(tmp_path: Path) -> None:
    audit = analyze(_store(tmp_path, []))
    assert audit["invariants"]["share"].null_count() == audit["invariants"].height
    assert audit["formula_fit"]["share_a_over_t"].to_list() == [None]
    # one convention: fill_null reaches every absent rate
    filled = audit["agreement_overall"].select(pl.col("rate").fill_null(0.0)).item()
    assert filled == 0.0
    assert audit.summary()["agreement_rate"] is None


def test_a_group_without_trials_has_no_rate_and_no_interval() -> None:
    # pooled by hand: a group whose A/W has no trial (labels 0) has neither rate nor bounds
    frame = pl.DataFrame({"agreeing": [0, 3], "labels": [0, 4]})
    got = frame.select(consensus.wilson_interval(pl.col("agreeing"), pl.col("labels")))
    assert got["wilson_low"][0] is None and got["wilson_high"][0] is None
    assert 0.0 < got["wilson_low"][1] < 0.75 < got["wilson_high"][1] <= 1.0


def test_settled_tasks_without_counts_leave_agreement_and_margins_null() -> None:
    rows = [
        {"task_id": "a", "status": "settled", "cost_sats": None, "cost_unknown": True},
        {"task_id": "b", "status": "pending"},
    ]
    results = pl.DataFrame(rows, schema=RESULTS_SCHEMA, strict=False).lazy()
    tasks = enrich_tasks(results)
    agreement = consensus.agreement_rates(tasks)
    assert agreement.select("tasks", "rate", "wilson_low", "wilson_high").row(0) == (
        0,
        None,
        None,
        None,
    )
    margins = consensus.margin_rates(tasks)
    assert margins.select("tie_rate", "low_margin_rate").row(0) == (None, None)
    assert costs.unknown_costs(tasks)["unknown_share"].to_list() == [1.0]
    none_settled = costs.unknown_costs(tasks.filter(pl.col("status") == "pending"))
    assert none_settled["unknown_share"].to_list() == [None]
