"""Raising `[chain] confirmations` re-judges transactions stored as confirmed (tester F, fix G3).

`confirmations` is the depth at which a transaction counts as confirmed (final). A run at
depth 1 stored transactions as confirmed; a later run at a higher depth skipped them all
("confirmed earlier, not fetched again") though their stored confirmations were below it, and
no `chain.unconfirmed` finding came. Now a stored confirmed transaction is final only at the
depth configured now: one stored below it is fetched again and judged by the index's answer.

The real simulator's chain index.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from _chain_sim import scenario

from asg_audit.chain import reconciliation_findings, verify_chain
from asg_audit.chain_verify import pending_txid_count
from asg_audit.store import open_store

# deeper than any simulated chain: every transaction is below it
DEEP = 10_000_000


def _confirmed(db: Path) -> set[str]:
    with open_store(db, read_only=True) as store:
        rows = store.con.execute("SELECT txid FROM chain_txs WHERE status = 'confirmed'")
        return {t for (t,) in rows.fetchall()}


def test_raised_depth_rejudges_transactions_confirmed_earlier(tmp_path: Path) -> None:
    with scenario(tmp_path, tasks=300) as sc:
        first = verify_chain(sc.db, sc.config)
        shallow = _confirmed(sc.db)
        assert first.confirmed == len(shallow) > 0
        chain = {**sc.config.chain, "confirmations": DEEP, "unconfirmed_after_seconds": 0}
        deep = sc.config.replace(chain=chain)
        again = verify_chain(sc.db, deep)
        assert again.cached_confirmed == 0 and again.rechecked_depth == len(shallow)
        assert again.checked + again.unknown_backed_off == again.txids_total
        assert again.confirmed == 0
        assert f"{len(shallow)} confirmed earlier below {DEEP} confirmations" in again.lines()[0]
        assert _confirmed(sc.db) == set()
        findings, _ = reconciliation_findings(sc.db, deep)
        flagged = set(findings.filter(pl.col("check_id") == "chain.unconfirmed")["entity_id"])
        assert shallow <= flagged
        assert pending_txid_count(sc.db, confirmations=DEEP) == (
            again.txids_total - again.unknown_backed_off
        )

        # back to depth 1: confirmed again, and then final (not fetched a third time)
        verify_chain(sc.db, sc.config)
        assert _confirmed(sc.db) == shallow
        last = verify_chain(sc.db, sc.config)
        assert last.cached_confirmed == len(shallow) and last.rechecked_depth == 0
