"""`fee_coverage` counts in SQL and parses only what it must, a batch at a time (fixer J5).

It ran on every audit/analyze/report once the store held chain transactions and read every
row of `chain_txs` (raw_hex included: about 5 GB of Python strings on a 10M-task store) into
one list to fill a table of counts. Now the counts that need no parsing come from SQL, and
only the transactions with bytes and no fee are parsed when `fetch_parents` is on, streamed
`_FEE_BATCH` rows at a time. The frame is the same: checked here against the rule the
function had before (`_reference`, written out below), on a simulator store verified with
`fetch_parents` on and off, then given every kind of row the coverage tells apart.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _chain_sim import scenario

from asg_audit import chain_verify
from asg_audit.chain import verify_chain
from asg_audit.chain_verify import (
    FEE_BAD_BYTES,
    FEE_EXACT,
    FEE_NO_BYTES,
    FEE_NOT_YET,
    FEE_PARENT_UNKNOWN,
    FEE_PARENTS_OFF,
    fee_coverage,
)
from asg_audit.rawtx import RawTxError, parse_raw_tx
from asg_audit.store import open_store


def _reference(con: Any, *, fetch_parents: bool) -> dict[str, int]:
    """The coverage as the function counted it before: every row read and judged in Python."""
    parents = {t for (t,) in con.execute("SELECT txid FROM chain_parents").fetchall()}
    out: Counter[str] = Counter()
    for _txid, status, raw_hex, fee in con.execute(
        "SELECT txid, status, raw_hex, fee_sats FROM chain_txs"
    ).fetchall():
        if fee is not None:
            out[FEE_EXACT] += 1
        elif raw_hex is None:
            out[FEE_NO_BYTES.format(f"transaction {status}")] += 1
        elif not fetch_parents:
            out[FEE_PARENTS_OFF] += 1
        else:
            try:
                p = parse_raw_tx(raw_hex)
            except RawTxError:
                out[FEE_BAD_BYTES] += 1
                continue
            if p.is_coinbase:
                out["not checkable (coinbase: no fee)"] += 1
                continue
            known = all(i.prev_txid in parents for i in p.inputs)
            out[FEE_NOT_YET if known else FEE_PARENT_UNKNOWN] += 1
    return dict(out)


def _as_dict(frame: pl.DataFrame) -> dict[str, int]:
    assert frame.columns == ["proves", "txids"]
    assert frame["proves"].to_list() == sorted(frame["proves"].to_list())  # sorted, as before
    return dict(frame.iter_rows())


def _vary(db: Path) -> None:
    """Give the store every kind of row: a fee, no bytes (two statuses), bad bytes, a parent
    known (fee not computed yet), and many more unpriced rows (copies under other txids)."""
    with open_store(db) as store:
        con = store.con
        txids = [
            t
            for (t,) in con.execute(
                "SELECT txid FROM chain_txs WHERE raw_hex IS NOT NULL ORDER BY txid"
            ).fetchall()
        ]
        assert len(txids) >= 6
        con.execute("UPDATE chain_txs SET fee_sats = 40 WHERE txid IN (?, ?)", txids[:2])
        con.execute("UPDATE chain_txs SET raw_hex = 'zz' WHERE txid = ?", [txids[2]])
        con.execute(
            "UPDATE chain_txs SET raw_hex = NULL, status = 'unknown' WHERE txid = ?", [txids[3]]
        )
        con.execute(
            "UPDATE chain_txs SET raw_hex = NULL, status = 'refused' WHERE txid = ?", [txids[4]]
        )
        (raw,) = con.execute(
            "SELECT raw_hex FROM chain_txs WHERE txid = ?", [txids[5]]
        ).fetchone() or ("",)
        for i in parse_raw_tx(raw).inputs:  # its parents known: fee not computed yet
            con.execute(
                "INSERT OR REPLACE INTO chain_parents VALUES (?, [1000], NULL, now())",
                [i.prev_txid],
            )
        # copies of the unpriced rows under other txids: a few thousand rows to stream
        con.execute(
            """INSERT INTO chain_txs
            SELECT c.* REPLACE (sha256(c.txid || r.i::VARCHAR) AS txid)
            FROM chain_txs c, range(20) r(i)
            WHERE c.raw_hex IS NOT NULL AND c.fee_sats IS NULL"""
        )


def test_fee_coverage_is_unchanged_and_parses_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with scenario(tmp_path, tasks=200) as sc:
        off = verify_chain(sc.db, sc.config)
        with open_store(sc.db, read_only=True) as store:
            assert _as_dict(fee_coverage(store.con, fetch_parents=False)) == off.fees
            assert off.fees == _reference(store.con, fetch_parents=False)
            assert off.fees[FEE_PARENTS_OFF] > 0
        on_config = sc.config.replace(chain={**sc.config.chain, "fetch_parents": True})
        on = verify_chain(sc.db, on_config)
        with open_store(sc.db, read_only=True) as store:
            assert on.fees == _reference(store.con, fetch_parents=True)
            assert on.fees[FEE_PARENT_UNKNOWN] > 0
    _vary(sc.db)

    # parsed a batch at a time: never more than _FEE_BATCH rows in Python at once
    monkeypatch.setattr(chain_verify, "_FEE_BATCH", 97, raising=False)
    seen: list[int] = []
    parse = chain_verify._stored_spends

    def spy(rows: Any) -> Any:
        rows = list(rows)
        seen.append(len(rows))
        return parse(rows)

    monkeypatch.setattr(chain_verify, "_stored_spends", spy)
    with open_store(sc.db, read_only=True) as store:
        (unpriced,) = store.con.execute(
            "SELECT count(*) FROM chain_txs WHERE raw_hex IS NOT NULL AND fee_sats IS NULL"
        ).fetchone() or (0,)
        assert unpriced > 2000
        for fetch_parents in (False, True):
            seen.clear()
            got = _as_dict(fee_coverage(store.con, fetch_parents=fetch_parents))
            want = _reference(store.con, fetch_parents=fetch_parents)
            assert got == want, fetch_parents
            if fetch_parents:
                assert {FEE_EXACT, FEE_BAD_BYTES, FEE_NOT_YET, FEE_PARENT_UNKNOWN} <= set(got)
                assert FEE_NO_BYTES.format("transaction refused") in got
                assert FEE_NO_BYTES.format("transaction unknown") in got
                assert sum(seen) == unpriced and max(seen) <= 97, seen
            else:
                assert seen == []  # nothing parsed when fetch_parents is off
