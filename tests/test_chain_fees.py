"""Fees under `[chain] fetch_parents = true` (tester F, fix G3).

1. With an index that does not serve the parent transactions every fee stayed null and neither
   `verify-chain`'s output nor its stored run said so: it read as "fees checked and fine". Now
   the summary and `runs.stats.fees` count the fees checked and the others by reason.
2. A transaction whose outputs exceed its inputs (a negative fee: value from nothing, which no
   node accepts) gave only a `chain.fee_rate` warning. The index's answer is now refused, as
   bytes that do not hash to their txid are: status `refused` with a note, exit 3.

A real verify-chain against a small real HTTP chain index on 127.0.0.1 and against the
simulator (whose index serves no parents).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from _chain_index import FeeIndex, fee_index, settled_store
from _chain_sim import scenario

from asg_audit.chain import reconciliation_findings, verify_chain
from asg_audit.cli import main
from asg_audit.config import AuditConfig
from asg_audit.store import open_store

FEE_EXACT = "exact"
FEE_PARENT_UNKNOWN = "not checkable (a parent transaction unknown to the index)"


@pytest.fixture
def index() -> Iterator[tuple[FeeIndex, str]]:
    with fee_index() as served:
        yield served


def test_negative_fee_refused_and_unchecked_fees_counted(
    index: tuple[FeeIndex, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state, url = index
    parent_ok, parent_neg = state.tx([100_000]), state.tx([100_000])
    ok = state.tx([650, 100_000 - 650 - 25], spends=parent_ok)  # 25 sats on ~230 bytes
    negative = state.tx([650, 100_000], spends=parent_neg)  # 650 sats more out than in
    orphan = state.tx([650, 1000], spends=state.tx([5000], serve=False))  # parent not served
    db = settled_store(tmp_path, {"t_ok": ok, "t_neg": negative, "t_orphan": orphan})
    config = AuditConfig(db_path=db, chain_url=url, chain={"rps": 1000, "fetch_parents": True})

    summary = verify_chain(db, config)

    assert summary.refused == 1 and summary.confirmed == 2, summary
    assert "no node accepts it" in summary.refusals[0] and negative in summary.refusals[0]
    with open_store(db, read_only=True) as store:
        rows = {
            t: (s, f, n)
            for t, s, f, n in store.con.execute(
                "SELECT txid, status, fee_sats, non_data_sats FROM chain_txs"
            ).fetchall()
        }
        (stats,) = store.con.execute(
            "SELECT stats FROM runs WHERE run_id = ?", [summary.run_id]
        ).fetchone() or ("{}",)
    assert rows[negative] == ("refused", None, None)
    assert rows[ok][:2] == ("confirmed", 25) and rows[orphan][:2] == ("confirmed", None)
    # the stored run and the summary say which fees were not checked, and why
    fees = json.loads(stats)["fees"]
    assert fees[FEE_EXACT] == 1 and fees[FEE_PARENT_UNKNOWN] == 1, fees
    assert sum(fees.values()) == 3
    line = next(ln for ln in summary.lines() if ln.startswith("fees checked"))
    assert "1 of 3 txids" in line and f"1 {FEE_PARENT_UNKNOWN}" in line, line
    # no fee_rate warning stands in for the impossible transaction
    findings, _ = reconciliation_findings(db, config)
    assert negative not in findings.filter(pl.col("check_id") == "chain.fee_rate")["entity_id"]

    # the command: the same lines, exit 3 (an answer refused), and refused again next run
    monkeypatch.setenv("ASG_CHAIN_URL", url)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[chain]\nrps = 1000\nfetch_parents = true\n")
    code = main(["verify-chain", "--db", str(db), "--config", str(cfg), "--quiet"])
    out = capsys.readouterr().out
    assert code == 3, out
    assert re.search(r"refused: \S+: the index's transaction pays out", out), out
    assert FEE_PARENT_UNKNOWN in out, out


def test_fees_unknown_to_the_index_are_counted_on_the_simulator(tmp_path: Path) -> None:
    """The simulator's index serves no parents: every fee is `not checkable`, and says so."""
    with scenario(tmp_path, tasks=200) as sc:
        config = sc.config.replace(chain={**sc.config.chain, "fetch_parents": True})
        summary = verify_chain(sc.db, config)
        with open_store(sc.db, read_only=True) as store:
            (with_bytes,) = store.con.execute(
                "SELECT count(*) FROM chain_txs WHERE raw_hex IS NOT NULL"
            ).fetchone() or (0,)
            (nulls,) = store.con.execute(
                "SELECT count(*) FROM chain_txs WHERE fee_sats IS NULL"
            ).fetchone() or (0,)
    assert with_bytes > 0 and nulls == summary.txids_total
    assert summary.fees.get(FEE_EXACT, 0) == 0
    assert summary.fees[FEE_PARENT_UNKNOWN] == with_bytes
    line = next(ln for ln in summary.lines() if ln.startswith("fees checked"))
    assert f"0 of {summary.txids_total} txids" in line, line
