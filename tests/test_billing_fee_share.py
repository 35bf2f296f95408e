"""`billing.fee_share` states the fee on the payouts, like the expected fee, and does not blame
the fee for an overstated task cost.

It showed the actual fee as a share of the total ("25% of payouts" vs "19.92% of total"), and a
single overstated task cost (which lands in the month's payouts, not in its fee, and which
`cost.mismatch` reports) made it warn that the fee was wrong. Hand-made usage frames for the
wording and the rule; then the simulator's own billing, fetched over HTTP, for the false warning.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
from _billing_months import month_checks

from asg_audit.audit import analyze
from asg_audit.billing import fetch_billing
from asg_audit.config import AuditConfig, CostModel, Secret
from asg_audit.ingest_files import ingest_paths, track_file
from asg_audit.sim import WorldConfig, generate_world, run_simulator

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
# 325 sats per agreeing worker + 25% fee, in the reported cost: 2 agreeing -> 650 + 163 = 813
MODEL = CostModel(kind="per_worker", fee_percent=Decimal(25), fee_included=True)


def _fee_share(costs: list[int], *, payouts: int, fee: int) -> pl.DataFrame:
    assert payouts + fee == sum(costs), "a coherent month: payouts + fee == total"
    return month_checks(
        MODEL, costs, payouts=payouts, fee=fee, only=["billing.fee_share", "cost.mismatch"]
    )


def test_fee_share_actual_is_a_share_of_the_payouts() -> None:
    # every cost right, but the platform took 300 of 2,439 sats where 25% of 2,139 is 535
    found = _fee_share([813, 813, 813], payouts=2139, fee=300)
    row = found.filter(pl.col("check_id") == "billing.fee_share").row(0, named=True)
    assert row["expected"] == "535 sats (25% of payouts)"
    assert row["actual"] == "300 sats (14.03% of payouts)"  # 300 / 2139, not 300 / 2439
    assert row["difference"] == 300 - 535
    assert "25% of the payouts (2139 sats)" in row["message"]
    assert "1 per task, 3" in row["message"]


def test_fee_share_right_fee_within_a_sat_per_task_is_no_finding() -> None:
    # 3 x 163 = 489 sats of fee on 1,950 sats of payouts: 25% is 487.5, off by 1.5 < 3 tasks
    found = _fee_share([813, 813, 813], payouts=1950, fee=489)
    assert found.height == 0


def test_fee_share_overstated_task_cost_does_not_blame_the_fee() -> None:
    # one task reported 1,626 instead of 813: the 813 sats land in the payouts, the fee is right
    found = _fee_share([813, 813, 1626], payouts=2763, fee=489)
    assert found["check_id"].to_list() == ["cost.mismatch"]
    assert found["difference"].to_list() == [813]


def test_fee_share_wrong_fee_next_to_an_overstated_cost_is_still_reported() -> None:
    # the same overstated task, and a fee 200 sats short of 25% of what the workers were due
    found = _fee_share([813, 813, 1626], payouts=2963, fee=289)
    fee = found.filter(pl.col("check_id") == "billing.fee_share").row(0, named=True)
    assert fee["actual"] == "289 sats (9.75% of payouts)"
    assert fee["difference"] == 289 - 741  # on the billed payouts, as the expected text says


def test_fee_share_fee_charged_on_the_billed_payouts_is_no_finding() -> None:
    # a platform that took its 25% on the overstated cost too: right on the billed payouts
    found = _fee_share([813, 813, 1626], payouts=2602, fee=650)
    assert found["check_id"].to_list() == ["cost.mismatch"]


def _world_findings(**anomalies: Any) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    tmp = Path(tempfile.mkdtemp(prefix="fix_g_fee_"))
    db = tmp / "a.duckdb"
    world = generate_world(
        WorldConfig(seed=303, tasks=300, anomalies=anomalies, fee_percent=25, live_fraction=0)
    )
    track_file(db, world.write_submissions(tmp / "s.ndjson"))
    ingest_paths(db, [world.write_results_export(tmp / "r.ndjson")], progress=False)
    config = AuditConfig(db_path=db, costs=MODEL)
    with run_simulator(world, time_scale=0.01) as sim:
        fetch_billing(
            db,
            AuditConfig(
                db_path=db, base_url=sim.gateway_url, api_key=Secret(sim.api_key), costs=MODEL
            ),
        )
    return analyze(db, config=config).findings, world.anomalies


def test_fee_share_simulator_overstated_costs_give_only_their_cost_findings() -> None:
    findings, planted = _world_findings(cost_mismatch=3)
    assert findings.filter(pl.col("check_id") == "billing.fee_share").height == 0
    mismatched = set(findings.filter(pl.col("check_id") == "cost.mismatch")["entity_id"])
    assert mismatched == {a["entity_id"] for a in planted if a["kind"] == "cost_mismatch"}
    assert len(mismatched) == 3
