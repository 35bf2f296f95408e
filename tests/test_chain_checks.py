"""The chain checks on hand-made frames: each check's positive and negative case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
from _analyses_frames import CHAIN_SCHEMA, T0, result, results_frame, txid

import asg_audit.chain  # noqa: F401  (registers the chain checks)
from asg_audit.checks import CheckContext, run_checks
from asg_audit.config import AuditConfig
from asg_audit.reconcile import chain_coverage

SETTLED = T0 + timedelta(seconds=47)
AS_OF = SETTLED + timedelta(days=1)


def chain_row(tx: str, **fields: Any) -> dict[str, Any]:
    """A confirmed transaction paying 650 sats to workers and 50,000 change, mined 5 min after."""
    row: dict[str, Any] = {
        "txid": tx,
        "status": "confirmed",
        "block_time": SETTLED + timedelta(minutes=5),
        "confirmations": 10,
        "size_bytes": 300,
        "output_sats": [325, 325, 50_000],
        "output_kinds": ["payout", "payout", "payout"],
        "non_data_sats": 50_650,
        "data_sats": 0,
        "zero_payouts": 0,
        "fee_sats": None,
    }
    row.update(fields)
    return row


def run(
    results: list[dict[str, Any]],
    chain: list[dict[str, Any]],
    *,
    check: str,
    config: AuditConfig | None = None,
) -> pl.DataFrame:
    tables = {
        "results": results_frame(results),
        "chain_txs": pl.DataFrame(chain, schema=CHAIN_SCHEMA),
    }
    ctx = CheckContext(tables, config=config or AuditConfig(), as_of=AS_OF)
    return run_checks(ctx, only=[check])


def test_chain_checks_healthy_txid_has_no_findings() -> None:
    tx = txid("a")
    findings = pl.concat(
        [
            run([result("a", bsv_txid=tx)], [chain_row(tx)], check=c)
            for c in (
                "chain.txid_unknown",
                "chain.unconfirmed",
                "chain.block_time",
                "chain.outputs_below_cost",
                "chain.op_return_value",
                "chain.zero_payout",
            )
        ]
    )
    assert findings.height == 0


def test_chain_txid_unknown_flagged_when_old() -> None:
    tx = txid("a")
    rows = [chain_row(txid("b")), {"txid": tx, "status": "unknown"}]
    old = SETTLED - timedelta(hours=1)
    found = run(
        [result("a", bsv_txid=tx, settled_at=old), result("b", bsv_txid=txid("b"))],
        rows,
        check="chain.txid_unknown",
    )
    assert found["entity_id"].to_list() == [tx]
    assert found["proves"].to_list() == ["exact"]


def test_chain_txid_unknown_not_flagged_after_newest_block() -> None:
    # Settled after the newest block the index showed us: too young to call missing.
    tx = txid("a")
    late = SETTLED + timedelta(minutes=20)
    rows = [chain_row(txid("b")), {"txid": tx, "status": "unknown"}]
    found = run(
        [result("a", bsv_txid=tx, settled_at=late), result("b", bsv_txid=txid("b"))],
        rows,
        check="chain.txid_unknown",
    )
    assert found.height == 0


def test_chain_unconfirmed_flagged_after_configured_age() -> None:
    tx = txid("a")
    old = SETTLED - timedelta(hours=2)
    rows = [chain_row(txid("b")), {"txid": tx, "status": "unconfirmed", "confirmations": 0}]
    results = [result("a", bsv_txid=tx, settled_at=old), result("b", bsv_txid=txid("b"))]
    assert run(results, rows, check="chain.unconfirmed")["entity_id"].to_list() == [tx]
    lenient = AuditConfig(chain={"unconfirmed_after_seconds": 3 * 3600})
    assert run(results, rows, check="chain.unconfirmed", config=lenient).height == 0


def test_chain_block_time_far_flagged() -> None:
    tx = txid("a")
    found = run(
        [result("a", bsv_txid=tx)],
        [chain_row(tx, block_time=SETTLED + timedelta(hours=5))],
        check="chain.block_time",
    )
    assert found["entity_id"].to_list() == [tx]
    assert found["difference"].to_list() == [5 * 3600 - 7200]


def test_chain_block_time_uses_closest_task_of_shared_txid() -> None:
    tx = txid("a")
    results = [
        result("a", bsv_txid=tx),
        result("b", bsv_txid=tx, settled_at=SETTLED + timedelta(days=3)),
    ]
    assert run(results, [chain_row(tx)], check="chain.block_time").height == 0


def test_chain_outputs_below_cost_single_task_exact() -> None:
    tx = txid("a")
    found = run(
        [result("a", bsv_txid=tx, cost_sats=650)],
        [chain_row(tx, output_sats=[325], non_data_sats=325)],
        check="chain.outputs_below_cost",
    )
    assert found["difference"].to_list() == [325]
    assert found["proves"].to_list() == ["exact"]


def test_chain_outputs_below_cost_ignores_unknown_cost() -> None:
    tx = txid("a")
    found = run(
        [result("a", bsv_txid=tx, cost_sats=None, cost_unknown=True)],
        [chain_row(tx, output_sats=[325], non_data_sats=325)],
        check="chain.outputs_below_cost",
    )
    assert found.height == 0


def test_chain_outputs_exact_with_change_scripts() -> None:
    tx = txid("a")
    row = chain_row(tx, output_kinds=["payout", "payout", "change"])
    config = AuditConfig(chain={"change_scripts": ["76a914" + "00" * 20 + "88ac"]})
    ok = run(
        [result("a", bsv_txid=tx, cost_sats=650)],
        [row],
        check="chain.outputs_below_cost",
        config=config,
    )
    under = run(
        [result("a", bsv_txid=tx, cost_sats=600)],
        [row],
        check="chain.outputs_below_cost",
        config=config,
    )
    assert ok.height == 0
    assert under["difference"].to_list() == [-50]


def test_chain_shared_outputs_below_cost_aggregate_only() -> None:
    tx = txid("a")
    results = [result("a", bsv_txid=tx), result("b", bsv_txid=tx)]
    found = run(
        results,
        [chain_row(tx, output_sats=[1000], non_data_sats=1000)],
        check="chain.shared_outputs_below_cost",
    )
    assert found["difference"].to_list() == [300]
    assert found["proves"].to_list() == ["aggregate only"]
    covered = run(results, [chain_row(tx)], check="chain.shared_outputs_below_cost")
    assert covered.height == 0


def test_chain_op_return_value_flagged() -> None:
    tx = txid("a")
    found = run(
        [result("a", bsv_txid=tx)], [chain_row(tx, data_sats=10)], check="chain.op_return_value"
    )
    assert found["entity_id"].to_list() == [tx]


def test_chain_zero_payout_flagged() -> None:
    tx = txid("a")
    found = run(
        [result("a", bsv_txid=tx)], [chain_row(tx, zero_payouts=1)], check="chain.zero_payout"
    )
    assert found["entity_id"].to_list() == [tx]


def test_chain_fee_rate_out_of_range_flagged() -> None:
    low, norm, high = txid("a"), txid("b"), txid("c")
    rows = [
        chain_row(low, fee_sats=0),
        chain_row(norm, fee_sats=30),
        chain_row(high, fee_sats=3000),
    ]
    found = run([result(t) for t in "abc"], rows, check="chain.fee_rate")
    assert sorted(found["entity_id"].to_list()) == sorted([low, high])


def test_chain_coverage_names_what_cannot_be_checked() -> None:
    a, b = txid("a"), txid("b")
    results = results_frame(
        [
            result("a", bsv_txid=a),
            result("b", bsv_txid=b),
            result("c", bsv_txid=None),
            result("d", bsv_txid=a, cost_sats=None, cost_unknown=True),
        ]
    )
    chain = pl.DataFrame([chain_row(a), {"txid": b, "status": "unknown"}], schema=CHAIN_SCHEMA)
    ctx = CheckContext({"results": results}, config=AuditConfig(), as_of=AS_OF)
    coverage = dict(chain_coverage(ctx.tasks, chain.lazy()).iter_rows())
    assert coverage == {
        "aggregate only": 1,
        "not checkable (cost unknown)": 1,
        "not checkable (no well-formed txid)": 1,
        "not checkable (transaction unknown)": 1,
    }


def test_chain_checks_without_chain_table_find_nothing() -> None:
    ctx = CheckContext(
        {"results": results_frame([result("a")])}, config=AuditConfig(), as_of=datetime.now(UTC)
    )
    assert run_checks(ctx, only=["chain.txid_unknown", "chain.op_return_value"]).height == 0
