"""Refusals after the answers are stored count only the settled tasks' txids (fixer J5).

`fetch_parent_fees` covers every stored transaction with bytes and no fee, including one no
settled task names any more (its result's txid was corrected after an earlier verify-chain).
Its refusal was taken as "confirmed earlier": `cached_confirmed` dropped (below zero) and
"checked now" grew by a txid nobody asked about, and the run read `incomplete`. Now only a
txid of the cached-confirmed settled set moves; the others are counted apart.

A real verify-chain against a small real HTTP chain index on 127.0.0.1 (`_chain_index`, as in test_chain_fees).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from _chain_index import FeeIndex, fee_index, settled_store

from asg_audit.chain import verify_chain
from asg_audit.config import AuditConfig
from asg_audit.store import open_store


@pytest.fixture
def index() -> Iterator[tuple[FeeIndex, str]]:
    with fee_index() as served:
        yield served


def test_a_refused_transaction_no_task_names_is_not_counted_as_confirmed_earlier(
    index: tuple[FeeIndex, str],
    tmp_path: Path,
) -> None:
    state, url = index
    # two transactions no node accepts (650 sats more out than in), and a good one
    stale = state.tx([650, 100_000], spends=state.tx([100_000]))
    named = state.tx([650, 100_000], spends=state.tx([100_000]))
    good = state.tx([650, 100_000 - 650 - 25], spends=state.tx([100_000]))
    db = settled_store(tmp_path, {"t_stale": stale, "t_named": named})
    config = AuditConfig(db_path=db, chain_url=url, chain={"rps": 1000})

    first = verify_chain(db, config)  # fetch_parents off: both stored confirmed, no fee
    assert first.confirmed == 2 and first.refused == 0, first

    # t_stale's txid is corrected (as a rejudge of its observations can): its old transaction
    # stays in chain_txs, named by no settled task
    with open_store(db) as store:
        store.con.execute("UPDATE results SET bsv_txid = ? WHERE task_id = 't_stale'", [good])
    with open_store(db, read_only=True) as store:
        named_now = {
            t for (t,) in store.con.execute("SELECT lower(bsv_txid) FROM results").fetchall()
        }
    assert named_now == {good, named}, named_now

    on = config.replace(chain={"rps": 1000, "fetch_parents": True})
    summary = verify_chain(db, on)

    # asked: good (new); cached: named (confirmed earlier, refused now); stale: no task's
    assert summary.txids_total == 2
    assert summary.cached_confirmed == 0, summary  # named moved to refused, never below 0
    assert summary.checked == 2 and summary.confirmed == 1 and summary.refused == 1, summary
    assert len(summary.refusals) == 1 and named in summary.refusals[0], summary.refusals
    assert summary.refused_unasked == 1, summary
    line = next(ln for ln in summary.lines() if "no settled task names" in ln)
    assert line.startswith("refused 1 stored transaction(s)"), line
    with open_store(db, read_only=True) as store:
        status = dict(store.con.execute("SELECT txid, status FROM chain_txs").fetchall())
        (stats,) = store.con.execute(
            "SELECT stats FROM runs WHERE run_id = ?", [summary.run_id]
        ).fetchone() or ("{}",)
    assert status[stale] == "refused" and status[named] == "refused", status  # both stored
    assert json.loads(stats)["refused_unasked"] == 1
