"""The receiver over real HTTP on 127.0.0.1: every outcome, what is stored, group commit, 503."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone

import duckdb
import httpx
import pytest
from _webhooks_server import OLD_SECRET, SECRET, ThreadServer, payload, signed

from asg_audit.errors import ConfigError
from asg_audit.store import open_store
from asg_audit.webhooks import WebhookSettings, create_webhook_app, sign_body


def _rows(db, sql, params=()):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def _outcomes(db):
    return dict(_rows(db, "SELECT outcome, count(*) FROM webhook_deliveries GROUP BY 1"))


@pytest.fixture
def serve(db):
    def start(**settings):
        secrets = settings.pop("secrets", [SECRET])
        app = create_webhook_app(db, secrets, settings=WebhookSettings(**settings))
        return ThreadServer(app)

    return start


def test_webhooks_signed_delivery_is_stored_as_webhook_observation(serve, db):
    body, headers = signed(payload("tsk_a1", label="dog"))
    with serve() as srv:
        r = httpx.post(srv.hook_url, content=body, headers=headers)
    assert r.status_code == 200 and r.json()["outcome"] == "stored"
    obs = _rows(db, "SELECT task_id, source, status, consensus_label, raw FROM observations")
    assert obs == [("tsk_a1", "webhook", "settled", "dog", body.decode())]
    assert _rows(db, "SELECT task_id, sources FROM results") == [("tsk_a1", ["webhook"])]
    assert _outcomes(db) == {"stored": 1}


def test_webhooks_forged_signature_answers_401_and_stores_no_payload(serve, db):
    body, _ = signed(payload("tsk_forged"))
    headers = {"X-ASG-Signature": sign_body(body, "whsec_attacker")}
    with serve() as srv:
        r = httpx.post(srv.hook_url, content=body, headers=headers)
    assert r.status_code == 401
    assert _rows(db, "SELECT count(*) FROM observations") == [(0,)]
    assert _rows(db, "SELECT count(*) FROM rejects") == [(0,)]
    row = _rows(db, "SELECT outcome, http_status, task_id, body_bytes FROM webhook_deliveries")
    assert row == [("bad_signature", 401, None, len(body))]


@pytest.mark.parametrize(
    "header", [None, "sha256=", "sha1=" + "0" * 40, "sha256=" + "Z" * 64, "t=1,v1=abc"]
)
def test_webhooks_missing_or_malformed_signature_answers_401(serve, db, header):
    body, _ = signed(payload("tsk_b1"))
    headers = {} if header is None else {"X-ASG-Signature": header}
    with serve() as srv:
        r = httpx.post(srv.hook_url, content=body, headers=headers)
    assert r.status_code == 401
    assert _outcomes(db) == {"bad_signature": 1}
    assert _rows(db, "SELECT count(*) FROM observations") == [(0,)]


def test_webhooks_rotation_accepts_every_active_secret(serve, db):
    new_body, new_headers = signed(payload("tsk_new"), SECRET)
    old_body, old_headers = signed(payload("tsk_old"), OLD_SECRET)
    with serve(secrets=[SECRET, OLD_SECRET]) as srv:
        assert httpx.post(srv.hook_url, content=new_body, headers=new_headers).status_code == 200
        assert httpx.post(srv.hook_url, content=old_body, headers=old_headers).status_code == 200
    rows = _rows(db, "SELECT task_id, secret_index FROM webhook_deliveries ORDER BY task_id")
    assert rows == [("tsk_new", 0), ("tsk_old", 1)]


def test_webhooks_timestamps_with_an_offset_are_stored_as_the_same_instant(serve, db):
    # The group commit hands DuckDB Arrow timestamps in UTC: an offset must not shift them.
    at = datetime.now(UTC).replace(microsecond=0)
    doc = payload("tsk_offset", at=at)
    doc["timestamp"] = at.astimezone(timezone(timedelta(hours=2))).isoformat()
    body, headers = signed(doc)
    with serve() as srv:
        assert httpx.post(srv.hook_url, content=body, headers=headers).status_code == 200
    ((delivered, received),) = _rows(db, "SELECT delivered_at, received_at FROM webhook_deliveries")
    assert delivered == at
    assert abs(received - datetime.now(UTC)) < timedelta(minutes=1)


@pytest.mark.parametrize("offset", [timedelta(minutes=-10), timedelta(minutes=10)])
def test_webhooks_timestamp_outside_window_answers_400(serve, db, offset):
    body, headers = signed(payload("tsk_stale", at=datetime.now(UTC) + offset))
    with serve() as srv:
        r = httpx.post(srv.hook_url, content=body, headers=headers)
    assert r.status_code == 400
    assert _outcomes(db) == {"stale": 1}
    assert _rows(db, "SELECT count(*) FROM observations") == [(0,)]


def test_webhooks_missing_timestamp_answers_400(serve, db):
    doc = payload("tsk_nots")
    del doc["timestamp"]
    body, headers = signed(doc)
    with serve() as srv:
        assert httpx.post(srv.hook_url, content=body, headers=headers).status_code == 400
    assert _rows(db, "SELECT detail FROM webhook_deliveries")[0][0].startswith("no usable")


def test_webhooks_freshness_window_is_configurable(serve, db):
    body, headers = signed(payload("tsk_old_ok", at=datetime.now(UTC) - timedelta(minutes=10)))
    with serve(freshness_seconds=3600) as srv:
        assert httpx.post(srv.hook_url, content=body, headers=headers).status_code == 200


def test_webhooks_oversized_body_answers_413(serve, db):
    doc = payload("tsk_big")
    doc["padding"] = "x" * 5000
    body, headers = signed(doc)
    with serve(max_body_bytes=4096) as srv:
        r = httpx.post(srv.hook_url, content=body, headers=headers)
    assert r.status_code == 413
    assert _rows(db, "SELECT outcome, body_sha256 FROM webhook_deliveries") == [("too_large", None)]


def test_webhooks_oversized_chunked_body_answered_before_it_ends(serve, db):
    with serve(max_body_bytes=4096) as srv, socket.create_connection(("127.0.0.1", srv.port)) as s:
        # 8 KiB of chunks and the body never ends. One send: the server has it all when it
        # answers, so its close is clean (a later send would race the close: EPIPE or reset).
        s.sendall(
            f"POST /webhooks/asg HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            f"X-ASG-Signature: sha256={'0' * 64}\r\n\r\n".encode()
            + (b"400\r\n" + b"x" * 1024 + b"\r\n") * 8
        )
        s.settimeout(5)
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")
    assert _outcomes(db) == {"too_large": 1}


@pytest.mark.parametrize("body", [b"not json", b"[1, 2, 3]", b"\xff\xfe{}", b'"task.settled"'])
def test_webhooks_signed_unusable_body_goes_to_rejects_with_200(serve, db, body):
    raw, headers = signed(body)
    with serve() as srv:
        r = httpx.post(srv.hook_url, content=raw, headers=headers)
    assert r.status_code == 200 and r.json()["outcome"] == "rejected"
    rejects = _rows(db, "SELECT source, reason, raw FROM rejects")
    assert len(rejects) == 1 and rejects[0][0] == "webhook" and rejects[0][2] == raw
    assert _rows(db, "SELECT count(*) FROM observations") == [(0,)]


def test_webhooks_signed_object_with_bad_fields_ends_in_rejects(serve, db):
    doc = payload("tsk_badtype")
    doc["worker_count"] = "three"
    body, headers = signed(doc)
    with serve() as srv:
        assert httpx.post(srv.hook_url, content=body, headers=headers).status_code == 200
    assert _rows(db, "SELECT reason, field FROM rejects") == [("bad_type", "worker_count")]
    assert _outcomes(db) == {"rejected": 1}  # the normaliser stage corrected the outcome
    assert _rows(db, "SELECT count(*) FROM observations") == [(0,)]


def test_webhooks_repeated_delivery_is_stored_once(serve, db):
    body, headers = signed(payload("tsk_dup"))
    with serve() as srv:
        answers = [httpx.post(srv.hook_url, content=body, headers=headers) for _ in range(3)]
    assert [a.json()["outcome"] for a in answers] == ["stored", "duplicate", "duplicate"]
    assert all(a.status_code == 200 for a in answers)
    assert _rows(db, "SELECT count(*) FROM observations") == [(1,)]
    assert _rows(db, "SELECT observation_count FROM results") == [(1,)]
    assert _outcomes(db) == {"stored": 1, "duplicate": 2}


def test_webhooks_duplicate_is_recognised_after_restart(serve, db):
    body, headers = signed(payload("tsk_restart"))
    with serve() as srv:
        assert httpx.post(srv.hook_url, content=body, headers=headers).json()["outcome"] == "stored"
    with serve() as srv:
        r = httpx.post(srv.hook_url, content=body, headers=headers)
    assert r.json()["outcome"] == "duplicate"
    assert _rows(db, "SELECT count(*) FROM observations") == [(1,)]


def test_webhooks_redelivery_with_new_timestamp_is_duplicate(serve, db):
    first = payload("tsk_redeliver")
    again = {**first, "timestamp": (datetime.now(UTC) + timedelta(seconds=16)).isoformat()}
    with serve() as srv:
        for doc in (first, again):
            body, headers = signed(doc)
            httpx.post(srv.hook_url, content=body, headers=headers)
    assert _outcomes(db) == {"stored": 1, "duplicate": 1}
    assert _rows(db, "SELECT count(*) FROM observations") == [(1,)]


def test_webhooks_dedupe_memory_is_bounded_by_count(serve, db):
    # With room for one event, the older one is forgotten: its repeat is stored again (one
    # more identical observation, no conflict); the latest one is still a duplicate.
    a, b = (signed(payload(t)) for t in ("tsk_bound_a", "tsk_bound_b"))
    with serve(dedupe_max_events=1) as srv:
        outcomes = [
            httpx.post(srv.hook_url, content=body, headers=headers).json()["outcome"]
            for body, headers in (a, b, a, a)
        ]
    assert outcomes == ["stored", "stored", "stored", "duplicate"]
    assert dict(_rows(db, "SELECT task_id, observation_count FROM results")) == {
        "tsk_bound_a": 2,
        "tsk_bound_b": 1,
    }
    assert _rows(db, "SELECT sum(conflict_count) FROM results") == [(0,)]


def test_webhooks_dedupe_window_applies_to_events_loaded_at_restart(serve, db):
    body, headers = signed(payload("tsk_window"))
    with serve() as srv:
        assert httpx.post(srv.hook_url, content=body, headers=headers).json()["outcome"] == "stored"
    with serve(dedupe_window_seconds=3600) as srv:  # committed a moment ago: remembered
        assert (
            httpx.post(srv.hook_url, content=body, headers=headers).json()["outcome"] == "duplicate"
        )
    time.sleep(0.3)
    with serve(dedupe_window_seconds=0.2) as srv:  # older than the window: not loaded
        assert httpx.post(srv.hook_url, content=body, headers=headers).json()["outcome"] == "stored"


@pytest.mark.parametrize(
    "bad",
    [
        {"dedupe_max_events": 0},
        {"dedupe_max_events": True},
        {"dedupe_window_seconds": 0},
        {"dedupe_window_seconds": "1d"},
    ],
)
def test_webhooks_dedupe_settings_are_validated(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        WebhookSettings.from_mapping(bad)


def test_webhooks_changed_result_is_kept_as_a_conflict(serve, db):
    with serve() as srv:
        for label in ("cat", "dog"):
            body, headers = signed(payload("tsk_changed", label=label))
            answer = httpx.post(srv.hook_url, content=body, headers=headers)
            assert answer.json()["outcome"] == "stored"
    assert _rows(db, "SELECT consensus_label, conflict_count FROM results") == [("cat", 1)]


def test_webhooks_out_of_order_deliveries_are_all_stored(serve, db):
    now = datetime.now(UTC)
    early = payload("tsk_early", at=now - timedelta(seconds=30))
    late = payload("tsk_late", at=now)
    retried_at = (now + timedelta(seconds=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    early_retry = {**early, "timestamp": retried_at}
    with serve() as srv:
        outcomes = []
        for doc in (early_retry, late, early):  # newer first, the original attempt last
            body, headers = signed(doc)
            answer = httpx.post(srv.hook_url, content=body, headers=headers)
            outcomes.append(answer.json()["outcome"])
    assert outcomes == ["stored", "stored", "duplicate"]
    settled = dict(_rows(db, "SELECT task_id, settled_at FROM results"))
    assert settled["tsk_early"] < settled["tsk_late"]


def test_webhooks_concurrent_deliveries_share_commits(serve, db):
    bodies = [signed(payload(f"tsk_c{i:03d}")) for i in range(200)]

    async def send_all(url):
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=50)) as client:
            sends = (client.post(url, content=b, headers=h) for b, h in bodies)
            return await asyncio.gather(*sends)

    with serve(commit_max_wait_ms=20) as srv:
        answers = asyncio.run(send_all(srv.hook_url))
        health = httpx.get(srv.url + "/healthz").json()
    assert all(a.status_code == 200 for a in answers)
    assert _rows(db, "SELECT count(DISTINCT task_id) FROM observations") == [(200,)]
    assert health["outcomes"]["stored"] == 200
    assert health["largest_commit"] > 1  # grouped: one commit held several deliveries
    assert health["commits"] < 200


def test_webhooks_healthz_reports_ok_and_counters(serve, db):
    with serve() as srv:
        r = httpx.get(srv.url + "/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["run_id"]


def test_webhooks_store_busy_answers_503_then_recovers(serve, db):
    with open_store(db):
        pass  # create it, then let another process hold the write lock
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
            " time.sleep(60)",
            str(db),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == b"held"
        body, headers = signed(payload("tsk_busy"))
        with serve() as srv:
            r = httpx.post(srv.hook_url, content=body, headers=headers)
            assert r.status_code == 503
            assert httpx.get(srv.url + "/healthz").status_code == 503
            holder.kill()
            holder.wait()
            deadline = time.monotonic() + 10
            while (r := httpx.post(srv.hook_url, content=body, headers=headers)).status_code == 503:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert r.status_code == 200 and r.json()["outcome"] == "stored"
    finally:
        holder.kill()
        holder.wait()
    assert _rows(db, "SELECT task_id FROM observations") == [("tsk_busy",)]


def test_webhooks_shutdown_drains_deliveries_in_flight(serve, db):
    bodies = [signed(payload(f"tsk_d{i:02d}")) for i in range(20)]
    srv = serve(commit_max_wait_ms=400).__enter__()  # a long linger keeps deliveries in flight

    async def send_then_stop():
        async with httpx.AsyncClient() as client:
            sends = [
                asyncio.create_task(client.post(srv.hook_url, content=b, headers=h))
                for b, h in bodies
            ]
            await asyncio.sleep(0.15)
            srv.server.should_exit = True  # what SIGTERM does
            return await asyncio.gather(*sends)

    answers = asyncio.run(send_then_stop())
    srv.__exit__(None, None, None)
    assert [a.status_code for a in answers] == [200] * 20
    assert _rows(db, "SELECT count(*) FROM observations") == [(20,)]
    assert _rows(db, "SELECT status FROM runs") == [("finished",)]


def test_webhooks_deliveries_never_store_the_secret(serve, db):
    body, headers = signed(payload("tsk_s"))
    with serve() as srv:
        httpx.post(srv.hook_url, content=body, headers=headers)
        httpx.post(srv.hook_url, content=body, headers={"X-ASG-Signature": "sha256=" + "1" * 64})
    dump = json.dumps(_rows(db, "SELECT * FROM webhook_deliveries"), default=str)
    dump += json.dumps(_rows(db, "SELECT * FROM runs"), default=str)
    assert SECRET not in dump and headers["X-ASG-Signature"] not in dump
