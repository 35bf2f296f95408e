"""Each delivered webhook body is scanned for its JSON nesting depth once, not twice.

The receiver scanned every signed body at receipt (`load_json_object`, which refuses a body
nested deeper than `MAX_JSON_DEPTH`), then the writer's normaliser stage scanned it again
(`normalise_records`), although a body too deep never reaches that stage (it is a preset
reject). Now the normaliser stage skips the scan for bodies already checked; a body deeper than
the limit is refused exactly as before (200 `rejected`, the same detail, an `invalid_json`
reject). All through the real receiver on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from _hardening_procs import query
from _webhooks_server import SECRET, ThreadServer, payload, signed

import asg_audit.normalize as normalize
import asg_audit.webhook_writer as webhook_writer
from asg_audit.jsonload import MAX_JSON_DEPTH, TooDeepError
from asg_audit.store import open_store
from asg_audit.webhooks import WebhookSettings, create_webhook_app


def _body(task_id: str, *, depth: int = 0, boxes: int = 0) -> bytes:
    """A fresh `task.settled` body; `depth` nests an extra member that deep, `boxes` adds a
    flat list of that many small arrays (brackets enough for a full scan, no depth)."""
    doc: dict[str, Any] = payload(task_id, at=datetime.now(UTC))
    if boxes:
        doc["boxes"] = [[i, i + 1, 2, 2] for i in range(boxes)]
    text = json.dumps(doc)
    if depth:
        text = text[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"
    return text.encode()


def _post(srv: ThreadServer, body: bytes) -> httpx.Response:
    raw, headers = signed(body)
    return httpx.post(srv.hook_url, content=raw, headers=headers, timeout=30)


def _serve(db: Path) -> ThreadServer:
    app = create_webhook_app(db, [SECRET], settings=WebhookSettings(normalise_interval_ms=50))
    return ThreadServer(app)


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> Counter[bytes]:
    """Every body scanned for depth, by the receiver or the normaliser, counted."""
    seen: Counter[bytes] = Counter()
    real = webhook_writer.nesting_depth_over

    def counted(body: bytes, limit: int = MAX_JSON_DEPTH) -> int | None:
        seen[bytes(body)] += 1
        return real(body, limit)

    monkeypatch.setattr(webhook_writer, "nesting_depth_over", counted)
    monkeypatch.setattr(normalize, "nesting_depth_over", counted)
    return seen


def test_each_delivered_body_is_scanned_for_depth_once(db: Path, scans: Counter[bytes]) -> None:
    bodies = [_body(f"tsk_plain_{i}") for i in range(10)]
    bodies += [_body(f"tsk_boxes_{i}", boxes=MAX_JSON_DEPTH) for i in range(5)]
    with _serve(db) as srv:
        answers = [_post(srv, b) for b in bodies]
    assert [(r.status_code, r.json()["outcome"]) for r in answers] == [(200, "stored")] * 15
    # normalised: every one of them is a result
    assert query(db, "SELECT count(*) FROM results") == [(15,)]
    assert {body: scans[body] for body in bodies} == dict.fromkeys(bodies, 1)


def test_a_body_left_unnormalised_is_scanned_once_on_restart(
    db: Path, scans: Counter[bytes]
) -> None:
    body = _body("tsk_left")
    with open_store(db) as store:
        store.con.execute(
            "INSERT INTO webhook_deliveries (delivery_id, received_at, outcome, http_status,"
            " body_sha256, body_bytes, body) VALUES ('dlv_old', now(), 'stored', 200,"
            " sha256(?), ?, ?)",
            [body.decode(), len(body), body],
        )
    with _serve(db):
        pass
    assert query(db, "SELECT task_id FROM results") == [("tsk_left",)]
    assert scans[body] == 1


@pytest.mark.parametrize("extra", [MAX_JSON_DEPTH, MAX_JSON_DEPTH + 300])
def test_a_body_deeper_than_the_limit_is_still_refused_the_same_way(
    db: Path, scans: Counter[bytes], extra: int
) -> None:
    deep = _body("tsk_deep", depth=extra)  # the payload object is one level more
    depth = extra + 1
    with _serve(db) as srv:
        answer = _post(srv, deep)
        fine = _post(srv, _body("tsk_fine"))
    assert (answer.status_code, answer.json()["outcome"]) == (200, "rejected")
    assert (fine.status_code, fine.json()["outcome"]) == (200, "stored")
    expected = str(TooDeepError(depth))
    assert f"nested {depth} levels, over the limit of {MAX_JSON_DEPTH}" in expected
    assert query(
        db, "SELECT outcome, http_status, detail FROM webhook_deliveries WHERE task_id IS NULL"
    ) == [("rejected", 200, expected)]
    assert query(db, "SELECT source, reason, field, detail FROM rejects") == [
        ("webhook", "invalid_json", None, expected)
    ]
    assert query(db, "SELECT task_id FROM results") == [("tsk_fine",)]
    assert scans[deep] == 1
