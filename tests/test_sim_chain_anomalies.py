"""The simulated chain index, and every planted anomaly as seen through the served data."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from decimal import Decimal

import httpx
import pytest

from asg_audit.sim import AnomalyKind, WorldConfig, generate_world, run_simulator

HEX = set("0123456789abcdef")


@pytest.fixture(scope="module")
def world():
    return generate_world(WorldConfig(seed=31, tasks=500, anomalies="all"))


@pytest.fixture(scope="module")
def sim(world):
    with run_simulator(world, time_scale=0.01) as running:
        yield running


def _bulk(sim, path, txids):
    out = []
    for i in range(0, len(txids), 20):
        r = httpx.post(sim.chain_url + path, json={"txids": txids[i : i + 20]})
        assert r.status_code == 200
        out += r.json()
    return out


def test_chain_raw_hex_rehashes_to_txid(sim, world):
    txids = [tx.txid for tx in world.chain_transactions()[:60]]
    for row in _bulk(sim, "/txs/hex", txids):
        raw = bytes.fromhex(row["hex"])
        assert hashlib.sha256(hashlib.sha256(raw).digest()).digest()[::-1].hex() == row["txid"]
    one = httpx.get(f"{sim.chain_url}/tx/{txids[0]}/hex").text
    assert one == world.txs[txids[0]].raw.hex()


def test_chain_decoded_tx_values_in_bsv(sim, world):
    tx = world.chain_transactions()[0]
    body = httpx.get(f"{sim.chain_url}/tx/hash/{tx.txid.upper()}").json()
    assert body["txid"] == tx.txid and body["confirmations"] >= 1
    sats = [int(Decimal(str(v["value"])) * 10**8) for v in body["vout"]]
    assert sats == [o.value_sats for o in tx.outputs]
    types = {v["scriptPubKey"]["type"] for v in body["vout"]}
    assert "pubkeyhash" in types
    assert body["blocktime"] - tx.broadcast_at >= 3


def test_chain_bulk_limit_and_unknown(sim):
    assert httpx.post(sim.chain_url + "/txs", json={"txids": ["00" * 32] * 21}).status_code == 400
    assert httpx.get(f"{sim.chain_url}/tx/hash/{'ab' * 32}").status_code == 404
    assert _bulk(sim, "/txs/status", ["ab" * 32]) == [{"txid": "ab" * 32, "error": "unknown"}]
    info = httpx.get(sim.chain_url + "/chain/info").json()
    assert info["blocks"] > 900_000


def test_chain_recent_unconfirmed_are_not_stale(sim, world):
    now = sim.clock.now()
    statuses = _bulk(
        sim, "/txs/status", [tx.txid for tx in world.chain_transactions() if tx.broadcast_at <= now]
    )
    planted = {a["entity_id"] for a in world.anomalies if a["kind"] == "txid_unconfirmed"}
    unconfirmed = [s["txid"] for s in statuses if "blockhash" not in s and "error" not in s]
    honest = [t for t in unconfirmed if t not in planted]
    assert honest, "a few legitimately unconfirmed txids"
    assert all(now - world.txs[t].broadcast_at < 3600 for t in honest)
    assert planted <= set(unconfirmed)


def test_chain_rate_limit_counts():
    world = generate_world(WorldConfig(seed=32, tasks=30))
    with run_simulator(world, time_scale=1.0, chain_rps=3) as sim:
        codes = [httpx.get(sim.chain_url + "/chain/info").status_code for _ in range(15)]
        stats = sim.stats()["chain"]
    assert 429 in codes and stats["by_status"]["429"] == codes.count(429)
    assert stats["max_per_second_admitted"] <= 3


def _detect(sim, world):
    """An independent mini-auditor over the served data: (kind, entity) pairs it finds."""
    headers = {"Authorization": f"Bearer {sim.api_key}"}
    found = set()
    now = sim.clock.now()
    subs = {s["task_id"]: s for s in world.submissions}
    results = {}
    with httpx.Client(headers=headers) as client:
        for task_id in subs:
            r = client.get(f"{sim.gateway_url}/v1/tasks/{task_id}/result")
            results[task_id] = (r.status_code, r.json())
        usage = {
            m: client.get(f"{sim.gateway_url}/v1/billing/usage", params={"month": m}).json()
            for m in world.months
        }
    by_txid = defaultdict(list)
    for task_id, (code, body) in results.items():
        sub = subs[task_id]
        created = sub["created_at"]
        if code == 404:
            found.add(("unknown_task", task_id))
            continue
        if code == 202:
            if now - world.by_id[task_id].created_at > 86400:
                found.add(("stuck_task", task_id))
            continue
        if body["status"] not in ("pending", "in_progress", "verified", "settled"):
            found.add(("undocumented_status", task_id))
            continue
        if body["status"] != "settled":
            continue
        settle = body.get("settlement", {})
        txid = body.get("bsv_txid", settle.get("bsv_txid"))
        cost = body.get("cost_sats", body.get("total_cost_sats", settle.get("total_cost_sats")))
        settled_at = body.get("settled_at", settle.get("settled_at"))
        a, w, t = body["agreement_count"], body["worker_count"], sub["consensus_threshold"]
        if txid is None:
            found.add(("missing_txid", task_id))
        elif not (len(txid) == 64 and set(txid.lower()) <= HEX):
            found.add(("malformed_txid", task_id))
        else:
            by_txid[txid.lower()].append((task_id, settled_at, cost))
        if settled_at < created:
            found.add(("settled_before_created", task_id))
        if body["consensus_label"] not in sub["label_spec"]["options"]:
            found.add(("label_outside_options", task_id))
        if a > w:
            found.add(("agreement_above_workers", task_id))
            continue
        if a < t // 2 + 1:
            found.add(("agreement_below_majority", task_id))
            continue
        if abs(body["confidence"] - a / w) > 1e-9 and abs(body["confidence"] - a / t) > 1e-9:
            found.add(("confidence_neither_formula", task_id))
        if cost and cost != 325 * a:
            found.add(("cost_mismatch", task_id))
    first_seen = {}
    for row in world.results_export():
        first = first_seen.setdefault(row["task_id"], row)
        if row != first:
            found.add(("changed_after_settlement", row["task_id"]))
    txids = sorted(by_txid)
    decoded = {d["txid"]: d for d in _bulk(sim, "/txs", txids)}
    for txid, tasks in by_txid.items():
        times = sorted(world.by_id[tid].reported_at(now)["settled_at"] for tid, _, _ in tasks)
        if times[-1] - times[0] > 3600:
            found.add(("duplicate_txid", txid))
        d = decoded[txid]
        if d.get("error") == "unknown":
            found.add(("txid_unknown_on_chain", txid))
            continue
        if "blockhash" not in d and now - min(times) > 3600:
            found.add(("txid_unconfirmed", txid))
        outputs = sum(
            int(Decimal(str(v["value"])) * 10**8)
            for v in d["vout"]
            if v["scriptPubKey"]["type"] != "nulldata"
        )
        if outputs < sum(c for _, _, c in tasks):
            found.add(("chain_outputs_below_cost", txid))
    for month, u in usage.items():
        if u["total_cost_sats"] != u["worker_payouts_sats"] + u["platform_fee_sats"]:
            found.add(("billing_total_off", month))
        elif sum(r["cost_sats"] for r in u["daily_breakdown"]) != u["total_cost_sats"]:
            found.add(("billing_daily_mismatch", month))
    return found


def test_anomalies_served_data_shows_exactly_the_planted_ones(sim, world):
    planted = {(a["kind"], a["entity_id"]) for a in world.ground_truth()["anomalies"]}
    assert {k for k, _ in planted} == {k.value for k in AnomalyKind}
    assert _detect(sim, world) == planted


def test_anomalies_clean_world_shows_none():
    world = generate_world(WorldConfig(seed=33, tasks=400))
    with run_simulator(world, time_scale=0.01) as sim:
        assert _detect(sim, world) == set()
