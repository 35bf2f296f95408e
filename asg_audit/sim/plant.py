"""Plant anomalies into an honest world, each on its own entity, changing only the named field."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from asg_audit.sim.anomalies import AnomalyKind, resolve_anomaly_counts
from asg_audit.sim.billing import compute_usage
from asg_audit.sim.clock import format_ts
from asg_audit.sim.txbuild import build_tx

if TYPE_CHECKING:
    from asg_audit.sim.world import SimTask, World

__all__ = ["plant_anomalies"]

K = AnomalyKind
MIN_AGE_S = 2 * 3600  # planted tasks settled at least 2 h before "now" (older than an hour)


def _record(world: World, kind: K, entity_type: str, entity_id: str, **detail: Any) -> None:
    world.anomalies.append(
        {"kind": str(kind), "entity_type": entity_type, "entity_id": entity_id, "detail": detail}
    )


def _take(pool: list[SimTask], pred: Any = None) -> SimTask | None:
    for i, t in enumerate(pool):
        if pred is None or pred(t):
            return pool.pop(i)
    return None


def _neither_formula(task: SimTask) -> float:
    a, w, t = task.agreement_count, task.worker_count, task.threshold
    for delta in (0.0321, -0.0321, 0.0517, -0.0517, 0.0713):
        value = round(task.confidence + delta, 4)
        if 0.5 < value <= 1 and abs(value - a / w) > 1e-6 and abs(value - a / t) > 1e-6:
            return value
    return 0.5013


def plant_anomalies(
    world: World, rng: random.Random, *, workers: list[bytes], payer_pkh: bytes
) -> None:
    """Plant the configured anomalies into `world`, recording each in `world.anomalies`."""
    counts = resolve_anomaly_counts(world.config.anomalies, tasks=len(world.tasks))
    if not counts:
        return
    now = world.now_at
    pool = [
        t
        for t in world.tasks
        if not t.live
        and t.batch_size == 1
        and not t.cost_unknown
        and t.settled_at < now - MIN_AGE_S
        and t.reported["bsv_txid"] == t.bsv_txid
    ]
    rng.shuffle(pool)
    for kind, count in counts.items():
        for _ in range(count):
            if kind in (K.BILLING_TOTAL_OFF, K.BILLING_DAILY_MISMATCH):
                _plant_month(world, rng, kind)
                continue
            task = _take(
                pool, (lambda t: t.created_at < now - 86400) if kind is K.STUCK_TASK else None
            )
            if task is None:
                break
            rep = task.reported
            if kind is K.DUPLICATE_TXID:
                other = _take(pool, lambda t, a=task: abs(t.settled_at - a.settled_at) > 3600)
                if other is None:
                    break
                assert other.bsv_txid is not None
                world.txs.pop(other.bsv_txid, None)
                other.reported["bsv_txid"] = task.bsv_txid
                other.bsv_txid = task.bsv_txid
                other.anomaly = task.anomaly = str(kind)
                _record(
                    world,
                    kind,
                    "txid",
                    str(task.bsv_txid),
                    tasks=[task.task_id, other.task_id],
                    reused_by=other.task_id,
                    settled_gap_s=abs(other.settled_at - task.settled_at),
                )
                continue
            task.anomaly = str(kind)
            assert task.bsv_txid is not None
            txid = task.bsv_txid
            if kind is K.COST_MISMATCH:
                delta = rng.choice(
                    [325, 137, task.cost_sats] + ([-325] if task.cost_sats > 325 else [])
                )
                rep["cost_sats"] = task.cost_sats + delta
                _record(
                    world,
                    kind,
                    "task",
                    task.task_id,
                    expected_cost_sats=task.cost_sats,
                    reported_cost_sats=rep["cost_sats"],
                )
            elif kind is K.MISSING_TXID:
                rep["bsv_txid"] = None
                _record(world, kind, "task", task.task_id, true_txid=txid)
            elif kind is K.MALFORMED_TXID:
                rep["bsv_txid"] = rng.choice(["abc123...", "0x" + txid, txid[:63]])
                _record(world, kind, "task", task.task_id, reported=rep["bsv_txid"], true_txid=txid)
            elif kind is K.SETTLED_BEFORE_CREATED:
                rep["settled_at"] = task.created_at - rng.randint(5, 3600)
                _record(
                    world,
                    kind,
                    "task",
                    task.task_id,
                    created_at=format_ts(task.created_at),
                    reported_settled_at=format_ts(rep["settled_at"]),
                )
            elif kind is K.AGREEMENT_ABOVE_WORKERS:
                rep["agreement_count"] = task.worker_count + rng.randint(1, 2)
                _record(
                    world,
                    kind,
                    "task",
                    task.task_id,
                    worker_count=task.worker_count,
                    reported_agreement_count=rep["agreement_count"],
                )
            elif kind is K.AGREEMENT_BELOW_MAJORITY:
                need = 2 if world.config.fixed_2_of_3 else task.threshold // 2 + 1
                rep["agreement_count"] = need - 1
                _record(
                    world,
                    kind,
                    "task",
                    task.task_id,
                    threshold=task.threshold,
                    majority=need,
                    reported_agreement_count=need - 1,
                )
            elif kind is K.CONFIDENCE_NEITHER_FORMULA:
                rep["confidence"] = _neither_formula(task)
                _record(
                    world,
                    kind,
                    "task",
                    task.task_id,
                    true_confidence=task.confidence,
                    reported_confidence=rep["confidence"],
                )
            elif kind is K.LABEL_OUTSIDE_OPTIONS:
                label = task.label.capitalize()
                rep["consensus_label"] = label if label not in task.options else "unlabeled"
                _record(
                    world,
                    kind,
                    "task",
                    task.task_id,
                    options=task.options,
                    reported_label=rep["consensus_label"],
                )
            elif kind is K.UNDOCUMENTED_STATUS:
                task.final_status = rng.choice(["failed", "timed_out"])
                world.txs.pop(txid, None)
                task.bsv_txid = None
                _record(world, kind, "task", task.task_id, status=task.final_status)
            elif kind in (K.STUCK_TASK, K.UNKNOWN_TASK):
                task.final_status = "stuck" if kind is K.STUCK_TASK else "unknown"
                world.txs.pop(txid, None)
                task.bsv_txid = None
                _record(world, kind, "task", task.task_id, created_at=format_ts(task.created_at))
            elif kind is K.CHANGED_AFTER_SETTLEMENT:
                task.revision_at = task.settled_at + rng.randint(
                    600, max(601, min(86400, now - 60 - task.settled_at))
                )
                if rng.random() < 0.5:
                    others = [o for o in task.options if o != task.label]
                    task.revision = {"consensus_label": rng.choice(others)}
                else:
                    tx = _rebuild(rng, world, task, workers, payer_pkh, below_cost=False)
                    task.revision = {"bsv_txid": tx.txid}
                field = next(iter(task.revision))
                _record(
                    world,
                    kind,
                    "task",
                    task.task_id,
                    field=field,
                    before=rep[field],
                    after=task.revision[field],
                    changed_at=format_ts(task.revision_at),
                )
            elif kind is K.TXID_UNKNOWN_ON_CHAIN:
                world.txs[txid].known = False
                _record(world, kind, "txid", txid, task_id=task.task_id)
            elif kind is K.TXID_UNCONFIRMED:
                world.txs[txid].mined = False
                _record(
                    world,
                    kind,
                    "txid",
                    txid,
                    task_id=task.task_id,
                    broadcast_at=format_ts(world.txs[txid].broadcast_at),
                )
            elif kind is K.CHAIN_OUTPUTS_BELOW_COST:
                world.txs.pop(txid)
                tx = _rebuild(rng, world, task, workers, payer_pkh, below_cost=True)
                task.bsv_txid = rep["bsv_txid"] = tx.txid
                _record(
                    world,
                    kind,
                    "txid",
                    tx.txid,
                    task_id=task.task_id,
                    non_data_sats=tx.non_data_sats(),
                    reported_cost_sats=rep["cost_sats"],
                )


def _rebuild(
    rng: random.Random,
    world: World,
    task: SimTask,
    workers: list[bytes],
    payer_pkh: bytes,
    *,
    below_cost: bool,
) -> Any:
    """Return (and register) a new transaction for `task`, mined near its settled_at."""
    if below_cost:
        payouts = [(rng.choice(workers), max(1, task.cost_sats // 2), "payout")]
    else:
        n = task.agreement_count
        share, rest = divmod(task.cost_sats, n)
        payouts = [
            (pkh, share + (rest if i == 0 else 0), "payout")
            for i, pkh in enumerate(rng.sample(workers, n))
        ]
    tx = build_tx(
        rng, payouts, broadcast_at=task.settled_at, change_pkh=payer_pkh, with_change=not below_cost
    )
    tx.meta["task_ids"] = [task.task_id]
    world.txs[tx.txid] = tx
    return tx


def _plant_month(world: World, rng: random.Random, kind: K) -> None:
    taken = set(world.billing_tamper)
    for month in world.months:
        if month in taken or not compute_usage(world, month, as_of=world.end_at)["tasks_settled"]:
            continue
        tamper: dict[str, Any] = {"delta_sats": rng.choice([1000, 650, 325])}
        if kind is K.BILLING_DAILY_MISMATCH:
            tamper["row"] = rng.randrange(1 << 16)
        world.billing_tamper[month] = {"kind": str(kind), **tamper}
        _record(world, kind, "month", month, **tamper)
        return
