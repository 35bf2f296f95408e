"""`analyze` gives the fee coverage `verify-chain` prints, as a `fee_coverage` frame (fixer H1).

5bc3dd1 made `verify-chain` count the fees `chain.fee_rate` could check and the others by
reason (`chain_verify.fee_coverage`), but an audit's analysis had no such frame: a report
could not say that no fee was checked. `analyze` now computes it while the store is open (it
reads `chain_parents`), next to `chain_coverage`.
Real simulator: its chain index serves no parent transactions.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from _chain_sim import scenario

from asg_audit.audit import analyze
from asg_audit.chain import verify_chain
from asg_audit.chain_verify import FEE_EXACT, FEE_PARENT_UNKNOWN, FEE_PARENTS_OFF
from asg_audit.store import open_store


def test_analyze_says_fees_are_not_checkable_when_the_index_serves_no_parents(
    tmp_path: Path,
) -> None:
    with scenario(tmp_path, tasks=200) as sc:
        config = sc.config.replace(chain={**sc.config.chain, "fetch_parents": True})
        summary = verify_chain(sc.db, config)
        with open_store(sc.db, read_only=True) as store:
            (with_bytes,) = store.con.execute(
                "SELECT count(*) FROM chain_txs WHERE raw_hex IS NOT NULL"
            ).fetchone() or (0,)
            (stored,) = store.con.execute("SELECT count(*) FROM chain_txs").fetchone() or (0,)
        assert with_bytes > 0

        audit = analyze(sc.db, config=config)
        assert "fee_coverage" in audit.names
        frame = audit["fee_coverage"]
        assert frame.columns == ["proves", "txids"]
        fees = dict(frame.iter_rows())
        assert fees.get(FEE_EXACT, 0) == 0, fees  # no fee could be checked
        assert fees[FEE_PARENT_UNKNOWN] == with_bytes, fees
        assert sum(fees.values()) == stored
        assert fees == summary.fees  # what verify-chain said

        # read with fetch_parents off, the same store says why by the config read now
        off = analyze(sc.db, config=sc.config)
        assert dict(off["fee_coverage"].iter_rows())[FEE_PARENTS_OFF] == with_bytes

        # under a window: the same store-wide coverage, as chain_status
        first = audit["spend_by_day"]["period_start"].min()
        windowed = analyze(sc.db, config=config, since=first + timedelta(days=1))
        assert dict(windowed["fee_coverage"].iter_rows()) == fees


def test_no_fee_coverage_without_chain_transactions(tmp_path: Path) -> None:
    with scenario(tmp_path, tasks=50) as sc:
        assert "fee_coverage" not in analyze(sc.db, config=sc.config).names


def test_a_windowed_report_says_its_chain_counts_are_the_whole_store(tmp_path: Path) -> None:
    # tester A3: a one-second window holding one unsettled task showed "confirmed: 1,089" and
    # "fees checked: 0 of 1,093 txids" as if they were the window's
    from _report_store import page_and_markdown

    from asg_audit.report import render
    from asg_audit.report.charts import STORE_WIDE

    with scenario(tmp_path, tasks=60) as sc:
        verify_chain(sc.db, sc.config)
        whole = analyze(sc.db, config=sc.config)
        first = whole["spend_by_day"]["period_start"].min()
        windowed = analyze(sc.db, config=sc.config, since=first + timedelta(days=1))
    for audit, out, says in ((whole, "whole", False), (windowed, "window", True)):
        page, md = page_and_markdown(render(audit, tmp_path / out, formats="html,md"))
        for text in (page, md):
            assert "Chain transactions by status" in text and "Fee coverage" in text, out
            assert (STORE_WIDE in text) == says, out
        if says:
            for caption in (
                "Chain transactions by status",
                "Fee coverage: which fees chain.fee_rate could check",
            ):
                assert f"{caption}{STORE_WIDE}</caption>" in page, caption
            assert f"Chain verification status{STORE_WIDE}: " in md  # the chart's text
            # the window's own table carries no such note
            assert f"per settled task{STORE_WIDE}" not in page
