"""Sums of sats never wrap around int64 (the defect: a negative total spend).

A per-record cost is capped at 21 million BSV (2,100,000,000,000,000 sats), but 4,393 such
costs already pass int64: every sum of sats (spend, shared txid totals, the billing and chain
comparisons) is exact, in the frames, the checks, summary.json, report.md and the HTML.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from _analyses_frames import CHAIN_SCHEMA, result, results_frame, txid
from _capped import CAP, TRUE_TOTAL, N, capped_export

from asg_audit.analyses import costs, enrich_tasks
from asg_audit.billing import MAX_SATS, parse_usage
from asg_audit.checks import CheckContext, run_checks
from asg_audit.config import AuditConfig
from asg_audit.reconcile import _change_sats, _cost_differences_by_month, txid_tasks

INT64_MAX = 2**63 - 1
# 8,784 capped costs and one of 344,073,709,552,616 sats: 2^64 + 1,000 sats in all, which an
# int64 sum wraps around to exactly 1,000 (a plausible figure, not a negative one)
WRAPS_TO_1000 = [CAP] * 8784 + [2**64 + 1000 - 8784 * CAP]
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def _capped(n: int = N, *, shared: bool = False, day: int = 1) -> list[dict[str, Any]]:
    settled = datetime(2026, 10, day, 12, tzinfo=UTC)
    return [
        result(
            f"t{i}",
            cost_sats=CAP,
            bsv_txid=txid("one") if shared else txid(f"t{i}"),
            created_at=settled - timedelta(seconds=40),
            # a shared txid's tasks settled a day apart: txid.shared_spread reports it
            settled_at=settled + (timedelta(days=1) if shared and i == 0 else timedelta(0)),
        )
        for i in range(n)
    ]


def _tasks(rows: list[dict[str, Any]]) -> pl.LazyFrame:
    return enrich_tasks(results_frame(rows).lazy())


# ---- analyses/costs.py -----------------------------------------------------------------


def test_fix11_S_unknown_costs_known_total_is_the_exact_sum() -> None:
    got = costs.unknown_costs(_tasks(_capped())).row(0, named=True)
    assert got["known_total_sats"] == TRUE_TOTAL
    assert got["known"] == N


def test_fix11_S_spend_by_period_day_and_month_are_the_exact_sum() -> None:
    tasks = _tasks(_capped())
    for every in ("1d", "1mo"):
        spend = costs.spend_by_period(tasks, every=every)
        assert spend["cost_sats"].to_list() == [TRUE_TOTAL]
        assert spend["tasks"].to_list() == [N]


def test_fix11_S_spend_by_period_small_sums_unchanged() -> None:
    rows = [result("a", cost_sats=650), result("b", cost_sats=None, cost_unknown=True)]
    spend = costs.spend_by_period(_tasks(rows), every="1d")
    assert spend.select("tasks", "cost_sats", "unknown_costs").rows() == [(2, 650, 1)]


def test_fix11_S_shared_txid_total_and_its_finding_are_exact() -> None:
    rows = _capped(shared=True)
    shared = costs.shared_txids(_tasks(rows))
    assert shared["tasks"].to_list() == [N]
    assert shared["total_cost_sats"].to_list() == [TRUE_TOTAL]
    ctx = CheckContext({"results": results_frame(rows)}, config=AuditConfig(), as_of=AS_OF)
    found = run_checks(ctx, only=["txid.shared_spread"])
    assert found.height == 1
    assert f"(total {TRUE_TOTAL} sats)" in found["message"][0]


# ---- reconcile.py ----------------------------------------------------------------------


def test_fix11_S_txid_tasks_cost_sum_is_exact() -> None:
    got = txid_tasks(_tasks(_capped(shared=True))).collect()
    assert got["cost_sum"].to_list() == [TRUE_TOTAL]


def test_fix11_S_shared_outputs_below_summed_costs_past_int64_is_found() -> None:
    # 5,000 capped costs (10.5e18 sats in all) on one txid paying 9e18: the costs exceed the
    # payouts. Summed in int64 they were -7.9e18, "below" the payouts: no finding.
    paid = 9_000_000_000_000_000_000
    chain = {
        "txid": txid("one"),
        "status": "confirmed",
        "block_time": datetime(2026, 10, 1, 12, 5, tzinfo=UTC),
        "confirmations": 10,
        "size_bytes": 300,
        "output_sats": [paid],
        "output_kinds": ["payout"],
        "non_data_sats": paid,
        "data_sats": 0,
        "zero_payouts": 0,
        "fee_sats": None,
    }
    tables = {
        "results": results_frame(_capped()).with_columns(pl.lit(txid("one")).alias("bsv_txid")),
        "chain_txs": pl.DataFrame([chain], schema=CHAIN_SCHEMA),
    }
    ctx = CheckContext(tables, config=AuditConfig(), as_of=AS_OF)
    found = run_checks(ctx, only=["chain.shared_outputs_below_cost"])
    assert found["entity_id"].to_list() == [txid("one")]
    assert found["actual"].to_list() == [f"{TRUE_TOTAL} sats"]
    assert found["difference"].to_list() == [float(TRUE_TOTAL - paid)]


def test_fix11_S_change_sats_sum_of_stored_outputs_is_exact() -> None:
    rows = pl.LazyFrame(
        {
            "txid": ["a" * 64],
            "output_sats": [[INT64_MAX, INT64_MAX, 5]],
            "output_kinds": [["change", "change", "payout"]],
        },
        schema={"txid": pl.String, "output_sats": pl.List(pl.Int64), "output_kinds": None},
    )
    got = _change_sats(rows, frozenset({"76a914" + "00" * 20 + "88ac"})).collect()
    assert got["change_sats"].to_list() == [2 * INT64_MAX]


def _usage_frame(**changes: Any) -> pl.DataFrame:
    body: dict[str, Any] = {
        "customer_id": "cus_1",
        "month": "2026-10",
        "tier": "sandbox",
        "tasks_settled": len(WRAPS_TO_1000),
        "total_cost_sats": 1000,
        "total_cost_usd_estimate": 1.0,
        "worker_payouts_sats": 900,
        "platform_fee_sats": 100,
        "daily_breakdown": [
            {"date": "2026-10-01", "tasks": len(WRAPS_TO_1000), "cost_sats": 1000},
        ],
    }
    body.update(changes)
    return pl.DataFrame(
        [parse_usage(body)],
        schema_overrides={
            "daily_breakdown": pl.List(
                pl.Struct({"date": pl.Date, "tasks": pl.Int64, "cost_sats": pl.Int64})
            )
        },
    )


def _billing(tables: dict[str, pl.DataFrame], check: str) -> pl.DataFrame:
    import asg_audit.billing  # noqa: F401  (registers the checks)

    ctx = CheckContext(tables, config=AuditConfig(), as_of=AS_OF)
    return run_checks(ctx, only=[check])


def _wrapping_results() -> pl.DataFrame:
    settled = datetime(2026, 10, 1, 12, tzinfo=UTC)
    return results_frame(
        [
            result(f"t{i}", cost_sats=c, created_at=settled, settled_at=settled)
            for i, c in enumerate(WRAPS_TO_1000)
        ]
    )


def test_fix11_S_billing_vs_results_sees_results_summing_past_int64() -> None:
    # The month bills 1,000 sats for 8,785 tasks whose costs add up to 2^64 + 1,000 sats. In
    # int64 the results' sum wrapped to 1,000 and the bill looked right: no finding.
    found = _billing(
        {"results": _wrapping_results(), "billing_usage": _usage_frame()}, "billing.vs_results"
    )
    assert found["entity_id"].to_list() == ["2026-10"]
    assert found["expected"].to_list() == [f"results: 8785 tasks, {2**64 + 1000} sats"]
    assert found["difference"].to_list() == [float(-(2**64))]


def test_fix11_S_billing_vs_results_under_a_window_reads_duckdbs_hugeint_sum() -> None:
    # Under a window the month's results are summed by DuckDB (`sum` of BIGINT is a HUGEINT,
    # read as an Arrow decimal): 10.5e18 sats, once cast to int64 an error or a wrapped figure.
    con = duckdb.connect()
    con.execute("CREATE TABLE r (cost_sats BIGINT)")
    con.execute(f"INSERT INTO r SELECT {CAP} FROM range({N})")
    ours = con.sql(
        "SELECT '2026-10' AS month, count(*) AS our_tasks,"
        " coalesce(sum(cost_sats), 0) AS our_cost FROM r"
    ).pl()
    con.close()
    assert isinstance(ours.schema["our_cost"], pl.Decimal)
    tables = {
        "results": results_frame(_capped(1)),
        # the most a month can bill: the 21M BSV supply (a figure above it is invalid)
        "billing_usage": _usage_frame(tasks_settled=N, total_cost_sats=MAX_SATS),
        "billing_window": pl.DataFrame({"month": ["2026-10"], "compared": [True]}),
        "billing_results_by_month": ours,
    }
    found = _billing(tables, "billing.vs_results")
    assert found["expected"].to_list() == [f"results: {N} tasks, {TRUE_TOTAL} sats"]
    assert found["difference"].to_list() == [float(MAX_SATS - TRUE_TOTAL)]


def test_fix11_S_billing_daily_sum_sees_daily_rows_summing_past_int64() -> None:
    # daily rows of 2^64 + 1,000 sats in all against a month total of 1,000: in int64 they
    # wrapped to exactly 1,000 and matched (each row within the 21M BSV supply: 8,785 rows)
    daily = [{"date": "2026-10-01", "tasks": 1, "cost_sats": c} for c in WRAPS_TO_1000]
    usage = _usage_frame(daily_breakdown=daily)
    found = _billing({"results": _wrapping_results(), "billing_usage": usage}, "billing.daily_sum")
    assert found["actual"].to_list() == [
        f"daily rows: {len(WRAPS_TO_1000)} tasks, {2**64 + 1000} sats"
    ]
    assert found["difference"].to_list() == [float(2**64)]


def test_fix11_S_billing_total_parts_adds_payouts_and_fee_exactly() -> None:
    # payouts and fee at the 21M BSV supply each (the most a valid figure can be)
    usage = _usage_frame(
        total_cost_sats=1000, worker_payouts_sats=MAX_SATS, platform_fee_sats=MAX_SATS
    )
    found = _billing(
        {"results": _wrapping_results(), "billing_usage": usage}, "billing.total_parts"
    )
    assert found["expected"].to_list() == [str(2 * MAX_SATS)]
    assert found["difference"].to_list() == [float(1000 - 2 * MAX_SATS)]


def test_fix11_S_cost_differences_by_month_are_exact() -> None:
    # 5,000 capped costs against the default model (2 agreeing workers x 325 sats = 650)
    ctx = CheckContext({"results": results_frame(_capped())}, config=AuditConfig(), as_of=AS_OF)
    got = _cost_differences_by_month(ctx).collect()
    assert got.rows() == [("2026-10", N * (CAP - 650))]


# ---- end to end: ingest + report -------------------------------------------------------


def test_fix11_S_report_of_capped_costs_shows_the_true_spend(tmp_path: Path) -> None:
    records = capped_export(tmp_path / "r.ndjson")
    db, out = tmp_path / "s.duckdb", tmp_path / "rep"
    cli = [sys.executable, "-m", "asg_audit"]
    for args in (
        ["ingest", "--db", str(db), str(records)],
        ["report", "--db", str(db), "--out", str(out), "--until", "2026-10-02"],
    ):
        done = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    (folder,) = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()]
    exact = sum(CAP for _ in range(N))
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["headline"]["spent_sats"] == exact
    shown = f"{exact:,} sats"  # 10,500,000,000,000,000,000 sats
    md = (folder / "report.md").read_text()
    assert f"| Sats spent | {shown} |" in md
    assert f"| 2026-10 | {N:,} | {shown} |" in md  # spend per month
    html = (folder / "index.html").read_text()
    assert f'data-key="spent_sats" data-value="{exact}"' in html
    assert f'<td class="num">{shown}</td>' in html
    for text in (md, html, json.dumps(summary)):
        assert "-7946744073709551616" not in text.replace(",", "")


def test_fix11_S_frames_of_an_audit_sum_costs_exactly() -> None:
    from asg_audit.audit import analyze_frames

    audit = analyze_frames(results_frame(_capped()), config=AuditConfig(), as_of=AS_OF)
    assert audit.summary()["known_cost_sats"] == TRUE_TOTAL
    assert audit["spend_by_day"]["cost_sats"].to_list() == [TRUE_TOTAL]
    assert audit["spend_by_month"]["cost_sats"].to_list() == [TRUE_TOTAL]
    assert audit["unknown_costs"]["known_total_sats"].to_list() == [TRUE_TOTAL]
