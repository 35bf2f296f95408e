"""The receiver's odd inputs over real HTTP: a body cut off mid-stream, a JSON object repeating a
key, a busy port, a callback URL that is not one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import duckdb
import httpx
import pytest
from _webhooks_server import (
    REPO,
    SECRET,
    ThreadServer,
    free_port,
    payload,
    receiver_process,
    signed,
)

from asg_audit.sim import WorldConfig, generate_world, run_simulator
from asg_audit.store import open_store
from asg_audit.webhooks import WEBHOOK_PATH, WebhookSettings, create_webhook_app, sign_body


def _rows(db, sql, params=()):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- a body cut off mid-stream ------------------------------------------------------------------


def test_webhooks_body_cut_off_mid_stream_is_recorded_without_traceback(db):
    port = free_port()
    body, headers = signed(payload("tsk_cut"))
    head = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"X-ASG-Signature: {headers['X-ASG-Signature']}\r\n\r\n"
    ).encode()
    with receiver_process(db, port) as proc:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(head + body[: len(body) // 2])
            time.sleep(0.2)  # the receiver is now reading the body
        deadline = time.monotonic() + 10
        outcomes: dict[str, int] = {}
        while time.monotonic() < deadline:
            outcomes = httpx.get(f"http://127.0.0.1:{port}/healthz").json()["outcomes"]
            if outcomes:
                break
            time.sleep(0.05)
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert outcomes == {"truncated": 1}
    assert proc.returncode == 0
    assert b"Traceback" not in err and b"ClientDisconnect" not in err, err.decode()
    rows = _rows(
        db, "SELECT outcome, http_status, body_bytes, task_id, body, detail FROM webhook_deliveries"
    )
    assert len(rows) == 1
    outcome, status, size, task_id, stored_body, detail = rows[0]
    assert (outcome, status, size, task_id, stored_body) == (
        "truncated",
        400,
        len(body) // 2,
        None,
        None,
    )
    assert f"after {len(body) // 2} bytes of {len(body)}" in detail
    assert _rows(db, "SELECT count(*) FROM observations") == [(0,)]


# -- a JSON object that repeats a key -----------------------------------------------------------


def _dup_key_body(inner: bool) -> bytes:
    base = json.dumps(payload("tsk_dupkey"))
    if inner:  # the repeat sits in a nested object
        return (base[:-1] + ', "settlement": {"bsv_txid": "aa", "bsv_txid": "bb"}}').encode()
    dup = '"task_id": "tsk_dupkey", "task_id": "tsk_x"'
    return base.replace('"task_id": "tsk_dupkey"', dup).encode()


@pytest.mark.parametrize("inner", [False, True], ids=["top-level", "nested"])
def test_webhooks_duplicate_key_is_rejected_with_reason(db, inner):
    body = _dup_key_body(inner)
    headers = {"X-ASG-Signature": sign_body(body, SECRET), "Content-Type": "application/json"}
    app = create_webhook_app(db, [SECRET], settings=WebhookSettings(normalise_interval_ms=50))
    with ThreadServer(app) as srv:
        r = httpx.post(srv.hook_url, content=body, headers=headers)
        again = httpx.post(srv.hook_url, content=body, headers=headers)
    # answered 200 (an authentic sender: retrying would not help), kept as a reject
    assert r.status_code == 200 and r.json()["outcome"] == "rejected"
    assert again.json()["outcome"] == "duplicate"
    key = "bsv_txid" if inner else "task_id"
    rows = _rows(db, "SELECT outcome, task_id, detail FROM webhook_deliveries ORDER BY received_at")
    assert [(o, t) for o, t, _ in rows] == [("rejected", None), ("duplicate", None)]
    assert f'duplicate key "{key}"' in rows[0][2]
    rejects = _rows(db, "SELECT source, reason, field, detail, raw FROM rejects")
    assert len(rejects) == 1
    source, reason, field, detail, raw = rejects[0]
    # the field is the key's path, as the normaliser names it (`settlement.bsv_txid`)
    path = "settlement.bsv_txid" if inner else "task_id"
    assert (source, reason, field, bytes(raw)) == ("webhook", "invalid_json", path, body)
    assert f'duplicate key "{key}"' in detail
    assert _rows(db, "SELECT count(*) FROM observations") == [(0,)]
    assert _rows(db, "SELECT count(*) FROM results") == [(0,)]


def test_webhooks_duplicate_key_left_unnormalised_is_rejected_on_restart(db):
    # A body committed (by an older receiver, or before a crash) but not yet normalised goes
    # through the same rule when the receiver starts: never an observation of either task id.
    body = _dup_key_body(False)
    with open_store(db) as store:
        store.con.execute(
            "INSERT INTO webhook_deliveries (delivery_id, received_at, outcome, http_status,"
            " body_sha256, body_bytes, task_id, body) VALUES ('dlv_old', now(), 'stored', 200,"
            " sha256(?), ?, 'tsk_x', ?)",
            [body.decode(), len(body), body],
        )
    app = create_webhook_app(db, [SECRET])
    with ThreadServer(app):
        pass
    assert _rows(db, "SELECT count(*) FROM observations") == [(0,)]
    assert _rows(db, "SELECT reason, field FROM rejects") == [("invalid_json", "task_id")]
    assert _rows(db, "SELECT outcome FROM webhook_deliveries") == [("rejected",)]


def test_webhooks_delivery_row_and_observation_name_the_same_task(db):
    body, headers = signed(payload("tsk_same"))
    app = create_webhook_app(db, [SECRET], settings=WebhookSettings(normalise_interval_ms=50))
    with ThreadServer(app) as srv:
        assert httpx.post(srv.hook_url, content=body, headers=headers).status_code == 200
    assert _rows(db, "SELECT task_id FROM webhook_deliveries") == [("tsk_same",)]
    assert _rows(db, "SELECT task_id FROM observations") == [("tsk_same",)]


# -- serve-webhooks: "listening" only once bound ------------------------------------------------


def test_cli_serve_webhooks_busy_port_never_says_listening(db):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _cli(
            "serve-webhooks", "--port", str(port), "--db", str(db), env={"ASG_WEBHOOK_SECRET": "s"}
        )
    assert proc.returncode == 2
    assert "listening" not in proc.stdout
    assert proc.stderr.strip() == f"asg-audit: error: cannot listen on 127.0.0.1:{port} (in use)"


def test_cli_serve_webhooks_port_0_says_the_port_it_bound(db):
    proc = subprocess.Popen(
        [sys.executable, "-m", "asg_audit", "serve-webhooks", "--port", "0", "--db", str(db)],
        cwd=REPO,
        env={**os.environ, "ASG_WEBHOOK_SECRET": SECRET},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("webhooks: listening on http://127.0.0.1:")
        url = line.split(" on ", 1)[1].strip()
        port = int(url.split(":")[2].split("/")[0])
        assert port != 0 and url.endswith(WEBHOOK_PATH)
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        body, headers = signed(payload("tsk_port0"))
        assert httpx.post(url, content=body, headers=headers).json()["outcome"] == "stored"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert proc.returncode == 0


# -- webhooks register: the callback URL is checked locally -------------------------------------


@pytest.fixture(scope="module")
def gateway():
    world = generate_world(WorldConfig(seed=9, tasks=50))
    with run_simulator(world, time_scale=0.05) as sim:
        yield sim


@pytest.mark.parametrize(
    "url", ["not a url", "ftp://hooks.example.com/asg", "http:///webhooks/asg", "/webhooks/asg"]
)
def test_cli_webhooks_register_refuses_a_url_that_is_not_one(gateway, url):
    before = len(gateway.state.webhooks)
    proc = _cli(
        "webhooks",
        "register",
        "--url",
        url,
        env={
            "ASG_BASE_URL": gateway.gateway_url,
            "ASG_API_KEY": gateway.api_key,
            "ASG_WEBHOOK_SECRET": SECRET,
        },
    )
    assert proc.returncode == 2, proc.stderr
    assert "is not an absolute http:// or https:// URL with a host" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(gateway.state.webhooks) == before  # the Gateway was never asked


def test_cli_webhooks_register_accepts_a_url_with_a_port(gateway):
    url = f"http://127.0.0.1:{free_port()}/webhooks/asg"
    proc = _cli(
        "webhooks",
        "register",
        "--url",
        url,
        env={
            "ASG_BASE_URL": gateway.gateway_url,
            "ASG_API_KEY": gateway.api_key,
            "ASG_WEBHOOK_SECRET": SECRET,
        },
    )
    assert proc.returncode == 0, proc.stderr
    assert f"callback_url: {url}" in proc.stdout
