"""The same records give the same result, conflicts and flags whatever order they were ingested
in (tester T4: a record with the same facts but another flag was dropped as a duplicate or kept
by the order; one change seen twice was "2 change(s)" in one order and 1 in the other; two
versions differing in their counts or settlement time were merged with no conflict)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from _records import settled_record

import asg_audit
from asg_audit.store import open_store

_T1 = "1" * 64
_T2 = "2" * 64
_BASE: dict[str, Any] = settled_record(
    "p", bsv_txid=_T1, created_at="2026-10-01T00:00:00Z", settled_at="2026-10-01T00:01:00Z"
)


def _hook(**fields: Any) -> dict[str, Any]:
    return {
        "event": "task.settled",
        "task_id": "p",
        "consensus_label": "cat",
        "confidence": 1.0,
        "bsv_txid": _T1,
        "settled_at": "2026-10-01T00:01:00Z",
        "timestamp": "2026-10-01T00:01:02Z",
        **fields,
    }


def _result(tmp_path: Path, name: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Ingest each record as its own file, in this order; return the task's result."""
    folder = tmp_path / name
    folder.mkdir()
    paths = []
    for i, record in enumerate(records):
        path = folder / f"{i}.ndjson"
        path.write_text(json.dumps(record) + "\n")
        paths.append(path)
    db = folder / "store.duckdb"
    for path in paths:  # one command per file: each is the next in ingest order
        asg_audit.ingest(db, path)
    with open_store(db, read_only=True) as store:
        frame = store.con.sql("SELECT * FROM results").pl()
    assert frame.height == 1
    return frame.row(0, named=True)


def _each_order(
    tmp_path: Path, records: dict[str, dict[str, Any]]
) -> dict[tuple[str, ...], dict[str, Any]]:
    return {
        order: _result(tmp_path, "-".join(order), [records[k] for k in order])
        for order in itertools.permutations(records)
    }


def test_a_record_with_the_same_facts_but_a_flag_is_kept_in_either_order(
    tmp_path: Path,
) -> None:
    plain = dict(_BASE)
    alias = {k: v for k, v in _BASE.items() if k not in ("bsv_txid", "cost_sats")}
    alias |= {"cost_sats": 650, "settlement": {"bsv_txid": _T1, "total_cost_sats": 975}}
    results = _each_order(tmp_path, {"plain": plain, "alias": alias})
    for order, result in results.items():
        assert "aliases_disagree" in result["flags"], order
        assert result["observation_count"] == 2, order
        assert result["cost_sats"] == 975 and result["conflict_count"] == 0, order


def test_a_change_seen_twice_is_one_conflict_in_every_order(tmp_path: Path) -> None:
    records = {
        "x": dict(_BASE),
        "y": _BASE | {"bsv_txid": _T2},
        "y_hook": _hook(bsv_txid=_T2),
    }
    results = _each_order(tmp_path, records)
    assert {order: r["conflict_count"] for order, r in results.items()} == dict.fromkeys(results, 1)
    for order, result in results.items():  # the first settled version is the result
        first = records[order[0]]
        assert result["bsv_txid"] == first["bsv_txid"], order


@pytest.mark.parametrize(
    "changed",
    [
        {"worker_count": 5, "agreement_count": 4, "cost_sats": 0},
        {"settled_at": "2026-10-01T00:09:00Z"},
        {"confidence": 0.6},
    ],
    ids=["counts", "settled_at", "confidence"],
)
def test_a_version_differing_in_counts_time_or_confidence_is_a_conflict(
    tmp_path: Path, changed: dict[str, Any]
) -> None:
    records = {
        "hook": _hook(),
        "v1": {k: v for k, v in _BASE.items() if k != "bsv_txid"},
        "v2": _BASE | changed,
    }
    results = _each_order(tmp_path, records)
    for order, result in results.items():
        assert result["conflict_count"] == 1, order
        assert result["observation_count"] == 3, order


def test_the_same_version_seen_again_is_no_conflict(tmp_path: Path) -> None:
    # a webhook (no counts, no cost), then the poll's export of the same settlement
    results = _each_order(tmp_path, {"hook": _hook(), "full": dict(_BASE)})
    for order, result in results.items():
        assert result["conflict_count"] == 0, order
        assert result["worker_count"] == 3 and result["cost_sats"] == 975, order


def test_a_partial_record_is_filled_only_from_its_own_version(tmp_path: Path) -> None:
    # review: a webhook (dog, no counts) first, then a poll of another version (cat, 5/4),
    # then one of its own (dog, 3/3): the result was dog with 5 workers, which nobody reported,
    # and the count of versions was 2 in three orders, 1 in the others
    records = {
        "hook": _hook(consensus_label="dog"),
        "dog": _BASE | {"consensus_label": "dog"},
        "cat": _BASE | {"consensus_label": "cat", "worker_count": 5, "agreement_count": 4},
    }
    results = _each_order(tmp_path, records)
    for order, result in results.items():
        assert result["conflict_count"] == 1, order
        told = (result["consensus_label"], result["worker_count"], result["agreement_count"])
        assert told in (("dog", 3, 3), ("cat", 5, 4)), order
        assert told[0] == ("cat" if order[0] == "cat" else "dog"), order


@pytest.mark.parametrize(
    ("poll", "hook"),
    [
        ({"confidence": 0.3}, {"confidence": 0.30000000000000004}),
        ({"settled_at": "2026-10-01T00:01:00Z"}, {"settled_at": "2026-10-01T00:01:00.123Z"}),
        ({"settled_at": "2026-10-01T00:01:01Z"}, {"settled_at": "2026-10-01T00:01:00.900Z"}),
    ],
    ids=["confidence printed otherwise", "milliseconds", "rounded second"],
)
def test_a_webhook_printing_a_value_otherwise_is_no_conflict(
    tmp_path: Path, poll: dict[str, Any], hook: dict[str, Any]
) -> None:
    # review: exact comparison made these a `fail` finding (claim 9), while the webhook/poll
    # comparison (claim 10) allows them
    results = _each_order(tmp_path, {"poll": _BASE | poll, "hook": _hook(**hook)})
    for order, result in results.items():
        assert result["conflict_count"] == 0, order


def test_a_poll_without_a_txid_and_a_webhook_with_it_are_one_version(tmp_path: Path) -> None:
    records = {
        "poll": {k: v for k, v in _BASE.items() if k != "bsv_txid"},
        "hook": _hook(),
        "other": _BASE | {"bsv_txid": _T2, "settled_at": "2026-10-01T00:01:00.500Z"},
    }
    results = _each_order(tmp_path, records)
    for order, result in results.items():
        assert result["conflict_count"] == 1, order
        # the poll's missing txid is filled from the first record agreeing with it
        assert result["bsv_txid"] in (_T1, _T2) and result["worker_count"] == 3, order
    assert results["poll", "hook", "other"]["bsv_txid"] == _T1
    assert results["poll", "other", "hook"]["bsv_txid"] == _T2


def _partial(**fields: Any) -> dict[str, Any]:
    """A settled record stating only its label and times, and `fields`."""
    keep = ("task_id", "status", "consensus_label", "created_at", "settled_at")
    return {k: v for k, v in _BASE.items() if k in keep} | fields


def test_two_records_agreeing_with_the_first_but_not_each_other_do_not_both_fill_it(
    tmp_path: Path,
) -> None:
    # review 2: a bare record, then one with txid 1, then one with txid 2 and counts: the result
    # was txid 1 with the counts and cost of the txid-2 version
    records = {
        "bare": _partial(),
        "one": _partial(bsv_txid=_T1),
        "two": _partial(bsv_txid=_T2, worker_count=3, agreement_count=2, cost_sats=500),
    }
    result = _result(tmp_path, "bare-one-two", list(records.values()))
    assert (result["bsv_txid"], result["worker_count"], result["cost_sats"]) == (_T1, None, None)
    assert result["conflict_count"] == 1


def test_a_version_is_not_hidden_behind_a_partial_one(tmp_path: Path) -> None:
    # review 2: U agrees with V, V with W, but U not with W: U was taken as V's, so adding V
    # lowered the count from 2 to 1
    full = {"worker_count": 3, "agreement_count": 2, "confidence": 0.9}
    records = {
        "C": _partial(consensus_label="A", bsv_txid=_T1, cost_sats=500, **full),
        "W": _partial(consensus_label="B", bsv_txid=_T2, cost_sats=600, **full),
        "V": _partial(consensus_label="B", cost_sats=600),
        "U": _partial(consensus_label="B", bsv_txid="c" * 64),
    }
    results = _each_order(tmp_path, records)
    assert {r["conflict_count"] for r in results.values()} == {2}
