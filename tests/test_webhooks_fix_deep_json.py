"""Signed bodies nested too deep to read: refused, kept in `rejects`, never an observation.

Python's json gives up near ~1000 levels (RecursionError) where DuckDB's JSON functions (the
normaliser) do not; such a body skipped the freshness and repeated-key checks, was answered
`rejected` and still became a result. The receiver now refuses any body nesting deeper than
`MAX_JSON_DEPTH`, and the answer, the `webhook_deliveries` row and the store agree. All through
the real receiver on 127.0.0.1.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from _hardening_procs import query
from _webhooks_server import SECRET, ThreadServer, payload, signed

from asg_audit.store import open_store
from asg_audit.webhook_writer import MAX_JSON_DEPTH, nesting_depth_over
from asg_audit.webhooks import WebhookSettings, create_webhook_app


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _body(depth: int, *, task_id: str, stale: bool = False, repeat: bool = False) -> bytes:
    at = datetime(2026, 1, 1, tzinfo=UTC) if stale else datetime.now(UTC)
    text = json.dumps(payload(task_id, at=at))
    if repeat:
        text = text.replace(
            f'"task_id": "{task_id}"', f'"task_id": "{task_id}", "task_id": "tsk_b"'
        )
    return (text[:-1] + f', "x": {_nested(depth)}}}').encode()


def _post(srv: ThreadServer, body: bytes) -> httpx.Response:
    raw, headers = signed(body)
    return httpx.post(srv.hook_url, content=raw, headers=headers, timeout=30)


def _serve(db):
    app = create_webhook_app(db, [SECRET], settings=WebhookSettings(normalise_interval_ms=50))
    return ThreadServer(app)


# 990 and 1200 inside the object: the report's depths (Python's json fails there); MAX + 1:
# just over the limit (the payload object is one level more).
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 990, 1200])
def test_webhooks_too_deep_body_is_rejected_and_never_stored(db, depth):
    stale = _body(depth, task_id="tsk_stale_deep", stale=True)
    repeated = _body(depth, task_id="tsk_first", repeat=True)
    fresh = _body(depth, task_id="tsk_fresh_deep")
    with _serve(db) as srv:
        answers = [_post(srv, b) for b in (stale, repeated, fresh)]
        again = _post(srv, fresh)
    for r in answers:
        assert (r.status_code, r.json()["outcome"]) == (200, "rejected")
    assert again.json()["outcome"] == "duplicate"
    # Nothing of them is an observation or a result: a `rejected` answer means exactly that.
    assert query(db, "SELECT count(*) FROM observations") == [(0,)]
    assert query(db, "SELECT count(*) FROM results") == [(0,)]
    rows = query(
        db,
        "SELECT outcome, http_status, task_id, delivered_at, detail FROM webhook_deliveries"
        " ORDER BY received_at",
    )
    assert [r[:4] for r in rows] == [("rejected", 200, None, None)] * 3 + [
        ("duplicate", 200, None, None)
    ]
    for *_, detail in rows[:3]:
        assert f"nested {depth + 1} levels" in detail and str(MAX_JSON_DEPTH) in detail
    rejects = query(db, "SELECT source, reason, field, detail, raw FROM rejects ORDER BY raw")
    assert len(rejects) == 3
    assert sorted(bytes(r[4]) for r in rejects) == sorted([stale, repeated, fresh])
    for source, reason, field, detail, _ in rejects:
        assert (source, reason, field) == ("webhook", "invalid_json", None)
        assert f"nested {depth + 1} levels" in detail


def test_webhooks_body_at_the_depth_limit_still_gets_every_check(db):
    # One level under the limit counts the payload object itself: the whole body nests
    # exactly MAX_JSON_DEPTH deep and is read, so its timestamp and keys are checked.
    inner = MAX_JSON_DEPTH - 1
    with _serve(db) as srv:
        stored = _post(srv, _body(inner, task_id="tsk_at_limit"))
        stale = _post(srv, _body(inner, task_id="tsk_stale_limit", stale=True))
        repeated = _post(srv, _body(inner, task_id="tsk_first", repeat=True))
    assert (stored.status_code, stored.json()["outcome"]) == (200, "stored")
    assert (stale.status_code, stale.json()["outcome"]) == (400, "stale")
    assert (repeated.status_code, repeated.json()["outcome"]) == (200, "rejected")
    assert query(db, "SELECT task_id, status FROM results") == [("tsk_at_limit", "settled")]
    assert query(db, "SELECT reason, field FROM rejects") == [("invalid_json", "task_id")]


def test_webhooks_too_deep_body_left_unnormalised_is_rejected_on_restart(db):
    # Committed as `stored` (by an older receiver, or before a crash) but never normalised:
    # the same rule applies when the receiver starts.
    body = _body(1200, task_id="tsk_left_deep", stale=True)
    with open_store(db) as store:
        store.con.execute(
            "INSERT INTO webhook_deliveries (delivery_id, received_at, outcome, http_status,"
            " body_sha256, body_bytes, body) VALUES ('dlv_old', now(), 'stored', 200,"
            " sha256(?), ?, ?)",
            [body.decode(), len(body), body],
        )
    with _serve(db):
        pass
    assert query(db, "SELECT count(*) FROM observations") == [(0,)]
    assert query(db, "SELECT reason, field FROM rejects") == [("invalid_json", None)]
    assert query(db, "SELECT outcome FROM webhook_deliveries") == [("rejected",)]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": 1}', None),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH + 1),
        # brackets inside strings (with escaped quotes) are text, not nesting
        (b'["' + b"[{" * MAX_JSON_DEPTH + b'\\"", "' + b"[" * 9 + b'"]', None),
        # many arrays side by side are not deep
        (b"[" + b"[]," * (MAX_JSON_DEPTH * 2) + b"[]]", None),
    ],
    ids=["flat", "over", "in-strings", "wide"],
)
def test_nesting_depth_over_counts_only_real_nesting(body, expected):
    assert nesting_depth_over(body) == expected
