"""Seeded, pure generation of a world: tasks, lifecycles, counts, costs and transactions."""

from __future__ import annotations

import math
import random
from decimal import ROUND_HALF_UP, Decimal

from asg_audit.sim.chainmodel import BlockSchedule
from asg_audit.sim.plant import plant_anomalies
from asg_audit.sim.txbuild import SimTx, build_tx
from asg_audit.sim.world import SimTask, World, WorldConfig

__all__ = ["TASK_TYPES", "THRESHOLD_WEIGHTS", "generate_world", "make_task", "sample_latency"]

TASK_TYPES: dict[str, list[str]] = {
    "image_classification": ["cat", "dog", "bird", "other"],
    "sentiment": ["positive", "negative", "neutral"],
    "content_moderation": ["safe", "unsafe"],
    "intent": ["buy", "sell", "support", "other"],
    "spam_detection": ["spam", "ham"],
}
# thresholds 2..10, 3 the most common
THRESHOLD_WEIGHTS = {2: 8, 3: 50, 4: 6, 5: 15, 6: 3, 7: 8, 8: 2, 9: 2, 10: 6}
MEDIAN_LATENCY_S = 42.0
MIN_LATENCY_S = 8
MAX_LATENCY_S = 1800
RECENT_UNCONFIRMED = 3  # tasks settled in the last 80 s before "now": honestly unconfirmed


def sample_latency(rng: random.Random, threshold: int, *, cap: int = MAX_LATENCY_S) -> int:
    """Return a settlement latency in seconds: lognormal, slower and wider for higher T."""
    median = MEDIAN_LATENCY_S * (threshold / 3) ** 0.3
    sigma = 0.3 + 0.025 * threshold
    value = math.exp(rng.gauss(math.log(median), sigma))
    return int(min(cap, max(MIN_LATENCY_S, round(value))))


def _counts(rng: random.Random, cfg: WorldConfig, t: int) -> tuple[int, int, float]:
    """Return (worker_count, agreement_count, confidence) obeying the majority rule."""
    if cfg.fixed_2_of_3:
        a = rng.choice((2, 3, 3))
        return 3, a, a / 3
    for _ in range(10):
        w = t + (0 if rng.random() < 0.7 else rng.randint(1, 2))
        lo = max(t // 2 + 1, w // 2 + 1)
        hi = min(w, t) if cfg.confidence_formula == "A/T" else w
        if lo <= hi:
            break
    else:
        w, lo, hi = t, t // 2 + 1, t
    # agreement skews high: most tasks are easy
    a = hi if rng.random() < 0.55 else rng.randint(lo, hi)
    conf = a / t if cfg.confidence_formula == "A/T" else a / w
    return w, a, conf


def _cost(cfg: WorldConfig, agreeing: int) -> tuple[int, int, list[int]]:
    """Return (cost_sats, fee_sats, worker payouts) under the configured model."""
    if cfg.cost_model == "per_worker":
        payouts = [cfg.payout_per_worker_sats] * agreeing
    else:
        share, rest = divmod(cfg.task_reward_sats, agreeing)
        payouts = [share + (rest if i == 0 else 0) for i in range(agreeing)]
    base = sum(payouts)
    fee = int(
        (Decimal(base) * Decimal(str(cfg.fee_percent)) / 100).quantize(
            Decimal(1), rounding=ROUND_HALF_UP
        )
    )
    return base + fee, fee, payouts


def make_task(
    rng: random.Random,
    cfg: WorldConfig,
    *,
    task_id: str,
    created_at: int,
    settled_at: int,
    task_type: str | None = None,
    threshold: int | None = None,
    options: list[str] | None = None,
    live: bool = False,
) -> tuple[SimTask, list[int]]:
    """Return an honest task with its lifecycle ending at `settled_at`, and its payouts."""
    if task_type is None:
        task_type = rng.choice(list(TASK_TYPES))
    if options is None:
        options = list(TASK_TYPES.get(task_type, ["yes", "no"]))
    if threshold is None:
        threshold = rng.choices(list(THRESHOLD_WEIGHTS), weights=list(THRESHOLD_WEIGHTS.values()))[
            0
        ]
    latency = settled_at - created_at
    in_progress_at = created_at + max(1, int(latency * rng.uniform(0.05, 0.2)))
    pay = max(1, min(rng.randint(1, 6), (settled_at - in_progress_at) // 2))
    w, a, conf = _counts(rng, cfg, threshold)
    cost, fee, payouts = _cost(cfg, a)
    task = SimTask(
        task_id=task_id,
        task_type=task_type,
        type_field="type" if rng.random() < 0.4 else "task_type",
        threshold=threshold,
        options=options,
        data_url=f"https://data.example.com/items/{task_id[4:]}.json",
        created_at=created_at,
        in_progress_at=in_progress_at,
        verified_at=settled_at - pay,
        settled_at=settled_at,
        shape="nested" if rng.random() < cfg.nested_fraction else "flat",
        cost_field="cost_sats" if rng.random() < 0.5 else "total_cost_sats",
        label=rng.choice(options) if rng.random() < 0.4 else options[0],
        worker_count=w,
        agreement_count=a,
        confidence=conf,
        cost_sats=cost,
        fee_sats=fee,
        bsv_txid=None,
        live=live,
    )
    task.cost_unknown = rng.random() < cfg.unknown_cost_rate
    return task, payouts


def _new_id(rng: random.Random, prefix: str, used: set[str]) -> str:
    while True:
        value = f"{prefix}{rng.getrandbits(64):016x}"
        if value not in used:
            used.add(value)
            return value


def build_settlement_tx(
    rng: random.Random,
    cfg: WorldConfig,
    group: list[tuple[SimTask, list[int]]],
    workers: list[bytes],
    platform_pkh: bytes,
    payer_pkh: bytes,
) -> SimTx:
    """Return the transaction paying every agreeing worker (and the fee) of a task group."""
    outputs: list[tuple[bytes, int, str]] = []
    for task, payouts in group:
        for pkh in rng.sample(workers, len(payouts)):
            outputs.append((pkh, payouts.pop(0), "payout"))
        if task.fee_sats:
            outputs.append((platform_pkh, task.fee_sats, "fee"))
    op_return = None
    if rng.random() < cfg.op_return_rate:
        op_return = b"asg:settle:" + group[0][0].task_id.encode()
    broadcast = min(t.settled_at for t, _ in group)
    tx = build_tx(rng, outputs, broadcast_at=broadcast, change_pkh=payer_pkh, op_return=op_return)
    tx.meta["task_ids"] = [t.task_id for t, _ in group]
    return tx


def generate_world(config: WorldConfig) -> World:
    """Return the world `config` describes; pure: the same config gives the same world."""
    cfg = config
    rng = random.Random(f"asg-sim:{cfg.seed}")
    start = int(cfg.start.timestamp())
    end = start + int(cfg.span.total_seconds())
    now = end - int(cfg.live_window.total_seconds())
    blocks = BlockSchedule(anchor_at=now - 90, seed=cfg.seed)
    workers = [rng.getrandbits(160).to_bytes(20, "big") for _ in range(300)]
    platform_pkh = rng.getrandbits(160).to_bytes(20, "big")
    payer_pkh = rng.getrandbits(160).to_bytes(20, "big")
    used: set[str] = set()
    customer_id = _new_id(rng, "cus_", used)

    n_live = min(cfg.tasks - 1, round(cfg.tasks * cfg.live_fraction)) if cfg.tasks > 1 else 0
    n_regular = cfg.tasks - n_live
    # a group is one settlement transaction; P(batch) makes `batch_rate` of tasks batched
    p_batch = cfg.batch_rate / (cfg.batch_rate + 3 * (1 - cfg.batch_rate)) if cfg.batch_rate else 0
    groups: list[list[tuple[SimTask, list[int]]]] = []
    made = 0
    while made < n_regular:
        size = 1
        if rng.random() < p_batch:
            size = min(rng.randint(2, 4), n_regular - made)
        if len(groups) < RECENT_UNCONFIRMED:
            anchor = rng.randint(now - 80, now - 10)
        else:
            anchor = rng.randint(start + MAX_LATENCY_S + 60, now - 300)
        group = []
        for _ in range(size):
            threshold = rng.choices(
                list(THRESHOLD_WEIGHTS), weights=list(THRESHOLD_WEIGHTS.values())
            )[0]
            settled = anchor + rng.choice((0, 0, 1))  # a batch settles within 2 s
            created = settled - sample_latency(rng, threshold)
            task, payouts = make_task(
                rng,
                cfg,
                task_id=_new_id(rng, "tsk_", used),
                created_at=created,
                settled_at=settled,
                threshold=threshold,
            )
            task.batch_size = size
            group.append((task, payouts))
        groups.append(group)
        made += size
    live_cap = int(cfg.live_window.total_seconds()) - 60
    for _ in range(n_live):
        threshold = rng.choices(list(THRESHOLD_WEIGHTS), weights=list(THRESHOLD_WEIGHTS.values()))[
            0
        ]
        # created before "now", settling after it: these settle while the simulator runs
        latency = sample_latency(rng, threshold, cap=max(MIN_LATENCY_S, live_cap))
        settled = now + rng.randint(1, latency - 1)
        created = settled - latency
        task, payouts = make_task(
            rng,
            cfg,
            task_id=_new_id(rng, "tsk_", used),
            created_at=created,
            settled_at=settled,
            threshold=threshold,
            live=True,
        )
        groups.append([(task, payouts)])

    txs: dict[str, SimTx] = {}
    for group in groups:
        tx = build_settlement_tx(rng, cfg, group, workers, platform_pkh, payer_pkh)
        txs[tx.txid] = tx
        for task, _ in group:
            task.bsv_txid = tx.txid
            upper = rng.random() < cfg.uppercase_txid_rate
            task.reported = {
                "consensus_label": task.label,
                "confidence": task.confidence,
                "worker_count": task.worker_count,
                "agreement_count": task.agreement_count,
                "bsv_txid": tx.txid.upper() if upper else tx.txid,
                "cost_sats": 0 if task.cost_unknown else task.cost_sats,
                "settled_at": task.settled_at,
            }
    # an "older answer" without blockheight, as WoC sometimes gives
    for tx in txs.values():
        tx.omit_blockheight = rng.random() < 0.05

    tasks = sorted((t for g in groups for t, _ in g), key=lambda t: (t.created_at, t.task_id))
    world = World(
        config=cfg,
        tasks=tasks,
        txs=txs,
        blocks=blocks,
        now_at=now,
        end_at=end,
        anomalies=[],
        billing_tamper={},
        customer_id=customer_id,
        wallets={"workers": workers, "platform": platform_pkh, "payer": payer_pkh},
    )
    plant_anomalies(world, rng, workers=workers, payer_pkh=payer_pkh)
    return world
