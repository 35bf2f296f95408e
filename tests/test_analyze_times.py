"""`analyze` takes `since`, `until` and `as_of` as the command line does.

A datetime without a zone is UTC (it crashed: a polars SchemaError for `until`/`as_of`, a
TypeError in the billing window for `since` on a store with billing rows); a date is its
midnight UTC; ISO 8601 text is read; anything else is one ConfigError naming the argument.
A real store: results ingested from a file, one month of billing usage stored as `billing`
stores it.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from asg_audit.audit import Audit, analyze
from asg_audit.errors import ConfigError
from asg_audit.ingest_files import ingest_paths
from asg_audit.store import open_store

START = datetime(2026, 9, 20, tzinfo=UTC)


def _line(i: int) -> str:
    created = START + timedelta(days=i)
    settled = created + timedelta(seconds=30 + i)
    record = {
        "task_id": f"t{i:02d}", "status": "settled", "consensus_label": "cat",
        "confidence": 1.0, "worker_count": 3, "agreement_count": 3, "bsv_txid": f"{i + 1:064x}",
        "created_at": created.isoformat(), "settled_at": settled.isoformat(), "cost_sats": 975,
    }  # fmt: skip
    if i % 5 == 4:  # some still in flight
        record |= {"status": "in_progress", "settled_at": None, "bsv_txid": None}
        record |= {"consensus_label": None, "confidence": None, "cost_sats": None}
    return json.dumps(record) + "\n"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("analyze_times")
    export = tmp / "results.ndjson"
    export.write_text("".join(_line(i) for i in range(30)))
    path = tmp / "s.duckdb"
    ingest_paths(path, [export], progress=False)
    with open_store(path) as store, store.transaction():
        store.con.execute(
            "INSERT INTO billing_usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ["2026-10", "cus_1", "sandbox", 20, 19500, 1.0, 18000, 1500, [], "{}",
             datetime.now(UTC), None],
        )  # fmt: skip
    return path


def _same(a: Audit, b: Audit) -> None:
    assert a.summary() == b.summary()
    assert (a.since, a.until, a.as_of) == (b.since, b.until, b.as_of)
    assert a.findings.sort("check_id", "entity_id").equals(b.findings.sort("check_id", "entity_id"))


def _aware_utc(*times: Any) -> None:
    for when in times:
        assert when is None or when.utcoffset() == timedelta(0)


def test_analyze_naive_times_are_utc(db: Path) -> None:
    since, until, as_of = datetime(2026, 10, 1), datetime(2026, 11, 1), datetime(2026, 11, 5)
    naive = analyze(db, since=since, until=until, as_of=as_of)
    aware = analyze(db, since=since.replace(tzinfo=UTC), until=until.replace(tzinfo=UTC),
                    as_of=as_of.replace(tzinfo=UTC))  # fmt: skip
    _same(naive, aware)
    assert naive.summary()["tasks"] == 19  # tasks of 20 September to 19 October: 1 to 19 October
    assert "billing_window" in naive.frames  # the billed month was compared, not a TypeError
    _aware_utc(naive.since, naive.until, naive.as_of)
    # alone, as in the report: a naive until (which also sets as_of), a naive as_of
    alone = analyze(db, until=datetime(2026, 10, 1))
    assert alone.summary()["tasks"] == 11  # 20 to 30 September
    assert alone.until == alone.as_of == datetime(2026, 10, 1, tzinfo=UTC)
    assert analyze(db, as_of=as_of).as_of == as_of.replace(tzinfo=UTC)


def test_analyze_takes_iso_text_dates_and_offsets(db: Path) -> None:
    until = datetime(2026, 10, 20, 22, tzinfo=UTC)
    aware = analyze(db, since=datetime(2026, 10, 1, tzinfo=UTC), until=until)
    text = analyze(db, since="2026-10-01", until="2026-10-21T00:00:00+02:00")
    _same(text, aware)
    assert text.until == until
    _aware_utc(text.since, text.until, text.as_of)
    plus2 = timezone(timedelta(hours=2))
    mixed = analyze(db, since=date(2026, 10, 1), until=datetime(2026, 10, 21, tzinfo=plus2))
    _same(mixed, aware)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("since", "last tuesday", "since: not an ISO 8601"),
        ("until", 1_790_000_000, "until: expected a datetime"),
        ("as_of", "2026-13-01", "as_of: not an ISO 8601"),
    ],
)
def test_analyze_refuses_what_is_not_a_time_naming_the_argument(
    db: Path, name: str, value: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        analyze(db, **{name: value})


def test_analyze_empty_window_with_mixed_zones_is_a_config_error(db: Path) -> None:
    with pytest.raises(ConfigError, match="must be before") as raised:
        analyze(db, since=datetime(2026, 10, 2), until="2026-10-02T01:00:00+02:00")
    # a Python caller is told of its arguments, not of the command line's flags
    assert str(raised.value).startswith("analyze since (") and "--" not in str(raised.value)
