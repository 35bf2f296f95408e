"""The simulator's world: determinism, honest invariants, chain transactions, billing."""

from __future__ import annotations

import hashlib
import json
import statistics
from collections import defaultdict

import pytest

from asg_audit.sim import AnomalyKind, WorldConfig, generate_world


def _files(world, folder):
    world.write_submissions(folder / "s.ndjson")
    world.write_submissions_csv(folder / "s.csv")
    world.write_results_export(folder / "r.ndjson.gz", gzip=True)
    world.write_webhook_log(folder / "w.ndjson")
    world.write_ground_truth(folder / "g.json")
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def clean():
    return generate_world(WorldConfig(seed=11, tasks=400))


def _sha256d_txid(raw: bytes) -> str:
    return hashlib.sha256(hashlib.sha256(raw).digest()).digest()[::-1].hex()


def test_world_same_seed_same_bytes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cfg = WorldConfig(seed=5, tasks=300, anomalies="all")
    a = _files(generate_world(cfg), tmp_path / "a")
    b = _files(generate_world(cfg), tmp_path / "b")
    assert a == b
    raws_a = [tx.raw for tx in generate_world(cfg).chain_transactions()]
    assert raws_a == [tx.raw for tx in generate_world(cfg).chain_transactions()]


def test_world_different_seed_differs():
    a = generate_world(WorldConfig(seed=1, tasks=50)).submissions
    b = generate_world(WorldConfig(seed=2, tasks=50)).submissions
    assert a != b


def test_world_submissions_mix_type_field_names(clean):
    keys = {("type" in s, "task_type" in s) for s in clean.submissions}
    assert keys == {(True, False), (False, True)}
    assert all(s["created_at"].endswith("Z") for s in clean.submissions)


def test_world_clean_counts_follow_majority_rule(clean):
    for t in clean.tasks:
        w, a, th = t.worker_count, t.agreement_count, t.threshold
        assert w >= th and th // 2 + 1 <= a <= w and a > w / 2
        assert t.confidence == a / w
        assert t.label in t.options


def test_world_confidence_a_over_t_stays_within_one():
    world = generate_world(WorldConfig(seed=3, tasks=300, confidence_formula="A/T"))
    for t in world.tasks:
        assert t.confidence == t.agreement_count / t.threshold
        assert 0.5 < t.confidence <= 1


def test_world_fixed_2_of_3_uses_three_workers():
    world = generate_world(WorldConfig(seed=3, tasks=200, fixed_2_of_3=True))
    assert {t.worker_count for t in world.tasks} == {3}
    assert {t.agreement_count for t in world.tasks} <= {2, 3}


def test_world_latency_lognormal_median_near_42s():
    world = generate_world(WorldConfig(seed=7, tasks=3000))
    latencies = [t.settled_at - t.created_at for t in world.tasks]
    assert all(x > 0 for x in latencies)
    assert 36 <= statistics.median(latencies) <= 50
    by_t = defaultdict(list)
    for t in world.tasks:
        by_t[t.threshold].append(t.settled_at - t.created_at)
    assert statistics.median(by_t[10]) > statistics.median(by_t[2])
    for t in world.tasks:
        assert t.created_at < t.in_progress_at < t.verified_at < t.settled_at


def test_world_clean_costs_match_per_worker_model(clean):
    for t in clean.tasks:
        assert t.cost_sats == 325 * t.agreement_count
        assert t.reported["cost_sats"] in (0, t.cost_sats)
    assert any(t.reported["cost_sats"] == 0 for t in clean.tasks)


def test_world_fixed_reward_with_fee():
    world = generate_world(
        WorldConfig(seed=4, tasks=100, cost_model="fixed", task_reward_sats=1000, fee_percent=8.5)
    )
    assert {t.cost_sats for t in world.tasks} == {1085}
    tx = world.txs[world.tasks[0].bsv_txid]
    assert sum(o.value_sats for o in tx.outputs if o.kind in ("payout", "fee")) >= 1085


def test_world_every_raw_tx_rehashes_to_its_txid(clean):
    for txid, tx in clean.txs.items():
        assert _sha256d_txid(tx.raw) == txid
        # version 1, locktime 0, values as 8-byte little-endian
        assert tx.raw[:4] == b"\x01\x00\x00\x00" and tx.raw[-4:] == b"\x00\x00\x00\x00"
        for o in tx.outputs:
            assert o.value_sats.to_bytes(8, "little") + bytes([len(o.script)]) + o.script in tx.raw


def test_world_fee_rate_near_100_sat_per_kb(clean):
    for tx in clean.txs.values():
        assert tx.fee_sats == (len(tx.raw) * 100 + 999) // 1000


def test_world_clean_txids_shared_only_by_batches(clean):
    by_txid = defaultdict(list)
    for t in clean.tasks:
        by_txid[t.reported["bsv_txid"].lower()].append(t)
    assert any(len(v) > 1 for v in by_txid.values())
    for txid, tasks in by_txid.items():
        times = [t.reported["settled_at"] for t in tasks]
        assert max(times) - min(times) <= 2
        cost = sum(t.cost_sats for t in tasks)
        assert clean.txs[txid].non_data_sats() >= cost
        assert len(txid) == 64


def test_world_clean_has_no_anomalies(clean):
    assert clean.ground_truth()["anomalies"] == []


def test_world_billing_adds_up_against_results(clean):
    export = clean.results_export()
    settled = [b for b in export if b["status"] == "settled"]
    for month in clean.months:
        usage = clean.billing_usage(month)
        mine = [
            b
            for b in settled
            if (b.get("settled_at") or b["settlement"]["settled_at"]).startswith(month)
        ]
        costs = [
            b.get(
                "cost_sats",
                b.get("total_cost_sats", b.get("settlement", {}).get("total_cost_sats")),
            )
            for b in mine
        ]
        assert usage["tasks_settled"] == len(mine)
        assert usage["total_cost_sats"] == sum(costs)
        assert usage["worker_payouts_sats"] + usage["platform_fee_sats"] == usage["total_cost_sats"]
        assert sum(r["cost_sats"] for r in usage["daily_breakdown"]) == usage["total_cost_sats"]
        assert sum(r["tasks"] for r in usage["daily_breakdown"]) == usage["tasks_settled"]


def test_world_billing_with_fee_splits_payouts_and_fee():
    world = generate_world(WorldConfig(seed=4, tasks=200, fee_percent=10))
    for month in world.months:
        usage = world.billing_usage(month)
        assert usage["platform_fee_sats"] > 0
        assert usage["worker_payouts_sats"] + usage["platform_fee_sats"] == usage["total_cost_sats"]


def test_world_all_anomalies_planted_once_per_entity():
    world = generate_world(WorldConfig(seed=9, tasks=500, anomalies="all"))
    truth = world.ground_truth()
    kinds = {a["kind"] for a in truth["anomalies"]}
    assert kinds == {k.value for k in AnomalyKind}
    entities = [(a["entity_type"], a["entity_id"]) for a in truth["anomalies"]]
    assert len(entities) == len(set(entities))
    flagged = [t for t in world.tasks if t.anomaly]
    task_entities = {a["entity_id"] for a in truth["anomalies"] if a["entity_type"] == "task"}
    assert task_entities <= {t.task_id for t in flagged}


def test_world_results_export_has_both_versions_of_changed_task(tmp_path):
    world = generate_world(WorldConfig(seed=9, tasks=500, anomalies="all"))
    changed = {a["entity_id"] for a in world.anomalies if a["kind"] == "changed_after_settlement"}
    lines = [
        json.loads(x)
        for x in world.write_results_export(tmp_path / "r.ndjson").read_text().splitlines()
    ]
    for task_id in changed:
        versions = [b for b in lines if b["task_id"] == task_id]
        assert len(versions) == 2 and versions[0] != versions[1]
    unknown = {a["entity_id"] for a in world.anomalies if a["kind"] == "unknown_task"}
    assert not unknown & {b["task_id"] for b in lines}


def test_world_csv_submissions_join_options(tmp_path):
    world = generate_world(WorldConfig(seed=1, tasks=20))
    text = world.write_submissions_csv(tmp_path / "s.csv").read_text().splitlines()
    assert text[0] == "task_id,task_type,consensus_threshold,options,created_at"
    assert "|" in text[1]
