"""The running simulator's shared state: the world, the clock, live submissions, webhooks."""

from __future__ import annotations

import heapq
import random
import secrets
from dataclasses import dataclass
from typing import Any

from asg_audit.sim.clock import SimClock
from asg_audit.sim.faults import FaultConfig, RateLimiter, ServerStats
from asg_audit.sim.generate import build_settlement_tx, make_task, sample_latency
from asg_audit.sim.txbuild import SimTx, decode_tx
from asg_audit.sim.world import SimTask, World

__all__ = ["SimState", "Webhook"]


@dataclass
class Webhook:
    """A registered callback."""

    webhook_id: str
    callback_url: str
    secret: str
    events: list[str]
    registered_at: float  # simulated epoch seconds


class SimState:
    """Everything both apps share. Both run on one event loop, so no locking is needed."""

    def __init__(self, world: World, clock: SimClock, faults: FaultConfig) -> None:
        self.world = world
        self.clock = clock
        self.faults = faults
        self.api_key = "sk_sandbox_" + secrets.token_hex(16)
        self.webhook_secret = "whsec_" + secrets.token_hex(16)
        self.gateway_stats = ServerStats()
        self.chain_stats = ServerStats()
        self.gateway_limiter = RateLimiter(faults.gateway_rps)
        self.chain_limiter = RateLimiter(faults.chain_rps)
        # fault dice are not part of the world: vary them freely, but reproducibly per seed
        self.rng = random.Random(f"asg-sim-faults:{world.config.seed}")
        self.live_tasks: dict[str, SimTask] = {}
        self.live_txs: dict[str, SimTx] = {}
        self.idempotency: dict[str, str] = {}
        self.webhooks: list[Webhook] = []
        self._live_counter = 0
        self._decoded: dict[str, dict[str, Any]] = {}
        # settle events still to come, for webhook delivery
        self.settle_events: list[tuple[int, str]] = [
            (t.settled_at, t.task_id)
            for t in world.tasks
            if t.final_status == "settled" and t.settled_at > clock.now()
        ]
        heapq.heapify(self.settle_events)

    def task(self, task_id: str) -> SimTask | None:
        """Return a world or live-submitted task by id."""
        return self.world.by_id.get(task_id) or self.live_tasks.get(task_id)

    def tx(self, txid: str, now: float) -> SimTx | None:
        """Return the transaction the index knows at `now`, or None (404)."""
        tx = self.world.txs.get(txid) or self.live_txs.get(txid)
        if tx is None or not tx.known or tx.broadcast_at > now:
            return None
        return tx

    def decoded(self, tx: SimTx, now: float) -> dict[str, Any]:
        """Return the WoC decoded JSON of `tx` at `now` (block fields once mined)."""
        base = self._decoded.get(tx.txid)
        if base is None:
            base = self._decoded[tx.txid] = decode_tx(tx.raw)
        out = dict(base)
        out.update(self.block_fields(tx, now))
        return out

    def block_fields(self, tx: SimTx, now: float) -> dict[str, Any]:
        """Return blockhash/blockheight/blocktime/confirmations, or {} while unconfirmed."""
        if not tx.mined:
            return {}
        blocks = self.world.blocks
        k = blocks.block_for(tx.broadcast_at)
        if blocks.time_of(k) > now:
            return {}
        fields: dict[str, Any] = {
            "blockhash": blocks.hash_of(k),
            "blockheight": blocks.height_of(k),
            "blocktime": blocks.time_of(k),
            "confirmations": blocks.tip_at(now) - k + 1,
            "time": blocks.time_of(k),
        }
        if tx.omit_blockheight:
            del fields["blockheight"]
        return fields

    def submit(self, spec: dict[str, Any], now: float) -> SimTask:
        """Create an honest live task from a validated submission; it settles in sim time."""
        self._live_counter += 1
        cfg = self.world.config
        rng = random.Random(f"asg-sim-live:{cfg.seed}:{self._live_counter}")
        created = int(now)
        threshold = int(spec["consensus_threshold"])
        settled = created + sample_latency(rng, threshold)
        task_id = f"tsk_{rng.getrandbits(64):016x}"
        while self.task(task_id) is not None:
            task_id = f"tsk_{rng.getrandbits(64):016x}"
        task, payouts = make_task(
            rng,
            cfg,
            task_id=task_id,
            created_at=created,
            settled_at=settled,
            task_type=spec["task_type"],
            threshold=threshold,
            options=list(spec["options"]),
            live=True,
        )
        if spec.get("data_url"):
            task.data_url = str(spec["data_url"])
        wallets = self.world.wallets
        tx = build_settlement_tx(
            rng, cfg, [(task, payouts)], wallets["workers"], wallets["platform"], wallets["payer"]
        )
        self.live_txs[tx.txid] = tx
        task.bsv_txid = tx.txid
        task.reported = {
            "consensus_label": task.label,
            "confidence": task.confidence,
            "worker_count": task.worker_count,
            "agreement_count": task.agreement_count,
            "bsv_txid": tx.txid,
            "cost_sats": 0 if task.cost_unknown else task.cost_sats,
            "settled_at": task.settled_at,
        }
        self.live_tasks[task_id] = task
        heapq.heappush(self.settle_events, (task.settled_at, task_id))
        return task
