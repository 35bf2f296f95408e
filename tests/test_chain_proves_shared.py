"""`chain.txid_unknown` and `chain.unconfirmed` prove `exact` only about one task's own txid.

Tester D: both checks set "Proves: exact" whatever the number of tasks naming the txid, while
the methodology defines exact as "about one task's own transaction" and aggregate as "a txid
shared by several tasks". Now, as `chain.block_time` and the outputs checks, a txid several
tasks name proves `aggregate only`. A store ingested from an export (two tasks sharing each of
two txids, one task alone on each of two others) is verified against a chain index on
127.0.0.1 that knows none of the unknown ones and has not mined the unconfirmed ones.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _chain_index import fee_index, settled_store

from asg_audit.audit import analyze
from asg_audit.chain import verify_chain
from asg_audit.config import AuditConfig

# well after the settlements (2026-09-21) and the index's newest block
AS_OF = datetime(2026, 12, 1, tzinfo=UTC)


def test_chain_proves_aggregate_for_a_shared_txid_exact_for_a_single_one(tmp_path: Path) -> None:
    with fee_index() as (state, url):
        unknown_shared = state.tx([650], serve=False)
        unknown_single = state.tx([650], serve=False)
        unconfirmed_shared, unconfirmed_single = state.tx([1300]), state.tx([650])
        mined = state.decoded

        def decoded(txid: str) -> dict[str, Any]:
            body = mined(txid)
            if txid in (unconfirmed_shared, unconfirmed_single):  # in the mempool
                for key in ("blockhash", "blockheight", "blocktime", "time"):
                    body.pop(key)
                body["confirmations"] = 0
            return body

        state.decoded = decoded  # type: ignore[method-assign]
        db = settled_store(
            tmp_path,
            {
                "t_u1": unknown_shared,
                "t_u2": unknown_shared,
                "t_u3": unknown_single,
                "t_c1": unconfirmed_shared,
                "t_c2": unconfirmed_shared,
                "t_c3": unconfirmed_single,
            },
        )
        summary = verify_chain(db, AuditConfig(db_path=db, chain_url=url, chain={"rps": 1000}))
    assert summary.unknown == 2 and summary.unconfirmed == 2, summary

    findings = analyze(db, as_of=AS_OF).findings
    got = {
        (r["check_id"], r["entity_id"]): (r["proves"], r["message"])
        for r in findings.filter(
            findings["check_id"].is_in(["chain.txid_unknown", "chain.unconfirmed"])
        ).to_dicts()
    }
    assert {k: proves for k, (proves, _) in got.items()} == {
        ("chain.txid_unknown", unknown_shared): "aggregate only",
        ("chain.txid_unknown", unknown_single): "exact",
        ("chain.unconfirmed", unconfirmed_shared): "aggregate only",
        ("chain.unconfirmed", unconfirmed_single): "exact",
    }
    assert got[("chain.txid_unknown", unknown_shared)][1].startswith(
        "txid of 2 task(s) (first t_u1) unknown"
    )
    assert got[("chain.unconfirmed", unconfirmed_shared)][1].startswith(
        "txid of 2 task(s) (first t_c1) unconfirmed"
    )
