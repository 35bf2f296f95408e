"""The simulated Gateway over real HTTP on 127.0.0.1: bodies, auth, submit, webhooks, faults."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from contextlib import ExitStack
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler

import httpx
import pytest
from _http_server import serve

from asg_audit.sim import FaultConfig, WorldConfig, generate_world, run_simulator

IN_PROGRESS = {"status": "in_progress", "message": "Task is still being labeled."}


@pytest.fixture(scope="module")
def world():
    return generate_world(WorldConfig(seed=21, tasks=300, live_fraction=0.05))


@pytest.fixture(scope="module")
def sim(world):
    with run_simulator(world, time_scale=0.01) as running:
        yield running


def _get(sim, path, **kw):
    return httpx.get(
        sim.gateway_url + path, headers={"Authorization": f"Bearer {sim.api_key}"}, **kw
    )


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_gateway_settled_result_has_settlement_fields(sim, world):
    task = next(t for t in world.tasks if not t.live and t.shape == "flat")
    r = _get(sim, f"/v1/tasks/{task.task_id}/result")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "settled" and body["bsv_txid"] == task.reported["bsv_txid"]
    assert body["confidence"] == task.confidence and body[task.cost_field] >= 0
    assert body["created_at"].endswith("Z") and body["settled_at"].endswith("Z")
    nested = next(t for t in world.tasks if not t.live and t.shape == "nested")
    body = _get(sim, f"/v1/tasks/{nested.task_id}/result").json()
    assert set(body["settlement"]) == {"bsv_txid", "total_cost_sats", "settled_at"}


def test_gateway_in_progress_answers_202_body(sim, world):
    live = [t for t in world.tasks if t.live]
    now = sim.clock.now()
    pending = [t for t in live if t.verified_at > now + 5]
    assert pending
    r = _get(sim, f"/v1/tasks/{pending[0].task_id}/result")
    assert r.status_code == 202 and r.json() == IN_PROGRESS


def test_gateway_verified_answers_200_without_settlement(sim, world):
    live = [t for t in world.tasks if t.live]
    target = min(live, key=lambda t: t.verified_at if t.verified_at > sim.clock.now() else 1e18)
    assert _wait_for(lambda: sim.clock.now() >= target.verified_at + 0.1)
    if sim.clock.now() < target.settled_at:
        body = _get(sim, f"/v1/tasks/{target.task_id}/result").json()
        if body["status"] == "verified":
            assert "bsv_txid" not in body and "settlement" not in body and "settled_at" not in body
            return
    # fall back to a direct check of the same rendering at a verified moment
    from asg_audit.sim.world import render_result

    body = render_result(target, target.verified_at)
    assert body["status"] == "verified" and "settlement" not in body and "bsv_txid" not in body


def test_gateway_live_task_settles_in_scaled_time(sim, world):
    live = max((t for t in world.tasks if t.live), key=lambda t: t.settled_at)
    path = f"/v1/tasks/{live.task_id}/result"
    assert _wait_for(lambda: _get(sim, path).json().get("status") == "settled", timeout=15)


def test_gateway_unknown_task_answers_404(sim):
    r = _get(sim, "/v1/tasks/tsk_doesnotexist/result")
    assert r.status_code == 404 and r.json() == {"error": "task not found"}
    assert _get(sim, "/v1/tasks/tsk_doesnotexist").status_code == 404


def test_gateway_rejects_missing_or_wrong_key(sim, world):
    path = f"/v1/tasks/{world.tasks[0].task_id}/result"
    r = httpx.get(sim.gateway_url + path)
    assert r.status_code == 401 and "error" in r.json()
    r = httpx.get(sim.gateway_url + path, headers={"Authorization": "Bearer sk_sandbox_wrong"})
    assert r.status_code == 401 and "error" in r.json()


def test_gateway_status_summary(sim, world):
    task = world.tasks[0]
    body = _get(sim, f"/v1/tasks/{task.task_id}").json()
    assert set(body) == {"task_id", "status", "task_type", "data_url", "created_at"}
    assert body["task_type"] == task.task_type


def test_gateway_submit_and_idempotency(sim):
    headers = {"Authorization": f"Bearer {sim.api_key}"}
    spec = {
        "task_type": "sentiment",
        "consensus_threshold": 3,
        "label_spec": {"options": ["positive", "negative"]},
        "idempotency_key": "k-1",
    }
    r = httpx.post(sim.gateway_url + "/v1/tasks", json=spec, headers=headers)
    assert r.status_code == 202
    first = r.json()
    assert first["status"] == "pending" and first["task_id"].startswith("tsk_")
    again = httpx.post(sim.gateway_url + "/v1/tasks", json=spec, headers=headers)
    assert again.status_code == 200
    assert again.json()["idempotent"] is True and again.json()["task_id"] == first["task_id"]
    assert _wait_for(lambda: _get(sim, f"/v1/tasks/{first['task_id']}/result").status_code == 200)
    bad = httpx.post(sim.gateway_url + "/v1/tasks", json={"task_type": "x"}, headers=headers)
    assert bad.status_code == 400 and "error" in bad.json()


def test_gateway_batch_submit(sim):
    headers = {"Authorization": f"Bearer {sim.api_key}"}
    task = {"type": "spam_detection", "label_spec": {"options": ["spam", "ham"]}}
    r = httpx.post(sim.gateway_url + "/v1/tasks/batch", json={"tasks": [task] * 3}, headers=headers)
    assert r.status_code == 202
    assert r.json()["task_count"] == 3 and r.json()["batch_id"].startswith("bat_")
    big = httpx.post(
        sim.gateway_url + "/v1/tasks/batch", json={"tasks": [task] * 1001}, headers=headers
    )
    assert big.status_code == 400


def test_gateway_billing_usage_and_invoices(sim, world):
    month = world.months[0]
    usage = _get(sim, f"/v1/billing/usage?month={month}").json()
    assert usage["month"] == month
    assert usage["worker_payouts_sats"] + usage["platform_fee_sats"] == usage["total_cost_sats"]
    assert sum(r["cost_sats"] for r in usage["daily_breakdown"]) == usage["total_cost_sats"]
    assert _get(sim, "/v1/billing/usage?month=bad").status_code == 400
    invoices = _get(sim, "/v1/billing/invoices").json()["invoices"]
    assert [i["month"] for i in invoices] == world.months
    assert invoices[0]["status"] == "closed"


class _Receiver:
    """A real HTTP callback on 127.0.0.1 that records deliveries; fails first tries if asked."""

    def __init__(self, fail_first=False):
        self.deliveries = []
        self.seen = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.deliveries.append((body, dict(self.headers), time.monotonic()))
                task_id = json.loads(body)["task_id"]
                first = task_id not in outer.seen
                outer.seen.add(task_id)
                self.send_response(500 if fail_first and first else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._served = ExitStack()
        self.url = self._served.enter_context(serve(Handler)) + "/hook"

    def close(self):
        self._served.close()


def _register(sim, url, secret=None):
    body = {"callback_url": url, "events": ["task.settled"]}
    if secret:
        body["secret"] = secret
    r = httpx.post(
        sim.gateway_url + "/v1/webhooks",
        json=body,
        headers={"Authorization": f"Bearer {sim.api_key}"},
    )
    assert r.status_code == 201
    return r.json()


def test_gateway_webhook_deliveries_are_signed():
    world = generate_world(WorldConfig(seed=22, tasks=200, live_fraction=0.1))
    receiver = _Receiver()
    try:
        with run_simulator(world, time_scale=0.01) as sim:
            reg = _register(sim, receiver.url)
            assert reg["webhook_id"].startswith("whk_") and reg["active"] is True
            registered_at = sim.clock.now()
            assert _wait_for(lambda: len(receiver.deliveries) >= 5)
        for body, headers, _ in receiver.deliveries:
            expected = (
                "sha256=" + hmac.new(sim.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
            )
            assert hmac.compare_digest(headers["X-ASG-Signature"], expected)
            payload = json.loads(body)
            assert set(payload) == {
                "event",
                "task_id",
                "consensus_label",
                "confidence",
                "bsv_txid",
                "settled_at",
                "timestamp",
            }
            assert payload["event"] == "task.settled"
            assert world.by_id[payload["task_id"]].settled_at >= registered_at - 1
            assert payload["timestamp"] >= payload["settled_at"]
    finally:
        receiver.close()


def test_gateway_webhook_retries_after_failure_with_own_secret():
    world = generate_world(WorldConfig(seed=23, tasks=200, live_fraction=0.1))
    receiver = _Receiver(fail_first=True)
    try:
        with run_simulator(world, time_scale=0.01) as sim:
            _register(sim, receiver.url, secret="whsec_mine")
            assert _wait_for(lambda: sim.stats()["gateway"]["webhooks"].get("delivered", 0) >= 3)
            stats = sim.stats()["gateway"]["webhooks"]
        assert stats["failed_attempts"] >= stats["delivered"]
        body, headers, _ = receiver.deliveries[-1]
        assert (
            headers["X-ASG-Signature"]
            == "sha256=" + hmac.new(b"whsec_mine", body, hashlib.sha256).hexdigest()
        )
        by_task = {}
        for body, _, _ in receiver.deliveries:
            by_task.setdefault(json.loads(body)["task_id"], []).append(body)
        assert any(len(v) >= 2 for v in by_task.values())
    finally:
        receiver.close()


def test_gateway_rate_limit_answers_429_with_retry_after():
    world = generate_world(WorldConfig(seed=24, tasks=50))
    with run_simulator(world, time_scale=1.0, gateway_rps_limit=5) as sim:
        task = world.tasks[0].task_id
        answers = [_get(sim, f"/v1/tasks/{task}/result") for _ in range(40)]
        stats = sim.stats()["gateway"]
    limited = [r for r in answers if r.status_code == 429]
    assert limited and all(int(r.headers["Retry-After"]) >= 1 for r in limited)
    assert stats["by_status"]["429"] == len(limited)
    assert stats["max_per_second_admitted"] <= 5
    assert stats["by_task"][task] == 40


def test_gateway_retry_after_can_be_an_http_date():
    world = generate_world(WorldConfig(seed=24, tasks=50))
    faults = FaultConfig(gateway_rps=1, retry_after_date_rate=1.0)
    with run_simulator(world, time_scale=1.0, faults=faults) as sim:
        answers = [_get(sim, "/v1/billing/invoices") for _ in range(5)]
    limited = [r for r in answers if r.status_code == 429]
    assert limited
    assert parsedate_to_datetime(limited[0].headers["Retry-After"]).year == 2026


def test_gateway_faults_match_server_counters():
    world = generate_world(WorldConfig(seed=25, tasks=50))
    faults = FaultConfig(
        error_5xx_rate=0.2,
        drop_rate=0.1,
        truncate_rate=0.1,
        malformed_rate=0.1,
        error_object_rate=1.0,
    )
    seen = {"5xx": 0, "dropped": 0, "bad_json": 0, "ok": 0}
    task = world.tasks[0].task_id
    with run_simulator(world, time_scale=1.0, faults=faults) as sim, httpx.Client() as client:
        for _ in range(300):
            try:
                r = client.get(
                    f"{sim.gateway_url}/v1/tasks/{task}/result",
                    headers={"Authorization": f"Bearer {sim.api_key}"},
                )
            except httpx.TransportError:
                seen["dropped"] += 1
                continue
            if r.status_code >= 500:
                seen["5xx"] += 1
                continue
            try:
                r.json()
                seen["ok"] += 1
            except ValueError:
                seen["bad_json"] += 1
        not_found = client.get(
            f"{sim.gateway_url}/v1/tasks/nope/result",
            headers={"Authorization": f"Bearer {sim.api_key}"},
        )
        stats = sim.stats()["gateway"]["faults"]
    assert seen["5xx"] == stats["5xx"] and 30 <= seen["5xx"] <= 95
    assert seen["dropped"] == stats["dropped"] > 0
    assert seen["bad_json"] == stats["truncated"] + stats["malformed"] > 0
    if not_found.status_code == 404:
        assert not_found.json()["error"]["code"] == "NOT_FOUND"


def test_gateway_stats_endpoint_counts_per_endpoint(sim):
    before = httpx.get(sim.gateway_url + "/_sim/stats").json()["gateway"]
    _get(sim, "/v1/billing/invoices")
    after = httpx.get(sim.gateway_url + "/_sim/stats").json()["gateway"]
    key = "GET /v1/billing/invoices"
    assert after["by_endpoint"][key] == before["by_endpoint"].get(key, 0) + 1
    assert sum(after["per_second"].values()) == after["requests"]
