"""Each documented variant the normaliser accepts, and each reject reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest

from asg_audit.model import Flag, RejectReason, Shape, Source
from asg_audit.normalize import MAX_SATS, RawRecord, normalise_records

NOW = datetime(2026, 11, 1, tzinfo=UTC)
TXID = "a" * 64


def norm(body: str | bytes, **kw: object) -> tuple[pl.DataFrame, pl.DataFrame]:
    rec = RawRecord(
        body=body,
        source=kw.pop("source", Source.FILE),
        origin="t.jsonl",
        observed_at=NOW,
        origin_line=1,
        **kw,
    )  # type: ignore[arg-type]
    batch = normalise_records([rec])
    return batch.accepted, batch.rejects


def accepted_row(body: object, **kw: object) -> dict[str, object]:
    acc, rej = norm(json.dumps(body) if not isinstance(body, str | bytes) else body, **kw)
    assert rej.height == 0, rej.to_dicts()
    assert acc.height == 1
    return acc.row(0, named=True)


def reject_row(body: object, **kw: object) -> dict[str, object]:
    acc, rej = norm(json.dumps(body) if not isinstance(body, str | bytes) else body, **kw)
    assert acc.height == 0, acc.to_dicts()
    assert rej.height == 1
    return rej.row(0, named=True)


FLAT = {
    "task_id": "tsk_xxx",
    "status": "settled",
    "consensus_label": "cat",
    "confidence": 1.0,
    "worker_count": 3,
    "agreement_count": 3,
    "bsv_txid": TXID,
    "created_at": "2026-04-08T21:00:00Z",
    "settled_at": "2026-04-08T21:00:47Z",
}


def test_normalise_flat_shape_from_the_docs_example() -> None:
    row = accepted_row(FLAT)
    assert row["shape"] == Shape.FLAT
    assert row["task_id"] == "tsk_xxx"
    assert row["worker_count"] == 3 and row["agreement_count"] == 3
    assert row["settled_at"] == datetime(2026, 4, 8, 21, 0, 47, tzinfo=UTC)
    assert row["cost_sats"] is None and row["cost_unknown"] is False
    assert row["flags"] == []


def test_normalise_nested_settlement_shape() -> None:
    body = {k: v for k, v in FLAT.items() if k not in ("bsv_txid", "settled_at")}
    body["settlement"] = {
        "bsv_txid": TXID,
        "total_cost_sats": 650,
        "settled_at": "2026-04-08T21:00:47Z",
    }
    row = accepted_row(body)
    assert row["shape"] == Shape.NESTED
    assert row["bsv_txid"] == TXID and row["cost_sats"] == 650
    assert row["settled_at"] == datetime(2026, 4, 8, 21, 0, 47, tzinfo=UTC)


@pytest.mark.parametrize("key", ["total_cost_sats", "cost_sats"])
def test_normalise_flat_cost_names(key: str) -> None:
    assert accepted_row({**FLAT, key: 975})["cost_sats"] == 975


def test_normalise_cost_of_every_coin_that_can_exist_is_the_largest_accepted() -> None:
    assert accepted_row({**FLAT, "cost_sats": MAX_SATS})["cost_sats"] == MAX_SATS == 21 * 10**14


def test_normalise_zero_cost_is_unknown_not_free() -> None:
    row = accepted_row({**FLAT, "cost_sats": 0})
    assert row["cost_sats"] is None
    assert row["cost_unknown"] is True
    assert Flag.COST_UNKNOWN in row["flags"]


def test_normalise_type_alias_is_task_type() -> None:
    row = accepted_row({**FLAT, "type": "image"})
    assert row["task_type"] == "image"
    assert Flag.TYPE_ALIAS in row["flags"]
    assert accepted_row({**FLAT, "task_type": "text"})["task_type"] == "text"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-04-08T21:00:47Z", datetime(2026, 4, 8, 21, 0, 47, tzinfo=UTC)),
        ("2026-04-08T23:00:47+02:00", datetime(2026, 4, 8, 21, 0, 47, tzinfo=UTC)),
        ("2026-04-08T21:00:47.250Z", datetime(2026, 4, 8, 21, 0, 47, 250000, tzinfo=UTC)),
        (1775682047, datetime(2026, 4, 8, 21, 0, 47, tzinfo=UTC)),
        # RFC 3339 allows lower-case t and z, and a space between date and time
        ("2026-04-08t21:00:47z", datetime(2026, 4, 8, 21, 0, 47, tzinfo=UTC)),
        ("2026-04-08 21:00:47Z", datetime(2026, 4, 8, 21, 0, 47, tzinfo=UTC)),
        ("2026-04-08T16:00:47.5-05:00", datetime(2026, 4, 8, 21, 0, 47, 500000, tzinfo=UTC)),
        ("2026-04-08T23:00:47+0200", datetime(2026, 4, 8, 21, 0, 47, tzinfo=UTC)),
        ("2026-04-08T23:00:47+02", datetime(2026, 4, 8, 21, 0, 47, tzinfo=UTC)),
        # the widest offsets in use, and the widest RFC 3339 allows (hours 00-23, minutes 00-59)
        ("2026-04-09T11:00:47+14:00", datetime(2026, 4, 8, 21, 0, 47, tzinfo=UTC)),
        ("2026-04-08T09:00:47-12:00", datetime(2026, 4, 8, 21, 0, 47, tzinfo=UTC)),
        ("2026-04-09T20:59:47+23:59", datetime(2026, 4, 8, 21, 0, 47, tzinfo=UTC)),
        ("2026-04-08T21:00:47-00:00", datetime(2026, 4, 8, 21, 0, 47, tzinfo=UTC)),
        # fractional seconds of any length, truncated to microseconds
        ("2026-04-08T21:00:47.123456789Z", datetime(2026, 4, 8, 21, 0, 47, 123456, tzinfo=UTC)),
        ("2026-04-08t23:00:47.5+02:00", datetime(2026, 4, 8, 21, 0, 47, 500000, tzinfo=UTC)),
        ("2026-04-08 21:00:47.25z", datetime(2026, 4, 8, 21, 0, 47, 250000, tzinfo=UTC)),
        ("2026-04-08T23:59:59Z", datetime(2026, 4, 8, 23, 59, 59, tzinfo=UTC)),
        # the bounds, 2000-2100 as for epoch seconds: the instant counts, not the local date
        ("2000-01-01T00:00:00Z", datetime(2000, 1, 1, tzinfo=UTC)),
        ("2100-01-01T00:00:00Z", datetime(2100, 1, 1, tzinfo=UTC)),
        ("1999-12-31T23:30:00-01:00", datetime(2000, 1, 1, 0, 30, tzinfo=UTC)),
        (946684800, datetime(2000, 1, 1, tzinfo=UTC)),
    ],
)
def test_normalise_timestamp_forms_are_stored_as_utc(text: object, expected: datetime) -> None:
    assert accepted_row({**FLAT, "settled_at": text})["settled_at"] == expected


def test_normalise_undocumented_status_is_kept_and_flagged() -> None:
    row = accepted_row({**FLAT, "status": "timed_out"})
    assert row["status"] == "timed_out"
    assert Flag.STATUS_UNDOCUMENTED in row["flags"]


def test_normalise_webhook_payload_has_no_counts_or_cost() -> None:
    row = accepted_row(
        {
            "event": "task.settled",
            "task_id": "tsk_1",
            "consensus_label": "cat",
            "confidence": 1.0,
            "bsv_txid": TXID,
            "settled_at": "2026-04-08T21:00:47Z",
            "timestamp": "2026-04-08T21:00:48Z",
        }
    )
    assert row["shape"] == Shape.WEBHOOK and row["status"] == "settled"
    assert row["worker_count"] is None and row["cost_sats"] is None
    assert row["delivered_at"] == datetime(2026, 4, 8, 21, 0, 48, tzinfo=UTC)


def test_normalise_202_body_takes_the_task_id_from_the_request() -> None:
    row = accepted_row(
        {"status": "in_progress", "message": "Task is still being labeled."},
        source=Source.POLL,
        task_id_hint="tsk_9",
        http_status=202,
    )
    assert row["task_id"] == "tsk_9" and row["status"] == "in_progress"
    assert row["shape"] == Shape.PARTIAL and row["http_status"] == 202
    assert row["raw"] is not None  # polled bodies are the only copy: kept raw


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": "task not found"}, "task not found"),
        ({"error": {"code": "VALIDATION_ERROR", "message": "bad id", "details": {}}}, "bad id"),
    ],
)
def test_normalise_error_bodies_in_both_forms(body: object, message: str) -> None:
    row = accepted_row(body, source=Source.POLL, task_id_hint="tsk_1", http_status=404)
    assert row["shape"] == Shape.ERROR and row["error_message"] == message
    assert row["status"] is None


def test_normalise_verified_200_without_settlement() -> None:
    row = accepted_row(
        {
            "task_id": "t1",
            "status": "verified",
            "consensus_label": "cat",
            "confidence": 1.0,
            "worker_count": 3,
            "agreement_count": 3,
        }
    )
    assert row["shape"] == Shape.PARTIAL and row["bsv_txid"] is None
    assert Flag.TXID_MISSING not in row["flags"]


def test_normalise_uppercase_txid_is_lowercased() -> None:
    row = accepted_row({**FLAT, "bsv_txid": "AB" * 32})
    assert row["bsv_txid"] == "ab" * 32 and Flag.TXID_MALFORMED not in row["flags"]


@pytest.mark.parametrize(
    ("change", "flag"),
    [
        ({"bsv_txid": "abc123..."}, Flag.TXID_MALFORMED),
        ({"bsv_txid": "0" * 64}, Flag.TXID_MALFORMED),
        ({"bsv_txid": None}, Flag.TXID_MISSING),
        ({"settled_at": "2026-04-08T20:59:00Z"}, Flag.SETTLED_BEFORE_CREATED),
        ({"agreement_count": 4}, Flag.AGREEMENT_ABOVE_WORKERS),
        ({"confidence": 0.4}, Flag.CONFIDENCE_OUT_OF_RANGE),
    ],
)
def test_normalise_invariant_breaks_are_kept_with_flags(
    change: dict[str, object], flag: Flag
) -> None:
    assert flag in accepted_row({**FLAT, **change})["flags"]


REJECTS = [
    (b"\xff\xfe{}", RejectReason.INVALID_UTF8, None),
    ('{"task_id": "t1", ', RejectReason.INVALID_JSON, None),
    ("[1, 2]", RejectReason.NOT_OBJECT, None),
    ('"just a string"', RejectReason.NOT_OBJECT, None),
    ({"status": "settled"}, RejectReason.MISSING_TASK_ID, "task_id"),
    ({"task_id": ""}, RejectReason.MISSING_TASK_ID, "task_id"),
    ({"task_id": 12}, RejectReason.BAD_TYPE, "task_id"),
    ({"task_id": "../admin"}, RejectReason.UNSAFE_TASK_ID, "task_id"),
    ({"task_id": "a?b"}, RejectReason.UNSAFE_TASK_ID, "task_id"),
    ({"task_id": "a#b"}, RejectReason.UNSAFE_TASK_ID, "task_id"),
    ({"task_id": "a%2Fb"}, RejectReason.UNSAFE_TASK_ID, "task_id"),
    ({"task_id": "a b"}, RejectReason.UNSAFE_TASK_ID, "task_id"),
    ({"task_id": "a\u0007b"}, RejectReason.UNSAFE_TASK_ID, "task_id"),
    ({"task_id": "x" * 129}, RejectReason.UNSAFE_TASK_ID, "task_id"),
    ({"task_id": "t1", "worker_count": "3"}, RejectReason.BAD_TYPE, "worker_count"),
    ({"task_id": "t1", "agreement_count": True}, RejectReason.BAD_TYPE, "agreement_count"),
    ({"task_id": "t1", "worker_count": 2.5}, RejectReason.BAD_TYPE, "worker_count"),
    ({"task_id": "t1", "worker_count": -1}, RejectReason.BAD_TYPE, "worker_count"),
    ({"task_id": "t1", "confidence": "0.9"}, RejectReason.BAD_TYPE, "confidence"),
    ('{"task_id": "t1", "confidence": NaN}', RejectReason.BAD_TYPE, "confidence"),
    ('{"task_id": "t1", "confidence": 1e999}', RejectReason.BAD_TYPE, "confidence"),
    ({"task_id": "t1", "consensus_label": 3}, RejectReason.BAD_TYPE, "consensus_label"),
    ({"task_id": "t1", "cost_sats": -650}, RejectReason.BAD_SATS, "cost_sats"),
    ({"task_id": "t1", "cost_sats": 650.5}, RejectReason.BAD_SATS, "cost_sats"),
    ({"task_id": "t1", "total_cost_sats": "650"}, RejectReason.BAD_SATS, "total_cost_sats"),
    ('{"task_id": "t1", "cost_sats": 9223372036854775808}', RejectReason.BAD_SATS, "cost_sats"),
    # more than every coin that can exist (21 million BSV): no payment, and sums would wrap
    ('{"task_id": "t1", "cost_sats": 2100000000000001}', RejectReason.BAD_SATS, "cost_sats"),
    ('{"task_id": "t1", "cost_sats": 4611686018427387904}', RejectReason.BAD_SATS, "cost_sats"),
    (
        {"task_id": "t1", "created_at": "2026-02-30T00:00:00Z"},
        RejectReason.BAD_TIMESTAMP,
        "created_at",
    ),
    ({"task_id": "t1", "settled_at": "yesterday"}, RejectReason.BAD_TIMESTAMP, "settled_at"),
    ({"task_id": "t1", "settled_at": -5}, RejectReason.BAD_TIMESTAMP, "settled_at"),
    # ambiguous: a time without a zone, or a date alone, is never taken as UTC
    (
        {"task_id": "t1", "created_at": "2026-04-08T21:00:00"},
        RejectReason.BAD_TIMESTAMP,
        "created_at",
    ),
    (
        {"task_id": "t1", "created_at": "2026-04-08 21:00:00"},
        RejectReason.BAD_TIMESTAMP,
        "created_at",
    ),
    ({"task_id": "t1", "settled_at": "2026-04-08"}, RejectReason.BAD_TIMESTAMP, "settled_at"),
    ({"task_id": "t1", "timestamp": 946684799}, RejectReason.BAD_TIMESTAMP, "timestamp"),
    (
        {"task_id": "t1", "settled_at": "2026-04-08T21:00:47+99:99"},
        RejectReason.BAD_TIMESTAMP,
        "settled_at",
    ),
    (
        {"task_id": "t1", "settlement": {"settled_at": "2026-04-08T24:00:00Z"}},
        RejectReason.BAD_TIMESTAMP,
        "settlement.settled_at",
    ),
    (
        {"task_id": "t1", "timestamp": "9999-12-31T23:59:59Z"},
        RejectReason.BAD_TIMESTAMP,
        "timestamp",
    ),
    ({"task_id": "t1", "settlement": "paid"}, RejectReason.BAD_SETTLEMENT, "settlement"),
    (
        {"task_id": "t1", "settlement": {"total_cost_sats": 1.5}},
        RejectReason.BAD_SATS,
        "settlement.total_cost_sats",
    ),
]


@pytest.mark.parametrize(("body", "reason", "field"), REJECTS)
def test_normalise_rejects_with_reason_and_field(
    body: object, reason: str, field: str | None
) -> None:
    row = reject_row(body)
    assert row["reason"] == reason
    assert row["field"] == field
    assert row["detail"]
    assert row["origin"] == "t.jsonl" and row["origin_line"] == 1


@pytest.mark.parametrize(
    ("value", "why"),
    [
        # offsets: hours 00-23 and minutes 00-59, no seconds (RFC 3339 section 5.6)
        ("2026-04-08T21:00:47+99:99", "zone offset out of range (hours 00-23, minutes 00-59)"),
        ("2026-04-08T21:00:47+24:00", "zone offset out of range (hours 00-23, minutes 00-59)"),
        ("2026-04-08T21:00:47+00:60", "zone offset out of range (hours 00-23, minutes 00-59)"),
        ("2026-04-08T21:00:47-0060", "zone offset out of range (hours 00-23, minutes 00-59)"),
        ("2026-04-08T21:00:47+05:00:30", "a zone offset has no seconds in RFC 3339"),
        # the time of day: hour 00-23, minute and second 00-59
        ("2026-04-08T24:00:00Z", "time out of range (hour 00-23, minute and second 00-59)"),
        ("2026-04-08T21:60:00Z", "time out of range (hour 00-23, minute and second 00-59)"),
        ("2026-04-08T23:59:60Z", "time out of range (hour 00-23, minute and second 00-59)"),
        ("2026-04-08t24:00:00.5z", "time out of range (hour 00-23, minute and second 00-59)"),
        # 2000-2100, as for epoch seconds
        ("9999-12-31T23:59:59Z", "outside 2000-2100"),
        ("0001-01-01T00:00:00Z", "outside 2000-2100"),
        ("1999-12-31T23:59:59Z", "outside 2000-2100"),
        ("2100-01-01T00:00:00.000001Z", "outside 2000-2100"),
        ("2100-01-01T00:30:00+00:29", "outside 2000-2100"),
        ("2026-02-30T00:00:00Z", "no such date"),
        ("2026-13-01T00:00:00+02:00", "no such date"),
        ("2026-04-08T21:00:00", "a date alone or a time without a zone is ambiguous"),
        ("2026-04-08", "a date alone or a time without a zone is ambiguous"),
        # shapes DuckDB's cast would take, RFC 3339 does not
        ("2026-04-08T 1:00:00Z", "not an RFC 3339 timestamp"),
        ("2026/04/08T21:00:00Z", "not an RFC 3339 timestamp"),
        ("2026-4-08T21:00:47Z", "not an RFC 3339 timestamp"),
        ("2026-04-08T21:00:47.Z", "not an RFC 3339 timestamp"),
        ("2026-04-08T21:00:47Z ", "not an RFC 3339 timestamp"),
        (" 2026-04-08T21:00:47Z", "not an RFC 3339 timestamp"),
        ("02026-04-08T21:00:47Z", "not an RFC 3339 timestamp"),
        ("2026-04-08T21:00:47 UTC", "not an RFC 3339 timestamp"),
        ("2026-04-08T21:00:47+5", "not an RFC 3339 timestamp"),
        ("2026-W15-3T21:00:00Z", "not an RFC 3339 timestamp"),
        (1775682047.5, "not an RFC 3339 timestamp (a real date and time with a zone"),
        ("1775682047", "not an RFC 3339 timestamp"),
        (4102444801, "epoch seconds outside 2000-2100"),
    ],
)
def test_normalise_impossible_timestamp_is_rejected_saying_why(value: object, why: str) -> None:
    row = reject_row({**FLAT, "settled_at": value})
    assert (row["reason"], row["field"]) == (RejectReason.BAD_TIMESTAMP, "settled_at")
    assert str(row["detail"]).startswith(why), row["detail"]
    assert str(row["detail"]).endswith(f": {json.dumps(value).strip(chr(34))}"), row["detail"]


def test_normalise_reject_keeps_the_exact_raw_bytes() -> None:
    raw = b'\xff{"task_id": "t1"}'
    assert reject_row(raw)["raw"] == raw


def test_normalise_task_id_that_contradicts_the_request_is_rejected() -> None:
    row = reject_row(
        {"task_id": "other", "status": "settled"}, source=Source.POLL, task_id_hint="tsk_1"
    )
    assert row["reason"] == RejectReason.TASK_ID_MISMATCH


def test_normalise_oversized_record_is_quarantined_unparsed() -> None:
    rec = RawRecord(
        body='{"task_id": "t1", "x": "' + "y" * 2000 + '"}',
        source=Source.WEBHOOK,
        origin="d1",
        observed_at=NOW,
    )
    from asg_audit.normalize import normalise_batch, raw_frame

    batch = normalise_batch(raw_frame([rec]), max_record_bytes=1000)
    assert batch.rejects.get_column("reason").to_list() == [RejectReason.TOO_LARGE]


def test_normalise_file_records_point_at_their_origin_instead_of_copying_raw() -> None:
    row = accepted_row(FLAT)
    assert row["raw"] is None and row["origin"] == "t.jsonl" and row["origin_line"] == 1


def test_normalise_markup_in_a_label_is_kept_verbatim() -> None:
    label = "<img src=x onerror=alert(1)>"
    assert accepted_row({**FLAT, "consensus_label": label})["consensus_label"] == label
