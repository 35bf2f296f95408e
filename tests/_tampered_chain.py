"""A simulated chain index that serves other bytes under one settled txid; how a run ended.

For the tests of a refused chain index answer (`_chain_sim.scenario`'s world): the answer for
the tampered txid fails its checks (its bytes do not hash to it), so `verify-chain` refuses it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _chain_sim import Scenario
from _hardening_procs import query

from asg_audit.store import open_store


@contextmanager
def tampered_txid(world: Scenario) -> Iterator[str]:
    """The index serves other bytes (one output value changed) under one settled txid, the
    smallest mined one, while inside; yields that txid. Its stored answer is deleted first, so
    that it is asked again whatever an earlier test stored."""
    settled = {
        t.lower()
        for (t,) in query(
            world.db, "SELECT bsv_txid FROM results WHERE status = 'settled' AND bsv_txid NOT NULL"
        )
    }
    txid = sorted(t for t, tx in world.sim.world.txs.items() if t in settled and tx.mined)[0]
    with open_store(world.db) as store:
        store.con.execute("DELETE FROM chain_txs WHERE txid = ?", [txid])
    tx = world.sim.world.txs[txid]
    original = tx.raw
    tx.raw = original[:-30] + bytes([original[-30] ^ 0x01]) + original[-29:]
    world.sim.state._decoded.pop(txid, None)
    try:
        yield txid
    finally:
        tx.raw = original
        world.sim.state._decoded.pop(txid, None)


def run_status(db: Path, run_id: str) -> tuple[str, dict[str, Any]]:
    """The status and stats of the run `run_id`."""
    [(status, stats)] = query(db, "SELECT status, stats FROM runs WHERE run_id = ?", [run_id])
    return status, json.loads(stats)
